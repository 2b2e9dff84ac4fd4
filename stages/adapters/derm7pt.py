"""Derm7pt (Derm7pt_plus layout): dermoscopic image + tabular record, original train/valid/test split.

The ``management`` column is never an input: every melanoma has management = excision, so it
leaks the label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..dataset import UNUSED, Dataset, Modality
from ..errors import DataError, UsageError, check_choices
from .common import require_file

META = Path("meta_original_columns_f81b6f8/meta.csv")
SPLIT_DIR = Path("splits_original_reconstructed")

# The 5-class diagnosis grouping of Kawahara et al. (2018) for the 20 raw Derm7pt diagnoses.
DIAG5 = {
    "NEV": ["blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
            "recurrent nevus", "reed or spitz nevus"],
    "MEL": ["melanoma", "melanoma (in situ)", "melanoma (less than 0.76 mm)",
            "melanoma (0.76 to 1.5 mm)", "melanoma (more than 1.5 mm)", "melanoma metastasis"],
    "MISC": ["dermatofibroma", "lentigo", "melanosis", "miscellaneous", "vascular lesion"],
    "SK": ["seborrheic keratosis"],
    "BCC": ["basal cell carcinoma"],
}
CLASSES = ["NEV", "MEL", "MISC", "SK", "BCC"]
METADATA = ["level_of_diagnostic_difficulty", "elevation", "location", "sex"]
CHECKLIST = ["pigment_network", "streaks", "pigmentation", "regression_structures",
             "dots_and_globules", "blue_whitish_veil", "vascular_structures"]
LEAKS = ("management", "diagnosis")
TASKS = ("diag5", "nev-vs-mel")
TABULAR = ("meta", "meta+7pt")


def looks_like(path: Path) -> bool:
    return (path / META).is_file() and (path / "images").is_dir()


def load(path: Path, task: str = "diag5", tabular: str = "meta") -> Dataset:
    path = Path(path)
    check_choices((task, TASKS, "--task"), (tabular, TABULAR, "--derm-tabular"))
    meta_path = require_file(path / META, "Derm7pt metadata table")
    meta = pd.read_csv(meta_path)
    labels = _diag5_labels(meta, meta_path)
    rows, split, files, class_names, labels = _split(path, task, labels)
    images = resolve_images(path / "images", meta["derm"].iloc[rows].tolist(), meta_path)
    columns = METADATA + (CHECKLIST if tabular == "meta+7pt" else [])
    table, feature_names = one_hot(meta.iloc[rows], columns, meta_path)
    unused = int((split == UNUSED).sum())
    notes = [f"{len(meta) - len(rows)} row(s) outside the task were left out"] if len(rows) < len(meta) else []
    notes += [f"{unused} row(s) are in no split file: kept as '{UNUSED}'"] if unused else []
    return Dataset(
        name=f"derm7pt-{task}", ids=np.array([f"{r:04d}" for r in rows], dtype=object),
        labels=labels, class_names=class_names, split=split,
        modalities={"derm": Modality("derm", "image", images, path / "images"),
                    "tabular": Modality("tabular", "tabular", table, meta_path, feature_names)},
        label_source=meta_path, files=[meta_path, *files, *images], notes=notes)


def _diag5_labels(meta: pd.DataFrame, meta_path: Path) -> np.ndarray:
    lookup = {raw: CLASSES.index(group) for group, raws in DIAG5.items() for raw in raws}
    unknown = sorted(set(meta["diagnosis"]) - set(lookup))
    if unknown:
        raise DataError(f"{meta_path}: unknown diagnosis {unknown[:3]}",
                        fix="add it to stages/adapters/derm7pt.py DIAG5")
    return meta["diagnosis"].map(lookup).to_numpy(dtype=np.int64)


def _split(path: Path, task: str, labels: np.ndarray):
    """Rows in the task, their split, the split files read, class names and labels of those rows."""
    suffix = "reconstructed" if task == "diag5" else "NEVvsMEL_cfcml"
    rows, split, files = [], [], []
    for name in ("train", "valid", "test"):
        f = require_file(path / SPLIT_DIR / f"{name}_indexes_{suffix}.csv", f"{name} split file")
        idx = pd.read_csv(f)["indexes"].astype(int).tolist()
        rows += idx
        split += [name] * len(idx)
        files.append(f)
    if len(set(rows)) != len(rows):
        raise DataError(f"{path / SPLIT_DIR}: a row is listed in more than one split")
    if task == "diag5":
        # Keep rows no split file places (2 in Derm7pt) as "unused": encoded, never trained on.
        placed = dict(zip(rows, split))
        rows = np.arange(len(labels))
        split = np.array([placed.get(r, UNUSED) for r in rows], dtype=object)
        return rows, split, files, list(CLASSES), labels
    rows = np.array(rows)
    order = np.argsort(rows, kind="stable")
    rows, split = rows[order], np.array(split, dtype=object)[order]
    y = labels[rows]
    keep = np.isin(y, [CLASSES.index("NEV"), CLASSES.index("MEL")])
    if not keep.all():
        raise DataError(f"{path / SPLIT_DIR}: the NEVvsMEL split lists rows that are neither NEV nor MEL")
    return rows, split, files, ["NEV", "MEL"], (y == CLASSES.index("MEL")).astype(np.int64)


def resolve_images(root: Path, rel_paths: list[str], meta_path: Path) -> list[Path]:
    """Image paths, matched case-insensitively (one Derm7pt file differs from the table in case)."""
    by_lower = {p.relative_to(root).as_posix().lower(): p for p in root.rglob("*") if p.is_file()}
    out = []
    for rel in rel_paths:
        hit = by_lower.get(str(rel).lower())
        if hit is None:
            raise DataError(f"{meta_path}: image {rel!r} not found under {root}",
                            fix="check the images folder or the path column")
        out.append(hit)
    return out


def one_hot(frame: pd.DataFrame, columns: list[str], source: Path) -> tuple[np.ndarray, list[str]]:
    """One-hot encode categorical columns (categories sorted, so the layout is stable)."""
    leaked = [c for c in columns if c in LEAKS]
    if leaked:
        raise UsageError(f"{leaked} may not be model inputs: they determine the label")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}")
    blocks, names = [], []
    for col in columns:
        values = frame[col].astype(str)
        for cat in sorted(values.unique()):
            blocks.append((values == cat).to_numpy(dtype=np.float64))
            names.append(f"{col}={cat}")
    return np.stack(blocks, axis=1), names
