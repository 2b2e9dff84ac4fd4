"""A run holds one data set: ``climd encode --run EXISTING`` with other data is refused without --force.

Without this, ``climd encode --run brca`` (no ``--data``) would silently replace brca's features with
the embedded ROSMAP, and every later stage of that run would follow. The data a run holds is read
from its encode meta.json (``inputs.data.path``), or, when that file is damaged, from the COMMAND
file recorded beside it.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from stages.errors import DataError
from stages.store.artifacts import COMMAND, META, RunStore

EMBEDDED = "embedded:rosmap"


def recorded_data(folder: Path) -> tuple[str, str | None] | None:
    """(data path as recorded, its resolved form if recorded) of an encode artifact, else None."""
    try:
        meta = json.loads((folder / META).read_text())
        rec = meta["inputs"]["data"]
        return str(rec["path"]), rec.get("resolved")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        words = shlex.split((folder / COMMAND).read_text())
    except (OSError, ValueError):
        return None
    for i, word in enumerate(words):
        if word == "--data" and i + 1 < len(words):
            return words[i + 1], None
        if word.startswith("--data="):
            return word.split("=", 1)[1], None
    return (EMBEDDED, None) if words[:2] == ["climd", "encode"] else None


def resolved(path: str) -> str:
    return path if path == EMBEDDED else str(Path(path).expanduser().resolve())


def check_same_data(store: RunStore, name: str, inputs: dict, key: str, force: bool) -> None:
    """Refuse to rebuild ``name`` from another data path than the one it holds (unless ``force``).

    Same key: the artifact is reused, nothing to check. Same data path (the files changed in place,
    or other options): a normal rebuild."""
    folder = store.path(name)
    if force or not folder.is_dir():
        return
    held = recorded_data(folder)
    if held is None:
        return
    try:
        if json.loads((folder / META).read_text()).get("key") == key:
            return
    except (OSError, ValueError, AttributeError):
        pass
    new = inputs["data"]["path"]
    old_path, old_resolved = held
    if new == old_path or resolved(new) == (old_resolved or resolved(old_path)):
        return
    shown_new = "the embedded ROSMAP (no --data given)" if new == EMBEDDED else new
    full = old_resolved or resolved(old_path)
    shown_old = ("the embedded ROSMAP" if old_path == EMBEDDED else
                 old_path if full == old_path else f"{old_path} ({full})")
    again = "" if old_path == EMBEDDED else f" --data {shlex.quote(full)}"
    raise DataError(
        f"run {store.run!r} already holds {shown_old}; this encode would replace it with {shown_new}",
        fix=f"use a new run name for this data (--run NAME), rerun with `--run {store.run}{again}` to keep it, "
            f"or add --force to replace run {store.run!r} (its later stages become stale)")
