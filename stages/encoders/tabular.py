"""Standardisation (and optional imputation) fitted on the training split only."""
from __future__ import annotations

import numpy as np

from stages.errors import DataError

IMPUTERS = ("mean", "median")
FLOAT32_MAX = float(np.finfo(np.float32).max)


class TabularScaler:
    """Standardisation (and optional imputation) as a fit/transform object, scikit-learn style: the
    constructor stores options, :meth:`fit` learns ``fill_``, ``mean_``, ``std_`` and ``scale_`` from the
    training rows only, :meth:`transform` applies them to any rows (encode's, and ``climd predict``'s
    new samples, identically). :meth:`save` / :meth:`load` keep the learned state in the features
    file's ``preprocessing/<modality>`` group (plain arrays, never pickled).

    z = (x / scale − mean / scale) / (std / scale): scale is 1 for ordinary columns (exact z-scores);
    a column whose sum of squares overflows float64 is first divided by its largest training magnitude.
    Constant features get std 1 (stay at 0)."""

    def __init__(self, impute: str | None = None):
        if impute is not None and impute not in IMPUTERS:
            raise ValueError(f"impute must be one of {IMPUTERS} or None, got {impute!r}")
        self.impute = impute

    def fit(self, x: np.ndarray, train) -> "TabularScaler":
        x = np.array(x, dtype=np.float64)
        self.n_imputed_ = 0
        self.fill_ = None
        if self.impute is not None:
            with np.errstate(all="ignore"):
                fill = (np.nanmean if self.impute == "mean" else np.nanmedian)(x[train], axis=0)
            self.fill_ = np.where(np.isfinite(fill), fill, 0.0)
            x = self._filled(x)
            self.n_imputed_ = 0                 # counted when transform fills them
        self.scale_ = np.ones(x.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            self.scale_, mean, std = _scaled_moments(x[train])
        self.mean_, self.std_ = mean, np.where(std > 1e-12, std, 1.0)
        return self

    def _filled(self, x: np.ndarray) -> np.ndarray:
        rows, cols = np.nonzero(np.isnan(x))
        if len(rows) and self.fill_ is not None:
            x = x.copy()
            x[rows, cols] = self.fill_[cols]
            self.n_imputed_ = getattr(self, "n_imputed_", 0) + int(len(rows))
        return x

    def transform(self, x: np.ndarray, where=None) -> np.ndarray:
        """float32 z-scores; missing values filled when the scaler imputes. A z-score that is not a
        finite float32 is refused: ``where(row, col) -> (file, place)`` names it."""
        x = self._filled(np.array(x, dtype=np.float64))
        scale = self.scale_
        with np.errstate(over="ignore", invalid="ignore"):      # x / 1.0 is exact: ordinary data unchanged
            z = (x / scale - self.mean_ / scale) / (self.std_ / scale)
        bad = ~(np.isfinite(z) & (np.abs(z) <= FLOAT32_MAX))
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            path, at = where(row, col) if where else ("the data", f"row {row + 1}, column {col + 1}")
            raise DataError(f"{path}: value {x[row, col]:.6g} at {at} cannot be standardised (its z-score "
                            f"against the training split is not a finite float32; {int(bad.sum())} such value(s))",
                            fix="rescale that column (e.g. change its unit or take a log) or correct the value")
        return z.astype(np.float32)

    def fit_transform(self, x: np.ndarray, train, where=None) -> np.ndarray:
        return self.fit(x, train).transform(x, where)

    def save(self, group) -> None:
        """Into an h5py group: mean, std, and fill / scale only when they are used (files of runs
        without --impute or overflowing columns stay as they were)."""
        group.create_dataset("mean", data=self.mean_)
        group.create_dataset("std", data=self.std_)
        if self.fill_ is not None:               # --impute: what `climd predict` fills new samples with
            group.create_dataset("fill", data=self.fill_)
        if not np.all(self.scale_ == 1.0):
            group.create_dataset("scale", data=self.scale_)

    @classmethod
    def load(cls, group) -> "TabularScaler":
        fill = group["fill"][...] if "fill" in group else None
        out = cls(None)
        out.fill_, out.mean_, out.std_ = fill, group["mean"][...], group["std"][...]
        out.scale_ = group["scale"][...] if "scale" in group else np.ones(len(out.mean_))
        out.n_imputed_ = 0
        return out


def standardize(x: np.ndarray, train: np.ndarray, impute: str | None = None, where=None) -> tuple[np.ndarray, dict]:
    """:class:`TabularScaler` fitted on ``train`` and applied to every row: (z, its learned state)."""
    scaler = TabularScaler(impute)
    z = scaler.fit_transform(x, train, where)
    stats = {"mean": scaler.mean_, "std": scaler.std_}
    if impute is not None:
        stats.update(impute=impute, fill=scaler.fill_, n_imputed=scaler.n_imputed_)
    return z, stats


def _scaled_moments(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, mean, std) of each column, computed on the column divided by its largest magnitude."""
    with np.errstate(all="ignore"):
        scale = np.max(np.abs(train_x), axis=0) if len(train_x) else np.ones(train_x.shape[1])
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    scaled = train_x / scale
    return scale, scaled.mean(axis=0) * scale, scaled.std(axis=0) * scale
