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

from . import __version__
from .atomic import atomic_dir, atomic_write_json
from .errors import MissingArtifactError, StaleArtifactError, UsageError
from .hashing import cache_key, file_sha256

META = "meta.json"
META_FORMAT = 1
DEFAULT_CACHE = "cache"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "h5py", "imbalanced-learn",
              "transformers", "pandas")


def expand_runs(cache_dir: Path | str | None, pattern: str) -> list["RunStore"]:
    """The runs a name stands for: itself, or every existing run matching its wildcards (* ? [])."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    if not any(ch in pattern for ch in "*?["):
        return [RunStore(root, pattern)]
    names = sorted(p.name for p in root.glob(pattern) if p.is_dir())
    if not names:
        raise MissingArtifactError(f"no run matches {pattern!r} in {root}",
                                   fix="run the earlier stages for those runs first")
    return [RunStore(root, n) for n in names]


def run_for_seed(template: str, seed: int) -> str:
    """``brca-s{seed}`` -> ``brca-s3``: pairs split k with training seed k."""
    return template.replace("{seed}", str(seed))


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLIMD_CACHE") or DEFAULT_CACHE)


def package_versions() -> dict[str, str]:
    versions = {"climd": __version__, "python": sys.version.split()[0]}
    for name in _VERSIONED:
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
        for rel, rec in self.meta.get("outputs", {}).items():
            path = self.path / rel
            if not path.is_file():
                raise StaleArtifactError(f"artifact {self.path} is corrupt: {rel} is missing",
                                         fix=self._rerun_hint())
            if path.stat().st_size != rec["bytes"] or file_sha256(path) != rec["sha256"]:
                raise StaleArtifactError(
                    f"artifact {self.path} is corrupt: {rel} changed after it was written",
                    fix=self._rerun_hint())

    def _rerun_hint(self) -> str:
        cmd = self.meta.get("command")
        return f"rerun `{cmd} --force`" if cmd else f"rerun the {self.stage} stage with --force"


class RunStore:
    """Paths and bookkeeping for one run directory ``<cache_dir>/<run>/``."""

    def __init__(self, cache_dir: Path | str | None, run: str):
        if not _RUN_NAME.match(run or ""):
            raise UsageError(f"invalid run name {run!r}",
                             fix="use letters, digits, '.', '_' or '-' (no slashes)")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.run = run
        self.root = self.cache_dir / run

    def path(self, name: str) -> Path:
        return self.root / name

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
        if not meta_path.is_file():
            raise StaleArtifactError(
                f"artifact {path} is incomplete (no {META}): its stage was interrupted",
                fix=f"rerun `climd {stage} --run {self.run}`; it restarts cleanly")
        try:
            meta = json.loads(meta_path.read_text())
            meta["key"], meta["stage"]
        except (ValueError, KeyError) as exc:
            raise StaleArtifactError(f"artifact {path} has an unreadable {META} ({exc})",
                                     fix=f"rerun `climd {stage} --run {self.run} --force`")
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
                    fix=artifact._rerun_hint()) from None
            if current.key != rec["key"]:
                raise StaleArtifactError(
                    f"{artifact.name} is stale: {rec['artifact']} has changed since "
                    f"{artifact.name} was built from it",
                    fix=f"rerun `{artifact.meta.get('command') or 'climd ' + artifact.stage}`")
            self.check_fresh(current)

    def list(self, prefix: str) -> list[Artifact]:
        """Every complete artifact below ``prefix`` (e.g. all seeds of all train variants)."""
        base = self.path(prefix)
        if not base.exists():
            return []
        found = []
        for meta_path in sorted(base.rglob(META)):
            rel = meta_path.parent.relative_to(self.root).as_posix()
            found.append(self.read(rel))
        return found

    # -- building ----------------------------------------------------------------------------
    def key_for(self, stage: str, version: int, params: Mapping, inputs: Mapping) -> str:
        return cache_key({"stage": stage, "version": version, "params": params,
                          "inputs": {r: v.get("key") or v.get("fingerprint") for r, v in inputs.items()}})

    def build(self, name: str, stage: str, version: int, params: Mapping, inputs: Mapping[str, dict],
              produce: Callable[[Path], dict], force: bool = False,
              incremental: bool = False) -> tuple[Artifact, bool]:
        """Reuse ``name`` if its key matches, else run ``produce(dir) -> summary`` and record it.

        ``inputs`` maps a role to ``Artifact.ref()`` or ``{"fingerprint": ..., "path": ...}``.
        Returns (artifact, reused). With ``incremental`` the producer works in the final
        directory (so it can resume from checkpoints) and ``meta.json`` marks completion.
        """
        key = self.key_for(stage, version, params, inputs)
        if not force:
            reusable = self._reusable(name, key)
            if reusable is not None:
                return reusable, True
        started, t0 = _now(), time.perf_counter()

        def finish(directory: Path) -> dict:
            summary = produce(directory)
            meta = {
                "format": META_FORMAT, "stage": stage, "stage_version": version, "key": key,
                "params": dict(params), "inputs": dict(inputs),
                "outputs": _hash_outputs(directory),
                "summary": summary or {}, "versions": package_versions(),
                "command": _command_line(), "host": socket.gethostname(),
                "started": started, "finished": _now(),
                "duration_s": round(time.perf_counter() - t0, 3),
            }
            atomic_write_json(directory / META, meta)
            return meta

        path = self.path(name)
        if incremental:
            path.mkdir(parents=True, exist_ok=True)
            (path / META).unlink(missing_ok=True)
            if force:
                _empty_dir(path)
            finish(path)
        else:
            with atomic_dir(path) as tmp:
                finish(tmp)
        return self.read(name), False

    def _reusable(self, name: str, key: str) -> Artifact | None:
        try:
            existing = self.read(name)
            if existing.key != key:
                return None
            existing.verify_outputs()
            return existing
        except (MissingArtifactError, StaleArtifactError):
            return None


def _hash_outputs(directory: Path) -> dict:
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel == META or path.name.startswith(".tmp-"):
            continue
        out[rel] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    return out


def _empty_dir(path: Path) -> None:
    for entry in path.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


_COMMAND: list[str] = []


def set_command_line(command: str) -> None:
    """Record the CLI command that is running, so artifacts can say how to rebuild them."""
    _COMMAND[:] = [command]


def _command_line() -> str:
    return _COMMAND[0] if _COMMAND else ""
