"""Small readers shared by the adapters, each raising a DataError that names the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError


def require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing {what}: {path}", fix="check the --data path and the file name")
    return path


def read_numeric_matrix(path: Path, what: str) -> np.ndarray:
    """A header-less numeric CSV (MOGONET views). Empty cells become NaN, caught by validation."""
    require_file(path, what)
    try:
        frame = pd.read_csv(path, header=None)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})")
    return to_float(frame, path)


def read_keyed_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV whose first column is the sample id and whose other columns are numeric features."""
    require_file(path, what)
    try:
        frame = pd.read_csv(path, index_col=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})")
    frame.index = frame.index.astype(str).str.strip()
    if frame.index.duplicated().any():
        dup = frame.index[frame.index.duplicated()][:3].tolist()
        raise DataError(f"{path}: duplicate sample ids {dup}", fix="make the first column unique")
    to_float(frame, path)
    return frame


def to_float(frame: pd.DataFrame, path: Path) -> np.ndarray:
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        col = bad[0]
        sample = frame[col][pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()]
        raise DataError(f"{path}: column {col!r} is not numeric (e.g. {sample.iloc[0]!r})"
                        if len(sample) else f"{path}: column {col!r} is not numeric",
                        fix="encode categorical columns as numbers (one-hot) before `climd encode`")
    return frame.to_numpy(dtype=np.float64)


def align(frame: pd.DataFrame, ids: list[str], path: Path, label_path: Path) -> np.ndarray:
    """Rows of ``frame`` in the order of ``ids``; every id must be present, no id may be extra."""
    have = set(frame.index)
    missing = [i for i in ids if i not in have]
    extra = sorted(have - set(ids))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} labelled sample(s) missing, e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} id(s) without a label in {label_path.name}, e.g. {extra[:3]}")
        raise DataError(f"{path}: sample ids do not match the labels ({'; '.join(parts)})",
                        fix="give every modality file exactly the samples of the label file")
    return frame.loc[ids].to_numpy(dtype=np.float64)
