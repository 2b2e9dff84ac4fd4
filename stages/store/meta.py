"""What a ``meta.json`` must hold to be read at all, and the output hashes it records (the store's
format, apart from how artifacts are built and reused: :mod:`stages.store`)."""
from __future__ import annotations

from pathlib import Path

from stages.core import safefs
from stages.core.cmdline import with_cache_dir
from stages.core.hashing import file_sha256

META = "meta.json"
COMMAND = "COMMAND"

_META_TYPES = {"key": str, "stage": str, "params": dict, "inputs": dict, "outputs": dict, "summary": dict}


def meta_problem(meta) -> str | None:
    """What is wrong with a parsed meta.json (None when it is well formed)."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, found {type(meta).__name__}"
    for field, kind in _META_TYPES.items():
        if not isinstance(meta.get(field), kind):
            return f"'{field}' is missing or not a {kind.__name__}"
    for rel, rec in meta["outputs"].items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            return f"output path {rel!r} leaves the artifact folder"
        if not (isinstance(rec, dict) and isinstance(rec.get("sha256"), str) and isinstance(rec.get("bytes"), int)):
            return f"output {rel!r} has no sha256/bytes record"
    for role, rec in meta["inputs"].items():
        if not isinstance(rec, dict) or ("artifact" in rec and not isinstance(rec.get("key"), str)):
            return f"input {role!r} is malformed"
    return None


def hash_outputs(directory: Path) -> dict:
    out = {}
    for path in sorted(p for p in directory.rglob("*") if safefs.is_regular(p)):   # never through a link
        rel = path.relative_to(directory).as_posix()
        if rel in (META, COMMAND) or path.name.startswith(".tmp-") or path.name.startswith(".lease"):
            continue
        out[rel] = {"sha256": file_sha256(path, regular_only=True), "bytes": path.lstat().st_size}
    return out


def rerun_hint(path: Path, command: str | None, stage: str, cache_dir: Path | None = None) -> str:
    """How to rebuild the artifact at ``path``: the command recorded when it was built (also kept in
    a COMMAND file beside meta.json, so the hint survives a damaged meta.json), with --force and
    with ``--cache-dir`` naming where the cache is now."""
    if not command:
        try:
            command = safefs.read_text(Path(path) / COMMAND, "command").strip()
        except (OSError, UnicodeDecodeError):
            command = ""
    command = with_cache_dir(command, cache_dir)
    if command:
        return f"rerun `{command}{'' if ' --force' in command else ' --force'}`"
    return f"rerun the {stage} stage with --force (same options as before), or delete {path}"
