"""The one in-memory form every data adapter produces, and the checks every data set must pass."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

SPLITS = ("train", "valid", "test")
# Rows a data set keeps (so features cover the whole set) but that no stage trains or tests on.
UNUSED = "unused"
KINDS = ("tabular", "image", "text")


@dataclass
class Modality:
    """One modality. ``values``: float matrix (tabular), image paths (image) or strings (text)."""

    name: str
    kind: str
    values: object
    source: Path                      # the file a user would open to fix a problem
    feature_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Dataset:
    name: str
    ids: np.ndarray                  # str, unique
    labels: np.ndarray               # int64 in [0, C)
    class_names: list[str]
    split: np.ndarray                # str in SPLITS
    modalities: dict[str, Modality]
    label_source: Path
    files: list[Path] = field(default_factory=list)   # every file read: the data fingerprint
    notes: list[str] = field(default_factory=list)    # what the adapter did (dropped rows, ...)

    @property
    def n(self) -> int:
        return len(self.ids)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def counts(self, split: str = "train") -> np.ndarray:
        return np.bincount(self.labels[self.split == split], minlength=len(self.class_names))


def validate(ds: Dataset, impute: str | None = None) -> None:
    """Raise a DataError naming the file and the fix for anything a later stage would trip on."""
    _check_ids(ds)
    _check_labels(ds)
    for mod in ds.modalities.values():
        if len(mod) != ds.n:
            raise DataError(f"{mod.source}: modality {mod.name!r} has {len(mod)} samples but the labels "
                            f"({ds.label_source}) have {ds.n}",
                            fix="give every modality one row per labelled sample")
        if mod.kind == "tabular":
            _check_finite(mod, impute)
    _check_class_sizes(ds)


def _check_ids(ds: Dataset) -> None:
    uniq, counts = np.unique(ds.ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise DataError(f"{ds.label_source}: duplicate sample ids {dup}", fix="make sample ids unique")
    bad = sorted(set(np.unique(ds.split).tolist()) - set(SPLITS) - {UNUSED})
    if bad:
        raise DataError(f"unknown split names {bad} for {ds.name}",
                        fix=f"use only {', '.join(SPLITS)}")


def _check_labels(ds: Dataset) -> None:
    C = len(ds.class_names)
    if ds.labels.min(initial=0) < 0 or ds.labels.max(initial=0) >= C:
        raise DataError(f"{ds.label_source}: labels outside the {C} known classes")
    if (ds.split == "train").sum() == 0:
        raise DataError(f"{ds.name}: the training split is empty", fix="check the split file/options")


def _check_finite(mod: Modality, impute: str | None) -> None:
    bad = ~np.isfinite(mod.values)
    if not bad.any():
        return
    n_nan = int(np.isnan(mod.values).sum())
    n_inf = int(bad.sum()) - n_nan
    rows = np.flatnonzero(bad.any(axis=1))
    if n_inf or impute is None:
        what = f"{n_nan} NaN" + (f" and {n_inf} infinite" if n_inf else "")
        fix = ("replace the infinite values in the file" if n_inf else
               "fill the missing values, or pass --impute mean|median to fill them from the "
               "training split")
        raise DataError(f"{mod.source}: modality {mod.name!r} has {what} values "
                        f"(in {len(rows)} samples, first row {int(rows[0])})", fix=fix)


def _check_class_sizes(ds: Dataset) -> None:
    counts = ds.counts("train")
    for c, n in enumerate(counts):
        if n < 2:
            raise DataError(
                f"{ds.label_source}: class {ds.class_names[c]!r} has {n} training sample(s); "
                "at least 2 are needed", fix="merge or drop the class, or move samples into training")


def class_index(raw_labels, source: Path, known: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map raw label values to 0..C-1. Integer-valued labels keep numeric order."""
    values = [_label_str(v) for v in raw_labels]
    empty = [i for i, v in enumerate(values) if v == ""]
    if empty:
        raise DataError(f"{source}: {len(empty)} empty label(s), first at row {empty[0]}",
                        fix="give every sample a label, or drop the unlabelled rows")
    if known is None:
        uniq = sorted(set(values), key=lambda v: (0, int(v)) if _is_int(v) else (1, v))
        known = uniq
    lookup = {name: i for i, name in enumerate(known)}
    unknown = sorted(set(values) - set(lookup))
    if unknown:
        raise DataError(f"{source}: unknown label(s) {unknown[:5]}; known classes are {known}",
                        fix="correct the labels or add the class to the class list")
    return np.array([lookup[v] for v in values], dtype=np.int64), list(known)


def _label_str(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _is_int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False
