"""Replicates of a data set that comes with one fixed split (MOGONET ROSMAP, Derm7pt): replicate 0 is
the original split; replicate k >= 1 pools the labelled samples of every split and draws a new
stratified split with the original's sizes (train / valid / test), seeded by k. Rows outside every
split (Derm7pt's 'unused') stay outside."""
from __future__ import annotations

import numpy as np

from stages.data.dataset import Dataset
from stages.errors import DataError, UsageError

POOLED = ("train", "valid", "test")


def resplit(ds: Dataset, replicate: int) -> Dataset:
    if replicate < 0:
        raise UsageError(f"--resplit {replicate} is negative", fix="use 0 (the original split) or k >= 1")
    if replicate == 0:
        return ds
    from sklearn.model_selection import train_test_split  # here: not imported for the original split

    rows = np.flatnonzero(np.isin(ds.split, POOLED))
    sizes = {name: int((ds.split == name).sum()) for name in POOLED}
    labels = ds.labels[rows]
    new = ds.split.copy()
    try:
        rest, test = train_test_split(rows, test_size=sizes["test"], stratify=labels, random_state=replicate)
        valid = np.array([], dtype=np.int64)
        if sizes["valid"]:
            rest, valid = train_test_split(rest, test_size=sizes["valid"], stratify=ds.labels[rest],
                                           random_state=replicate)
    except ValueError as exc:
        raise DataError(f"{ds.label_source}: cannot draw a stratified resplit ({exc})",
                        fix="every class needs a few samples in every split; use --resplit 0") from None
    new[rest], new[valid], new[test] = "train", "valid", "test"
    ds.split = new
    ds.notes.append(f"replicate {replicate}: stratified resplit of the {len(rows)} labelled samples with the "
                    f"original sizes {sizes}")
    return ds
