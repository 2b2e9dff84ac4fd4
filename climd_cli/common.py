"""What every command shares: options, logging, error handling, output conventions.

Logs and progress go to stderr; stdout carries only artifact paths or --json output, so commands
compose in shell pipelines.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from stages.errors import ClimdError

WIDE = 240          # tables printed to a pipe or file are not wrapped at 80 columns
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else WIDE)  # never wrap file names
_DEBUG = [False]


def stdout_console() -> Console:
    """A console for tables on stdout: the terminal's width, or wide when piped."""
    return Console(width=None if sys.stdout.isatty() else WIDE)
log = logging.getLogger("climd")

CACHE = "Cache"
RunOpt = Annotated[str, typer.Option("--run", "-r", help="Run name: artifacts live in <cache-dir>/<run>/.",
                                     rich_help_panel=CACHE)]
RunsOpt = Annotated[str, typer.Option("--run", "-r", help="Run name, or a wildcard pattern selecting existing runs ('brca-s*').",
                                      rich_help_panel=CACHE)]
CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache-dir", envvar="CLIMD_CACHE", help="Artifact root (default ./cache, or $CLIMD_CACHE).",
    rich_help_panel=CACHE, show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute even if a matching artifact exists.",
                                        rich_help_panel=CACHE)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.", rich_help_panel="Output")]
DEFAULT_RUN = "default"
_QUIET = [False]


def _threads(value: Optional[int]) -> Optional[int]:
    from stages.runtime import threads

    threads.configure(value)
    return value


ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, callback=_threads, rich_help_panel="Performance", show_default=False,
    help="CPU threads for torch/BLAS (default: the CPUs this process may use: affinity mask, "
         "SLURM_CPUS_PER_TASK, cgroup quota; or $CLIMD_THREADS). Never more than that.")]


def quiet() -> bool:
    return _QUIET[0]


def info(message: str) -> None:
    """A line of progress news on stderr, silenced by --quiet."""
    if not _QUIET[0]:
        err.print(message, highlight=False)


_COMMAND_LINE = [""]      # the running command as the user could retype it (set by @command)


def current_command() -> str:
    """The command line being run, for the provenance of the artifacts it writes (passed to the
    library explicitly: :class:`stages.store.artifacts.RunStore` ``command``)."""
    return _COMMAND_LINE[0]


def command(fn):
    """Turn library errors into one clear message and a documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = _current_context()
        _COMMAND_LINE[0] = _command_line(ctx) if ctx is not None else ""
        try:
            return fn(*args, **kwargs)
        except ClimdError as exc:
            _print_error(exc)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: rerun the same command to resume")
            raise typer.Exit(130)
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except (OSError, MemoryError, RuntimeError) as exc:  # a full disk, a file in the way, no memory ...
            from stages.core.failures import classify

            known = classify(exc)          # every OSError and MemoryError; a RuntimeError only for memory
            if _DEBUG[0]:
                raise
            if known is None:
                _bug(exc)
            _print_error(known)
            raise typer.Exit(known.exit_code)
        except Exception as exc:   # a bug: one line, the traceback only with --debug
            if _DEBUG[0]:
                raise
            _bug(exc)

    return wrapper


def _bug(exc: BaseException):
    err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc}", highlight=False)
    err.print("  [bold]fix:[/] this is a bug in climd: rerun with `climd --debug ...` for the traceback "
              "and report it", highlight=False)
    raise typer.Exit(1)


def _print_error(exc: ClimdError) -> None:
    """The message and the fix; with --debug also a worker's traceback, when it came from one."""
    if _DEBUG[0] and getattr(exc, "detail", None):
        err.print(exc.detail, highlight=False, markup=False)
    err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    if exc.fix:
        err.print(f"  [bold]fix:[/] {exc.fix}", highlight=False)


def _current_context():
    # Typer >= 0.20 vendors click as typer._click; older releases use click itself.
    try:
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context(silent=True)


def _command_line(ctx, overrides: dict | None = None) -> str:
    """The command as the user could retype it: the options that differ from their defaults
    (``overrides`` replaces parameter values, e.g. one seed of a multi-seed call)."""
    from shlex import quote   # so a wildcard run or a title with spaces can be pasted into a shell

    from stages.core import cmdline

    parts = []
    values = {**ctx.params, **(overrides or {})}
    for param in ctx.command.params:
        value = values.get(param.name)
        if param.param_type_name == "argument":
            parts += [quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
            continue
        if value == param.default or value is None or param.name == "json":
            continue
        flag = max(param.opts, key=len) if param.opts else f"--{param.name}"
        if isinstance(value, bool):
            parts += cmdline.option(flag, value, (param.secondary_opts or [flag])[0])
        elif isinstance(value, (list, tuple)):          # a repeatable option: once per value
            parts += [f"{flag} {quote(str(v))}" for v in value]
        else:
            parts.append(f"{flag} {quote(str(value))}")
    return cmdline.climd(ctx.info_name, parts)


def report(stage: str, artifact, reused: bool, as_json: bool, extra: str = "") -> None:
    """stderr: what happened; stdout: the artifact path (or the JSON summary)."""
    verb = "reused" if reused else f"built in {artifact.meta.get('duration_s', 0):.1f} s"
    info(f"[green]{stage}[/]: {verb} -> {artifact.path} (key {artifact.key[:10]}){extra}")
    if as_json:
        typer.echo(json.dumps({"path": str(artifact.path), "reused": reused, "key": artifact.key,
                               "summary": artifact.summary}, default=str))
    else:
        typer.echo(str(artifact.path))


def command_line(overrides: dict | None = None) -> str:
    """The running command, retypable, with some parameters replaced."""
    ctx = _current_context()
    return _command_line(ctx, overrides) if ctx is not None else ""


def setup_logging(quiet: bool, debug: bool) -> None:
    from rich.logging import RichHandler

    _QUIET[0], _DEBUG[0] = quiet, debug
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def runs(pattern: str, cache_dir: Optional[Path]):
    from stages.store.artifacts import expand_runs

    return expand_runs(cache_dir, pattern, current_command())


def store(run: str, cache_dir: Optional[Path]):
    from stages.store.artifacts import RunStore

    return RunStore(cache_dir, run, current_command())
