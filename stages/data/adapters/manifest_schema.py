"""The manifest's schema, checked before any file it names is read.

A hand-written check (no dependency): every key must be known (a typo such as ``split_colum`` is
named with the closest valid key, instead of silently falling back to a random split), every value
must have the right type, and every modality name must be one safe path component (it becomes a
folder name in the cache). All problems found are reported in one message.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from stages.data.dataset import KINDS
from stages.errors import DataError, UsageError
from stages.core.names import check_name

STR, LIST = "a text value", "a list of text values"
# key: (type description, required)
TOP = {"table": (STR, True), "id_column": (STR, True), "label_column": (STR, True),
       "modalities": ("a mapping of modality name -> settings", True), "split_column": (STR, False),
       "classes": ("a list of class names", False), "name": (STR, False)}
MODALITY = {"tabular": {"type": STR, "file": STR, "columns": LIST, "id_column": STR},
            "image": {"type": STR, "column": STR, "root": STR},
            "text": {"type": STR, "column": STR},
            "volume": {"type": STR, "column": STR, "root": STR}}
ALL_MODALITY_KEYS = sorted({k for keys in MODALITY.values() for k in keys})
MAX_PROBLEMS = 5


def check(spec, path: Path, required: tuple = tuple(k for k, (_, req) in TOP.items() if req)) -> dict:
    """Return ``spec`` (modality names as text) or raise one DataError listing what is wrong.

    A modality name that is not a safe folder name is a UsageError (exit 2), like ``--tag``."""
    if spec is None:
        raise DataError(f"{path}: the manifest is empty", fix=_see())
    if not isinstance(spec, dict):
        raise DataError(f"{path}: the manifest must be a mapping of keys (table:, id_column:, ...), "
                        f"found {_kind(spec)}", fix=_see())
    problems = []
    for key in spec:
        if key not in TOP:
            problems.append(_unknown(key, list(TOP), "top-level key"))
    for key, (kind, req) in TOP.items():
        if key not in spec:
            if key in required:
                problems.append(f"no {key!r}")
        elif key != "modalities" and not _is(spec[key], kind):
            problems.append(f"{key!r} must be {kind}, found {_kind(spec[key])}")
    mods = spec.get("modalities")
    if "modalities" in spec:
        if not isinstance(mods, dict) or not mods:
            problems.append(f"'modalities' must be a non-empty mapping of name -> settings "
                            f"(e.g. `labs: {{type: tabular, file: labs.csv}}`), found {_kind(mods)}")
        else:
            for name, mspec in mods.items():
                problems += _modality(name, mspec)
    if problems:
        shown = problems[:MAX_PROBLEMS] + ([f"{len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else [])
        raise DataError(f"{path}: invalid manifest: " + "; ".join(shown), fix=_see())
    if isinstance(mods, dict):
        for name in mods:
            try:
                check_name(str(name), "modality name")
            except UsageError as exc:
                raise UsageError(f"{path}: {exc.message}", fix=f"rename the modality in {path.name}: {exc.fix}") from None
        spec = {**spec, "modalities": {str(k): v for k, v in mods.items()}}
    return spec


def _modality(name, mspec) -> list[str]:
    where = f"modality {str(name)[:40]!r}"
    if mspec is None:
        return [f"{where} has no settings (needs at least `type: tabular|image|text|volume`)"]
    if not isinstance(mspec, dict):
        return [f"{where} must be a mapping such as {{type: tabular, file: labs.csv}}, found {_kind(mspec)}"]
    kind = mspec.get("type")
    if kind not in KINDS:
        return [f"{where} has type {kind!r} (use one of {', '.join(KINDS)})"]
    allowed = MODALITY[kind]
    problems = []
    for key, value in mspec.items():
        if key not in allowed:
            other = "" if key not in ALL_MODALITY_KEYS else " (it applies to other modality types)"
            problems.append(f"{where}: " + _unknown(key, list(allowed), f"key for type {kind}") + other)
        elif not _is(value, allowed[key]):
            problems.append(f"{where}: {key!r} must be {allowed[key]}, found {_kind(value)}")
    if kind == "tabular" and not ("file" in mspec or "columns" in mspec):
        problems.append(f"{where} needs 'file' (a CSV keyed by sample id) or 'columns' (of the table)")
    if kind == "tabular" and "file" in mspec and "columns" in mspec:
        problems.append(f"{where} has both 'file' and 'columns': give one")
    if kind == "tabular" and "id_column" in mspec and "file" not in mspec:
        problems.append(f"{where}: 'id_column' applies only with 'file'")
    if kind in ("image", "text", "volume") and "column" not in mspec:
        problems.append(f"{where} needs 'column' (the table column with the {kind} of each sample)")
    return problems


def _unknown(key, valid: list[str], what: str) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
    return f"unknown {what} {str(key)[:40]!r} ({hint})"


def _is(value, kind: str) -> bool:
    if kind == STR:
        return isinstance(value, str) and value.strip() != ""
    if kind in (LIST, TOP["classes"][0]):
        ok = (str, int) if kind != LIST else (str,)
        return isinstance(value, list) and bool(value) and all(
            isinstance(v, ok) and not isinstance(v, bool) for v in value)
    return True


def _kind(value) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:36] + '...'}"


def _see() -> str:
    return "see the manifest keys in docs/data.md (table, id_column, label_column, modalities, split_column, " \
           "classes, name)"
