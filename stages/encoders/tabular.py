"""Standardisation (and optional imputation) fitted on the training split only."""
from __future__ import annotations

import numpy as np

from stages.errors import DataError

IMPUTERS = ("mean", "median")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def standardize(x: np.ndarray, train: np.ndarray, impute: str | None = None, where=None) -> tuple[np.ndarray, dict]:
    """z-scores using training-split statistics; constant features get std 1 (stay at 0).

    Missing values are filled with the training mean/median only when ``impute`` is given (the
    data check refuses NaN otherwise). Computed in float64; a column whose sum of squares overflows
    (finite values near 1e308) is first scaled by its largest training magnitude. A z-score that is
    not finite in float32 is refused: ``where(row, col) -> (file, place)`` names it.
    """
    x = np.array(x, dtype=np.float64)
    stats = {}
    if impute is not None:
        with np.errstate(all="ignore"):
            fill = (np.nanmean if impute == "mean" else np.nanmedian)(x[train], axis=0)
        fill = np.where(np.isfinite(fill), fill, 0.0)
        rows, cols = np.nonzero(np.isnan(x))
        x[rows, cols] = fill[cols]
        stats["impute"] = impute
        stats["fill"] = fill
        stats["n_imputed"] = int(len(rows))
    scale = np.ones(x.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        scale, mean, std = _scaled_moments(x[train])
    std = np.where(std > 1e-12, std, 1.0)
    stats.update(mean=mean, std=std)
    with np.errstate(over="ignore", invalid="ignore"):      # x / 1.0 is exact: ordinary data unchanged
        z = (x / scale - mean / scale) / (std / scale)
    bad = ~(np.isfinite(z) & (np.abs(z) <= FLOAT32_MAX))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        path, at = where(row, col) if where else ("the data", f"row {row + 1}, column {col + 1}")
        raise DataError(f"{path}: value {x[row, col]:.6g} at {at} cannot be standardised (its z-score "
                        f"against the training split is not a finite float32; {int(bad.sum())} such value(s))",
                        fix="rescale that column (e.g. change its unit or take a log) or correct the value")
    return z.astype(np.float32), stats


def _scaled_moments(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, mean, std) of each column, computed on the column divided by its largest magnitude."""
    with np.errstate(all="ignore"):
        scale = np.max(np.abs(train_x), axis=0) if len(train_x) else np.ones(train_x.shape[1])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    scaled = train_x / scale
    return scale, scaled.mean(axis=0) * scale, scaled.std(axis=0) * scale
