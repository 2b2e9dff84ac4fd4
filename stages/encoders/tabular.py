"""Standardisation (and optional imputation) fitted on the training split only."""
from __future__ import annotations

import numpy as np

IMPUTERS = ("mean", "median")


def standardize(x: np.ndarray, train: np.ndarray, impute: str | None = None) -> tuple[np.ndarray, dict]:
    """z-scores using training-split statistics; constant features get std 1 (stay at 0).

    Missing values are filled with the training mean/median only when ``impute`` is given (the
    data check refuses NaN otherwise).
    """
    x = np.array(x, dtype=np.float64)
    stats = {}
    if impute is not None:
        fill = (np.nanmean if impute == "mean" else np.nanmedian)(x[train], axis=0)
        fill = np.where(np.isfinite(fill), fill, 0.0)
        rows, cols = np.nonzero(np.isnan(x))
        x[rows, cols] = fill[cols]
        stats["impute"] = impute
        stats["fill"] = fill
        stats["n_imputed"] = int(len(rows))
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    stats.update(mean=mean, std=std)
    return ((x - mean) / std).astype(np.float32), stats
