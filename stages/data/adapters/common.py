"""Small readers shared by the adapters, each raising a DataError that names the file.

Every message stays short: values and column names are clipped and at most a few are shown, so a
file read with the wrong delimiter (one giant column) gives one readable line, not kilobytes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.errors import DataError

SHOWN = 3            # offending values quoted in a message
CLIP = 40            # characters of one quoted value


def clip(value, limit: int = CLIP) -> str:
    """``repr(value)``, shortened to about ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def few(values, k: int = SHOWN) -> str:
    """The first ``k`` values, clipped, and how many more there are."""
    values = list(values)
    shown = "[" + ", ".join(clip(v) for v in values[:k]) + "]"
    return shown + (f" and {len(values) - k} more" if len(values) > k else "")


def require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing {what}: {path}", fix="check the --data path and the file name")
    return path


def sniff_delimiter(path: Path) -> str | None:
    """';' or tab when the first line is clearly separated by it rather than by commas, else None."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(65536).decode("utf-8", errors="replace")
    except OSError:
        return None
    counts = {sep: first.count(sep) for sep in (";", "\t", "|")}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    return sep if n and n > first.count(",") else None


def _delimiter_error(path: Path, what: str, sep: str) -> DataError:
    name = {";": "semicolons", "\t": "tabs", "|": "'|'"}[sep]
    return DataError(f"{path}: the {what} is separated by {name}, not commas",
                     fix=f"save it as a comma-separated CSV (e.g. pandas.read_csv(path, sep={sep!r})"
                         ".to_csv(path, index=False))")


def read_csv(path: Path, what: str, header_only_ok: bool = False, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` with one message (naming the file and the fix) for an empty, header-only,
    undecodable or wrongly delimited file."""
    require_file(path, what)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the {what} is empty (0 bytes)",
                        fix="write the file again (a header line, then one row per sample) or point to "
                            "the right file")
    sep = sniff_delimiter(path)
    if sep is not None:
        raise _delimiter_error(path, what, sep)
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {what} has no data (only blank lines)",
                        fix="write a header line, then one row per sample") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse the {what} ({str(exc).strip()[:160]})",
                        fix="every row needs the same number of comma-separated fields") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})",
                        fix="save the file as UTF-8 CSV") from None
    if len(frame) == 0 and not header_only_ok:
        raise DataError(f"{path}: the {what} has a header line but no data rows",
                        fix="add one row per sample below the header")
    return frame


def read_numeric_matrix(path: Path, what: str) -> np.ndarray:
    """A header-less numeric CSV (MOGONET views). Empty cells become NaN, caught by validation."""
    frame = read_csv(path, what, header=None)
    first = pd.to_numeric(frame.iloc[0], errors="coerce")
    if first.isna().all() and frame.iloc[0].notna().all():
        rest = "" if len(frame) > 1 else " and no data rows follow"
        raise DataError(f"{path}: the first row looks like a header ({few(frame.iloc[0].tolist())}){rest}",
                        fix="MOGONET files have no header row and one row of numbers per sample")
    return to_float(frame, path)


def read_keyed_table(path: Path, what: str, id_column: str | None = None) -> pd.DataFrame:
    """A CSV with a sample-id column (``id_column``, default the first) and numeric features."""
    header = read_csv(path, what, header_only_ok=True, nrows=0)
    columns = list(header.columns)
    if id_column is None:
        id_column = columns[0]
    elif id_column not in columns:
        raise DataError(f"{path}: no id column {id_column!r} (columns: {few(columns, 5)})",
                        fix="set id_column to the column that holds the sample ids")
    frame = read_csv(path, what, dtype={id_column: str})
    ids = frame.pop(id_column)
    missing = np.flatnonzero(ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy())
    if len(missing):
        raise DataError(f"{path}: {len(missing)} row(s) without a sample id in column {id_column!r}, "
                        f"first on line {int(missing[0]) + 2}", fix="give every row its sample id")
    frame.index = pd.Index(ids.astype(str).str.strip(), name=id_column)
    check_unique(frame.index, path, id_column)
    try:
        to_float(frame, path)
    except DataError as exc:
        hint = _id_hint(frame, id_column)
        if hint:
            exc.message += f"; column {hint!r} looks like sample ids, not the first column {id_column!r}"
            exc.fix = (f"if {hint!r} holds the ids, name it: `id_column: {hint}` for this modality in a "
                       f"manifest, or move it to the first column (ids are read from the first column "
                       "by default)")
        raise
    return frame


def _id_hint(frame: pd.DataFrame, id_column: str) -> str | None:
    """A non-numeric column whose values are all distinct text: probably the real id column."""
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) or values.isna().any():
            continue
        if values.is_unique and pd.to_numeric(values, errors="coerce").isna().all() and len(values) > 2:
            return str(col)
    return None


def check_unique(ids, path: Path, column: str) -> None:
    """Refuse duplicate ids, naming the first one and the lines it is on (header = line 1)."""
    ids = pd.Index(ids)
    if not ids.has_duplicates:
        return
    dup = ids[ids.duplicated()].unique().tolist()
    lines = [int(i) + 2 for i in np.flatnonzero(ids == dup[0])][:SHOWN]
    raise DataError(f"{path}: duplicate sample id {clip(dup[0])} in column {column!r} (lines "
                    f"{', '.join(map(str, lines))})" + (f"; {len(dup)} duplicated ids in all" if len(dup) > 1 else ""),
                    fix=f"make every id in {path.name} unique (one row per sample)")


def to_float(frame: pd.DataFrame, path: Path) -> np.ndarray:
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        col = bad[0]
        values = frame[col]
        sample = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        more = f" ({len(bad)} non-numeric columns in all)" if len(bad) > 1 else ""
        raise DataError(f"{path}: column {clip(col)} is not numeric"
                        + (f" (e.g. {few(sample.unique().tolist())})" if len(sample) else "") + more,
                        fix="encode categorical columns as numbers (one-hot) before `climd encode`")
    return frame.to_numpy(dtype=np.float64)


def align(frame: pd.DataFrame, ids: list[str], path: Path, label_path: Path, labelled: bool = True) -> np.ndarray:
    """Rows of ``frame`` in the order of ``ids``; every id must be present, no id may be extra.
    ``labelled=False`` (new samples for predict): the ids come from ``label_path`` without labels."""
    have = set(frame.index)
    missing = [i for i in ids if i not in have]
    extra = sorted(have - set(ids))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} {'labelled ' if labelled else ''}sample(s) of {label_path.name} missing, "
                         f"e.g. {few(missing)}")
        if extra:
            parts.append(f"{len(extra)} id(s) {'without a label' if labelled else 'not'} in {label_path.name}, "
                         f"e.g. {few(extra)}")
        what = "the labels" if labelled else f"those of {label_path.name}"
        raise DataError(f"{path}: sample ids do not match {what} ({'; '.join(parts)})",
                        fix=f"give every modality file exactly the samples of {label_path.name}")
    return frame.loc[ids].to_numpy(dtype=np.float64)
