"""Errors a user can act on. Each carries the exit code scripts rely on and a fix."""


class ClimdError(Exception):
    """An error with a message for the user and, where known, what to do about it."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __reduce__(self):
        # Crosses from a worker process to its parent with its class, exit code, message, fix and any
        # other attribute (a subclass's own __init__ arguments are not needed to rebuild it).
        return _rebuild, (type(self), dict(self.__dict__))

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class UsageError(ClimdError):
    """Options that cannot work together."""

    exit_code = 2


class DataError(ClimdError):
    """Bad input data: missing file, NaN, mismatched ids, unknown labels, too few samples."""

    exit_code = 3


class MissingArtifactError(ClimdError):
    """An upstream stage has not been run for this run directory."""

    exit_code = 4


class StaleArtifactError(ClimdError):
    """An artifact was built from inputs that have changed since, or is incomplete/corrupt."""

    exit_code = 5


class StorageError(ClimdError):
    """The cache or an output folder cannot be written: disk full, read-only, no permission."""

    exit_code = 6


class InterruptedRun(ClimdError):
    exit_code = 130


class TrainingDiverged(ClimdError):
    """Training produced a non-finite loss or non-finite weights (learning rate too high?)."""

    exit_code = 7


class OutOfMemory(ClimdError):
    """Memory (or threads, or mappings) ran out: the job needs more than it was given."""

    exit_code = 8


class WorkerLost(ClimdError):
    """A worker process of a parallel call was killed (a signal, the out-of-memory killer)."""

    exit_code = 9


def _rebuild(cls, state: dict) -> ClimdError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, state.get("message", ""))
    exc.__dict__.update(state)
    return exc


def check_choices(*checks: tuple) -> None:
    """Each check is (value, allowed values, flag); an unknown value is a UsageError naming the flag."""
    for value, allowed, flag in checks:
        if value not in allowed:
            raise UsageError(f"unknown {flag} {value!r}", fix=f"choose from {', '.join(map(str, allowed))}")


EXIT_CODES = {
    0: "success",
    1: "unexpected error (a bug: please report it with the traceback from --debug)",
    2: "usage error (bad or conflicting options)",
    3: "bad input data",
    4: "missing upstream artifact (run the earlier stage first)",
    5: "stale, incomplete or corrupt artifact (rerun the stage named in the message)",
    6: "cannot write the cache or output (disk full, read-only or no permission)",
    7: "training diverged (a non-finite loss or weights): lower --lr",
    8: "out of memory (or threads or address space): give the job more memory or fewer --jobs",
    9: "a worker process was killed (by a signal or the out-of-memory killer); rerun to resume",
    130: "interrupted (Ctrl-C); rerun the same command to resume",
}
