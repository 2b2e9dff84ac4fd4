"""The one in-memory form every data adapter produces, and the checks every data set must pass."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.errors import DataError

SPLITS = ("train", "valid", "test")
# Rows a data set keeps (so features cover the whole set) but that no stage trains or tests on.
UNUSED = "unused"
KINDS = ("tabular", "image", "text", "volume")


@dataclass
class Modality:
    """One modality. ``values``: float matrix (tabular), image paths (image), strings (text) or
    volume paths (volume: NIfTI files or DICOM series folders)."""

    name: str
    kind: str
    values: object
    source: Path                      # the file a user would open to fix a problem
    feature_names: list[str] | None = None
    # Rows stacked from several files (MOGONET's {k}_tr.csv then {k}_te.csv): [(file, n_rows), ...],
    # so a bad value is reported in the file (and line) it is in.
    row_files: list | None = None

    def __len__(self) -> int:
        return len(self.values)

    def where(self, row: int, col: int | None = None, ids=None) -> tuple[Path, str]:
        """(file, "line L" or "sample 'id'" [+ ", column 'c'"]) of a cell, for messages."""
        path, at = self.source, f"sample {str(ids[row])!r}" if ids is not None else f"row {row + 1}"
        if self.row_files:
            start = 0
            for file, n in self.row_files:
                if row < start + n:
                    path, at = file, f"line {row - start + 1}"
                    break
                start += n
        if col is not None:
            name = self.feature_names[col] if self.feature_names and col < len(self.feature_names) else col + 1
            at += f", column {str(name)[:40]!r}"
        return Path(path), at


@dataclass
class Dataset:
    name: str
    ids: np.ndarray                  # str, unique
    labels: np.ndarray               # int64 in [0, C)
    class_names: list[str]
    split: np.ndarray | None         # str in SPLITS; None until a pending split is drawn
    modalities: dict[str, Modality]
    label_source: Path
    files: list[Path] = field(default_factory=list)   # every file read: the data fingerprint
    notes: list[str] = field(default_factory=list)    # what the adapter did (dropped rows, ...)
    # (test_size, seed) of a stratified split not drawn yet: the data as read is all an encode key
    # needs, so a reused encode never draws it (:func:`stages.data.adapters.finish_dataset` does)
    pending_split: tuple[float, int] | None = None

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
            _check_finite(mod, impute, ds.ids)
    _check_class_sizes(ds)


def _check_ids(ds: Dataset) -> None:
    uniq, counts = np.unique(ds.ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise DataError(f"{ds.label_source}: duplicate sample ids {dup}", fix="make sample ids unique")
    odd = [i for i in ds.ids.tolist() if not str(i).isprintable() or str(i) != str(i).strip() or not str(i)]
    if odd:
        raise DataError(f"{ds.label_source}: sample id {str(odd[0])[:40]!r} is empty or contains a line break, "
                        "tab or other control character", fix="use printable sample ids (spaces inside are fine)")
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


def _check_finite(mod: Modality, impute: str | None, ids=None) -> None:
    bad = ~np.isfinite(mod.values)
    if not bad.any():
        return
    n_nan = int(np.isnan(mod.values).sum())
    n_inf = int(bad.sum()) - n_nan
    if n_inf or impute is None:
        cells = np.isinf(mod.values) if n_inf else bad
        row, col = (int(v) for v in np.argwhere(cells)[0])
        path, at = mod.where(row, col, None if mod.row_files else ids)
        what = f"{n_nan} NaN" + (f" and {n_inf} infinite" if n_inf else "")
        first = "first infinite value" if n_inf else "first"
        rows = int(cells.any(axis=1).sum())
        fix = ("replace the infinite values in the file" if n_inf else
               "fill the missing values, or pass --impute mean|median to fill them from the "
               "training split")
        raise DataError(f"{path}: modality {mod.name!r} has {what} values "
                        f"(in {rows} samples; {first} at {at})", fix=fix)


def _check_class_sizes(ds: Dataset) -> None:
    counts = ds.counts("train")
    for c, n in enumerate(counts):
        if n < 2:
            raise DataError(
                f"{ds.label_source}: class {ds.class_names[c]!r} has {n} training sample(s); "
                "at least 2 are needed", fix="merge or drop the class, or move samples into training")


def class_index(raw_labels, source: Path, known: list[str] | None = None, check: bool = True,
                lines: list[int] | None = None) -> tuple[np.ndarray, list[str]]:
    """Map raw label values to 0..C-1. Integer-valued labels keep numeric order. With ``check``, a
    class with a single sample is refused here, before any split, naming the class, its count, its
    file (and line, given ``lines``) and a near-identical class it may be a typo of."""
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
    labels = np.array([lookup[v] for v in values], dtype=np.int64)
    if check:
        check_class_counts(values, list(known), labels, source, lines)
    return labels, list(known)


def check_class_counts(values: list[str], known: list[str], labels: np.ndarray, source: Path,
                       lines: list[int] | None = None) -> None:
    import difflib

    counts = np.bincount(labels, minlength=len(known))
    rare = [c for c, n in enumerate(counts) if n == 1]
    if not rare:
        return
    name = known[rare[0]]
    common = [k for k, n in zip(known, counts) if n >= 2]
    close = [k for k in common if k.lower() == name.lower()] or difflib.get_close_matches(name, common, 1, 0.75)
    at = values.index(name)
    where = f"line {lines[at]}" if lines is not None else f"sample {at + 1} of the labels"
    others = f"; also {[known[c] for c in rare[1:4]]}" if len(rare) > 1 else ""
    raise DataError(f"{source}: class {name!r} has 1 sample ({where}){others}; every class needs at least 2 "
                    f"(one to train on, and a stratified split)" + (f"; did you mean {close[0]!r}?" if close else ""),
                    fix=(f"correct the label on {where} to {close[0]!r}" if close else
                         "add samples of that class, merge it into another, or drop its rows"))


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
