"""The artifact store: one directory per run, one artifact (a directory) per stage.

Each artifact holds its outputs plus ``meta.json``, written last, which records what produced it:
stage, parameters, the keys of its inputs, the hashes of its outputs, package versions, the command
line and timing. The *key* is a hash of (stage, stage version, parameters, input keys); a stage whose
key is unchanged reuses its artifact. Consumers check that an artifact is complete, that its files
still hash to what was recorded, and that every ancestor still has the key it was built from.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

from stages.core import safefs
from stages.core.version import __version__
from stages.store import mac
from stages.store.atomic import TargetExists, atomic_dir, atomic_write_json, atomic_write_text, prune_empty
from stages.store.atomic import sweep_leftovers
from stages.errors import MissingArtifactError, StaleArtifactError, UsageError
from stages.core.hashing import cache_key, file_sha256
from stages.core.names import check_name
from stages.store.meta import COMMAND, META, hash_outputs as _hash_outputs, meta_problem, rerun_hint

META_FORMAT = 1
DEFAULT_CACHE = "cache"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "h5py", "imbalanced-learn",
              "transformers", "pandas")


def expand_runs(cache_dir: Path | str | None, pattern: str, command: str = "") -> list["RunStore"]:
    """The runs a name stands for: itself, or every existing run matching its wildcards (* ? [])."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    if not any(ch in pattern for ch in "*?["):
        return [RunStore(root, pattern, command)]
    names = sorted(p.name for p in root.glob(pattern) if p.is_dir())
    if not names:
        raise MissingArtifactError(f"no run matches {pattern!r} in {root}",
                                   fix="run the earlier stages for those runs first")
    return [RunStore(root, n, command) for n in names]


def run_for_seed(template: str, seed: int) -> str:
    """``brca-s{seed}`` -> ``brca-s3``: pairs split k with training seed k."""
    return template.replace("{seed}", str(seed))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIMD_CACHE") or DEFAULT_CACHE)


def package_versions(*extra: str) -> dict[str, str]:
    """climd's, Python's and the installed versions of the libraries results depend on (+ ``extra``)."""
    versions = {"climd": __version__, "python": sys.version.split()[0]}
    for name in (*_VERSIONED, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Artifact:
    """A complete artifact: its directory and the parsed ``meta.json``."""

    name: str
    path: Path
    meta: dict

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def stage(self) -> str:
        return self.meta["stage"]

    @property
    def params(self) -> dict:
        return self.meta["params"]

    @property
    def summary(self) -> dict:
        return self.meta.get("summary", {})

    def file(self, rel: str) -> Path:
        return self.path / rel

    def ref(self) -> dict:
        """How a downstream artifact records this one as an input."""
        return {"artifact": self.name, "key": self.key}

    def verify_outputs(self) -> None:
        """Raise if an output file is missing or no longer hashes to what was recorded."""
        for rel, rec in self.meta["outputs"].items():
            path = self.path / rel
            if not path.exists() and not path.is_symlink():
                raise StaleArtifactError(f"artifact {self.path} is corrupt: {rel} is missing",
                                         fix=self.rerun_hint_for())
            try:
                safefs.no_links(self.path, path, "an output of the artifact")
                changed = path.lstat().st_size != rec["bytes"] or file_sha256(path, regular_only=True) != rec["sha256"]
            except OSError as exc:   # a link, FIFO, device or folder where a file was written
                raise StaleArtifactError(f"artifact {self.path} is corrupt: {rel} {exc.strerror}",
                                         fix=self.rerun_hint_for()) from None
            if changed:
                raise StaleArtifactError(
                    f"artifact {self.path} is corrupt: {rel} changed after it was written",
                    fix=self.rerun_hint_for())

    def rerun_hint_for(self) -> str:
        return rerun_hint(self.path, self.meta.get("command"), self.stage,
                          self.path.parents[len(self.name.split("/"))])


class RunStore:
    """Paths and bookkeeping for one run directory ``<cache_dir>/<run>/``."""

    def __init__(self, cache_dir: Path | str | None, run: str, command: str = ""):
        """``command``: the command line that is building artifacts here (recorded in each meta.json
        and its COMMAND file, so an artifact can say how to rebuild it); passed in by the caller."""
        if not _RUN_NAME.match(run or ""):
            raise UsageError(f"invalid run name {run!r}",
                             fix="use letters, digits, '.', '_' or '-' (no slashes)")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.run = run
        self.root = self.cache_dir / run
        self.command = command

    def path(self, name: str) -> Path:
        """The folder of artifact ``name`` (``score.oof``, ``train/<variant>/seed3``): every component
        must be one safe path component, so a tag or variant like ``../../x`` is refused (exit 2), and
        no existing component below the cache root may be a symbolic link (exit 5, naming it)."""
        for part in name.split("/"):
            check_name(part, "artifact name (from a --tag, --variant or stage option)")
        return safefs.no_links(self.cache_dir, self.root / name)

    # -- reading -----------------------------------------------------------------------------
    def read(self, name: str) -> Artifact:
        """The artifact ``name`` if it is complete; does not check hashes or freshness."""
        path = self.path(name)
        stage = name.split("/")[0].split(".")[0]
        if not path.exists():
            raise MissingArtifactError(
                f"no {stage} artifact at {path}",
                fix=f"run `climd {stage} --run {self.run}` first (cache dir: {self.cache_dir})")
        meta_path = path / META
        if not safefs.is_real_dir(path) or not (meta_path.exists() or meta_path.is_symlink()):
            live = _live_holder(path)
            if live:
                raise StaleArtifactError(f"artifact {path} is being written now by {live}",
                                         fix="wait for it to finish, then rerun this command")
            raise StaleArtifactError(
                f"artifact {path} is incomplete (no {META}): its stage was interrupted",
                fix=f"rerun `climd {stage} --run {self.run}`; it restarts cleanly")
        try:
            meta = json.loads(safefs.read_text(meta_path, "meta"))
        except (safefs.NotRegular, safefs.TooLarge) as exc:
            raise StaleArtifactError(f"artifact {path} is corrupt: its {META} {exc.strerror}",
                                     fix=rerun_hint(path, None, stage, self.cache_dir)) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StaleArtifactError(f"artifact {path} has an unreadable {META} ({exc.__class__.__name__})",
                                     fix=rerun_hint(path, None, stage, self.cache_dir)) from None
        problem = meta_problem(meta)
        if problem:
            raise StaleArtifactError(f"artifact {path} has a malformed {META}: {problem}",
                                     fix=rerun_hint(path, None, stage, self.cache_dir))
        mac.check(meta, meta_path, fix=rerun_hint(path, None, stage, self.cache_dir))
        return Artifact(name=name, path=path, meta=meta)

    def load(self, name: str, verify: bool = True) -> Artifact:
        """A complete, uncorrupted artifact whose ancestors are unchanged since it was built."""
        artifact = self.read(name)
        if verify:
            artifact.verify_outputs()
        self.check_fresh(artifact)
        return artifact

    def check_fresh(self, artifact: Artifact) -> None:
        for role, rec in artifact.meta.get("inputs", {}).items():
            if "artifact" not in rec:
                continue
            try:
                current = self.read(rec["artifact"])
            except MissingArtifactError:
                raise StaleArtifactError(
                    f"{artifact.name} is stale: its input {rec['artifact']} no longer exists",
                    fix=artifact.rerun_hint_for()) from None
            if current.key != rec["key"]:
                raise StaleArtifactError(
                    f"{artifact.name} is stale: {rec['artifact']} has changed since "
                    f"{artifact.name} was built from it",
                    fix=f"rerun `{artifact.meta.get('command') or 'climd ' + artifact.stage}`")
            self.check_fresh(current)

    def list(self, prefix: str) -> list[Artifact]:
        """Every complete artifact below ``prefix`` (e.g. all seeds of all train variants)."""
        return [a for a in self.scan(prefix, depth=None) if isinstance(a, Artifact)]

    def scan(self, prefix: str, depth: int | None = 2) -> list:
        """Every artifact folder below ``prefix``: an :class:`Artifact`, or the
        :class:`StaleArtifactError` that explains why it is incomplete or unreadable, so that one
        damaged replicate is named instead of blocking the rest. ``depth``: folder levels below
        ``prefix`` that hold artifacts (2 for ``train/<variant>/seed<k>``); None: any folder with a
        meta.json."""
        base = self.path(prefix)
        if not base.is_dir():
            return []
        if depth is None:
            folders = sorted({p.parent for p in base.rglob(META)})
        else:
            folders = sorted(p for p in base.glob("/".join(["*"] * depth)) if p.is_dir() and not p.name.startswith("."))
        found = []
        for folder in folders:
            rel = folder.relative_to(self.root).as_posix()
            try:
                found.append(self.read(rel))
            except StaleArtifactError as exc:
                exc.name = rel
                found.append(exc)
        return found

    # -- building ----------------------------------------------------------------------------
    def key_for(self, stage: str, version: int, params: Mapping, inputs: Mapping) -> str:
        return cache_key({"stage": stage, "version": version, "params": params,
                          "inputs": {r: v.get("key") or v.get("fingerprint") for r, v in inputs.items()}})

    def begin(self, name: str, stage: str, version: int, params: Mapping, inputs: Mapping[str, dict],
              force: bool = False, key_params: Mapping | None = None) -> "Ticket":
        """Start building ``name``: a ticket that is already done when a matching artifact exists
        (``ticket.reused``), else carries the key and provenance for :meth:`Ticket.commit`.

        ``key_params`` (default ``params``) is what the key hashes; meta.json records ``params``."""
        parent = self.path(name).parent
        if parent.is_dir():
            sweep_leftovers(parent, recursive=False)   # dead writers' temporary folders, reused or not
        key = self.key_for(stage, version, params if key_params is None else key_params, inputs)
        if not force:
            reusable = self.reusable(name, key)
            if reusable is not None:
                return Ticket(self, name, stage, version, dict(params), dict(inputs), key, artifact=reusable)
        return Ticket(self, name, stage, version, dict(params), dict(inputs), key)

    def build(self, name: str, stage: str, version: int, params: Mapping, inputs: Mapping[str, dict],
              produce: Callable[[Path], dict], force: bool = False,
              incremental: bool = False, key_params: Mapping | None = None) -> tuple[Artifact, bool]:
        """Reuse ``name`` if its key matches, else run ``produce(dir) -> summary`` and record it.

        ``inputs`` maps a role to ``Artifact.ref()`` or ``{"fingerprint": ..., "path": ...}``.
        Returns (artifact, reused). With ``incremental`` the producer works in the final
        directory (so it can resume from checkpoints) and ``meta.json`` marks completion.
        """
        ticket = self.begin(name, stage, version, params, inputs, force, key_params)
        if ticket.reused:
            return ticket.artifact, True
        return self.make(ticket, produce, force, incremental)

    def make(self, ticket: "Ticket", produce: Callable[[Path], dict], force: bool = False,
             incremental: bool = False, guard: Callable[[Path], None] | None = None) -> tuple[Artifact, bool]:
        """:meth:`build` for a ticket of :meth:`begin` that was not reused. ``guard(existing)`` may
        raise to refuse replacing what another writer published meanwhile (checked at publication)."""
        name, path = ticket.name, ticket.path
        if incremental:
            ticket.open_in_place(clear=force)
            ticket.commit(path, produce(path))
            return self.read(name), False
        # Another node may finish the same artifact first: keep its version when it has our key
        # (we reuse it), replace one made from other inputs; --force always replaces.
        replace = True if force else (lambda existing: (guard is not None and guard(existing))
                                      or not _intact_with_key(existing, ticket.key))
        new_run = not self.root.exists()   # a refused first build leaves no empty run folder behind
        try:
            with atomic_dir(path, replace=replace) as tmp:
                ticket.commit(tmp, produce(tmp))
        except TargetExists:
            return self.read(name), True
        except BaseException:
            prune_empty(path.parent, self.cache_dir, new_run)
            raise
        return self.read(name), False

    def reusable(self, name: str, key: str) -> Artifact | None:
        """The complete, intact artifact ``name`` if it has ``key`` (None otherwise)."""
        try:
            existing = self.read(name)
            if existing.key != key:
                return None
            existing.verify_outputs()
            return existing
        except (MissingArtifactError, StaleArtifactError):
            return None


class Ticket:
    """One artifact being built: its key and provenance, until :meth:`commit` writes ``meta.json``."""

    def __init__(self, store: RunStore, name: str, stage: str, version: int, params: dict, inputs: dict,
                 key: str, artifact: Artifact | None = None):
        self.store, self.name, self.stage, self.version = store, name, stage, version
        self.params, self.inputs, self.key, self.artifact = params, inputs, key, artifact
        self.started, self._t0 = _now(), time.perf_counter()

    @property
    def reused(self) -> bool:
        return self.artifact is not None

    @property
    def path(self) -> Path:
        return self.store.path(self.name)

    def open_in_place(self, clear: bool = False) -> Path:
        """For artifacts written in their final folder (training): remove ``meta.json`` first, so an
        interrupted build reads as incomplete, never as complete; ``clear`` empties the folder."""
        path = self.path
        path.mkdir(parents=True, exist_ok=True)
        (path / META).unlink(missing_ok=True)
        if clear:
            _empty_dir(path)
        return path

    def commit(self, directory: Path, summary: dict | None, command: str | None = None) -> dict:
        """Hash the outputs in ``directory`` and write ``meta.json`` (last) there."""
        command = command if command is not None else self.store.command
        meta = {
            "format": META_FORMAT, "stage": self.stage, "stage_version": self.version, "key": self.key,
            "params": self.params, "inputs": self.inputs, "outputs": _hash_outputs(directory),
            "summary": summary or {}, "versions": package_versions(), "command": command,
            "host": socket.gethostname(), "started": self.started, "finished": _now(),
            "duration_s": round(time.perf_counter() - self._t0, 3),
        }
        if command:
            atomic_write_text(Path(directory) / COMMAND, command + "\n")
        meta = mac.sign(meta)              # a keyed MAC when $CLIMD_CACHE_KEY is set
        atomic_write_json(Path(directory) / META, meta)
        return meta


def without_defaults(params: Mapping, defaults: Mapping, keep: tuple = ()) -> dict:
    """The parameters that differ from their defaults (plus ``keep``): what a key should hash, so an
    option added later with a default that keeps the old behaviour leaves existing keys valid (a
    changed default is a stage version bump)."""
    return {k: v for k, v in params.items() if k in keep or k not in defaults or v != defaults[k]}


def _empty_dir(path: Path) -> None:
    """Remove everything in ``path`` but its lease; a symbolic link is removed itself, never followed."""
    for entry in path.iterdir():
        if entry.name.startswith(".lease"):      # the lease of whoever is clearing it
            continue
        shutil.rmtree(entry) if safefs.is_real_dir(entry) else entry.unlink()


def _live_holder(path: Path) -> str | None:
    """Who is writing the artifact folder ``path`` now (its live lease), else None."""
    from stages.store.lease import LEASE_FILE, holder_text, read_record, record_status

    rec, st = read_record(Path(path) / LEASE_FILE)
    return holder_text(rec) if rec is not None and record_status(rec, st) == "live" else None


def _intact_with_key(directory: Path, key: str) -> bool:
    """A complete artifact at ``directory`` with this key whose outputs still hash as recorded."""
    try:
        meta = json.loads(safefs.read_text(Path(directory) / META, "meta"))
        if meta_problem(meta) or meta["key"] != key:
            return False
        Artifact(name=Path(directory).name, path=Path(directory), meta=meta).verify_outputs()
        return True
    except (OSError, ValueError, StaleArtifactError):   # UnicodeDecodeError is a ValueError
        return False

