"""Small column tables and their CSV files, without pandas (0.3 s of start-up for a few hundred rows).

A table is a dict ``{column: numpy array}`` of equal lengths. Floats are written with a ``%g``
format; strings are quoted by the csv module when they need it (commas, quotes, spaces stay intact).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np


def to_csv(columns: dict, float_format: str = "%.8g") -> str:
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    cells = [[_cell(v, float_format) for v in columns[name]] for name in names]
    for i in range(n):
        writer.writerow([col[i] for col in cells])
    return buf.getvalue()


def _cell(value, float_format: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else float_format % value
    return str(value)


def read_csv(path: Path, kinds: dict[str, type]) -> dict[str, np.ndarray]:
    """Columns of a CSV: those named in ``kinds`` converted (str, int, float), the rest as str."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        kind = kinds.get(name, str)
        values = [row[j] for row in body]
        if kind is str:
            out[name] = np.array(values, dtype=object)
        elif kind is int:
            out[name] = np.array([int(v) for v in values], dtype=np.int64)
        else:
            out[name] = np.array([float(v) if v != "" else np.nan for v in values], dtype=np.float64)
    return out


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1], True])
    ranks_sorted = np.empty(len(x), dtype=np.float64)
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        ranks_sorted[start:stop] = (start + stop + 1) / 2.0       # mean of ranks start+1..stop
    out = np.empty(len(x), dtype=np.float64)
    out[order] = ranks_sorted
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks (nan when a side is constant)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")
