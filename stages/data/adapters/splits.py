"""Train/valid/test assignment: given files, stratified splits made with a seed, validation carve-outs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.data.dataset import SPLITS
from stages.errors import DataError, UsageError
from stages.data.adapters.common import few, read_csv


def read_split_file(path: Path, ids: np.ndarray, allow_extra: set[str] = frozenset()) -> np.ndarray:
    """A CSV ``sample_id,split`` giving every sample its split."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file {path} does not exist", fix="check the --split-file path")
    table = read_csv(path, "split file", dtype=str)
    if not {"sample_id", "split"} <= set(table.columns):
        raise DataError(f"{path}: needs columns sample_id,split (has {few(table.columns, 5)})",
                        fix="write one row per sample: sample_id,split with split train|valid|test")
    table["split"] = table["split"].fillna("").str.strip().str.lower()
    bad = sorted(set(table["split"]) - set(SPLITS))
    if bad:
        line = int((~table["split"].isin(SPLITS)).to_numpy().argmax()) + 2
        raise DataError(f"{path}: unknown split value(s) {few(bad)} (first on line {line})",
                        fix=f"use {'|'.join(SPLITS)}")
    table["sample_id"] = table["sample_id"].fillna("").str.strip()
    dup = table["sample_id"][table["sample_id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: sample id {dup.iloc[0]!r} is listed more than once",
                        fix="give every sample one row")
    mapping = dict(zip(table["sample_id"], table["split"]))
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise DataError(f"{path}: {len(missing)} sample(s) have no split, e.g. {few(missing)}",
                        fix="list every sample of the data set in the split file")
    extra = set(mapping) - set(ids) - set(allow_extra)
    if extra:
        raise DataError(f"{path}: {len(extra)} id(s) are not in the data, e.g. {few(sorted(extra))}",
                        fix="use the split file made for this data set")
    return np.array([mapping[i] for i in ids], dtype=object)


def stratified_split(labels: np.ndarray, test_size: float, seed: int) -> np.ndarray:
    """The split ``train_test_split(arange(n), test_size, stratify=y, random_state=seed)`` gives."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise UsageError(f"--test-size must be in (0, 1), got {test_size}")
    idx = np.arange(len(labels))
    try:
        _, test_idx = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot make a stratified split: {exc}",
                        fix="every class needs at least 2 samples, or give a --split-file")
    split = np.full(len(labels), "train", dtype=object)
    split[test_idx] = "test"
    return split


def carve_validation(split: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Move a stratified ``fraction`` of the training samples to a 'valid' split."""
    if fraction <= 0:
        return split
    if (split == "valid").any():
        raise UsageError("the data set already has a validation split; drop --val-fraction")
    train = np.flatnonzero(split == "train")
    sub = stratified_split(labels[train], fraction, seed)
    out = split.copy()
    out[train[sub == "test"]] = "valid"
    return out
