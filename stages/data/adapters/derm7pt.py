"""Derm7pt: dermoscopic image + tabular record (+ optionally the metadata as a sentence of text).

Three folder layouts are accepted (``layout``):

* ``curated``  - our Derm7pt_plus folder: ``meta_original_columns_f81b6f8/meta.csv`` and the original
  split rebuilt in ``splits_original_reconstructed/``;
* ``official`` - the Derm7pt release (``release_v0``): ``meta/meta.csv`` with its original columns,
  ``meta/{train,valid,test}_indexes.csv`` (header ``indexes``, zero-based rows of meta.csv), ``images/``;
* ``minimal``  - ``meta/meta.csv`` with at least ``diagnosis`` and ``derm`` (and whichever 7-point or
  metadata columns exist), ``images/``; no index files: a stratified split (--test-size, --seed).

The ``management`` column is never an input: every melanoma has management = excision, so it
leaks the label; ``diagnosis`` is the label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.data.dataset import UNUSED, Dataset
from stages.errors import DataError, check_choices
from stages.data.adapters.common import require_file
from stages.data.adapters.derm7pt_inputs import (CHECKLIST, LEAKS, METADATA, MODALITY_CHOICES, TABULAR, build_modalities, one_hot, parse_modalities)
from stages.data.adapters.splits import stratified_split

__all__ = ["CHECKLIST", "LEAKS", "METADATA", "MODALITY_CHOICES", "TABULAR", "one_hot", "load", "layout"]

META = Path("meta_original_columns_f81b6f8/meta.csv")
SPLIT_DIR = Path("splits_original_reconstructed")
RELEASE_META = Path("meta/meta.csv")
SPLIT_NAMES = ("train", "valid", "test")

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
TASKS = ("diag5", "nev-vs-mel")
EXPECTED = ("expected meta_original_columns_f81b6f8/meta.csv (our curated Derm7pt_plus), or meta/meta.csv "
            "with meta/{train,valid,test}_indexes.csv (the official release), or meta/meta.csv with "
            "diagnosis and derm columns (minimal), each beside an images/ folder")


def layout(path: Path) -> str | None:
    path = Path(path)
    if (path / META).is_file():
        return "curated"
    if (path / RELEASE_META).is_file():
        return "official" if any(_index_file(path, s).exists() for s in SPLIT_NAMES) else "minimal"
    return None


def looks_like(path: Path) -> bool:
    return layout(path) is not None and (Path(path) / "images").is_dir()


def load(path: Path, task: str = "diag5", tabular: str = "meta", modalities: str | None = None,
         test_size: float = 0.3, seed: int = 0) -> Dataset:
    path = Path(path)
    check_choices((task, TASKS, "--task"), (tabular, TABULAR, "--derm-tabular"))
    wanted = parse_modalities(modalities, tabular)
    kind = layout(path)
    if kind is None:
        raise DataError(f"{path} is not a Derm7pt folder: {EXPECTED}", fix="check --data")
    if not (path / "images").is_dir():
        raise DataError(f"missing Derm7pt images folder: {path / 'images'}", fix="check the --data path")
    meta_path = path / (META if kind == "curated" else RELEASE_META)
    meta = _read_meta(meta_path)
    labels = _diag5_labels(meta, meta_path)
    if kind == "curated":
        rows, split, files, class_names, labels = _curated_split(path, task, labels)
        notes = []
    elif kind == "official":
        rows, split, files, class_names, labels = _index_split(path, task, labels, len(meta))
        notes = []
    else:
        rows, split, class_names, labels = _stratified(task, labels, test_size, seed)
        files, notes = [], [f"minimal layout: stratified split test_size={test_size}, seed={seed}"]
    class_names, labels, absent = drop_absent(class_names, labels)
    notes += [f"class(es) {absent} have no case in {meta_path.name}: absent, trained on the "
              f"{len(class_names)} present {class_names}"] if absent else []
    images = resolve_images(path / "images", meta["derm"].iloc[rows].tolist(), meta_path, rows, "derm")
    mods, more_notes = build_modalities(meta.iloc[rows], wanted, tabular, images, path / "images", meta_path)
    unused = int((split == UNUSED).sum())
    notes += [f"{kind} layout"] + more_notes
    notes += [f"{len(meta) - len(rows)} row(s) outside the task were left out"] if len(rows) < len(meta) else []
    notes += [f"{unused} row(s) are in no split file: kept as '{UNUSED}'"] if unused else []
    return Dataset(
        name=f"derm7pt-{task}", ids=np.array([f"{r:04d}" for r in rows], dtype=object),
        labels=labels, class_names=class_names, split=split, modalities=mods,
        label_source=meta_path, files=[meta_path, *files, *images], notes=notes)


def drop_absent(class_names: list[str], labels: np.ndarray) -> tuple[list[str], np.ndarray, list[str]]:
    """A subset of Derm7pt may lack some diagnosis groups: those classes are left out (labels
    renumbered over the classes present, in the same order) rather than refused."""
    present = [c for c in range(len(class_names)) if (labels == c).any()]
    if len(present) == len(class_names):
        return class_names, labels, []
    remap = np.full(len(class_names), -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return ([class_names[c] for c in present], remap[labels],
            [class_names[c] for c in range(len(class_names)) if c not in present])


def _read_meta(meta_path: Path) -> pd.DataFrame:
    require_file(meta_path, "Derm7pt metadata table")
    try:
        meta = pd.read_csv(meta_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: cannot read the Derm7pt metadata table ({exc})",
                        fix="give a comma-separated CSV with a header row")
    missing = [c for c in ("diagnosis", "derm") if c not in meta.columns]
    if missing:
        raise DataError(f"{meta_path}: missing column(s) {missing} (has {list(meta.columns)[:12]})",
                        fix="Derm7pt's meta.csv needs 'diagnosis' (raw diagnosis) and 'derm' (image path "
                            "under images/)")
    if meta.empty:
        raise DataError(f"{meta_path}: no rows", fix="give one row per case")
    return meta


def _diag5_labels(meta: pd.DataFrame, meta_path: Path) -> np.ndarray:
    lookup = {raw: CLASSES.index(group) for group, raws in DIAG5.items() for raw in raws}
    raw = meta["diagnosis"].astype(str).str.strip()
    bad = ~raw.isin(list(lookup))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        unknown = sorted(set(raw[bad]))
        raise DataError(f"{meta_path}: unknown diagnosis {unknown[:3]} (first at row {first})",
                        fix="use Derm7pt's raw diagnosis names, or add it to stages/adapters/derm7pt.py DIAG5")
    return raw.map(lookup).to_numpy(dtype=np.int64)


def _index_file(path: Path, name: str) -> Path:
    return path / "meta" / f"{name}_indexes.csv"


def _read_indexes(f: Path, n_rows: int) -> list[int]:
    try:
        table = pd.read_csv(f)
        values = pd.to_numeric(table["indexes"], errors="raise")
    except KeyError:
        raise DataError(f"{f}: needs a column named 'indexes'", fix="one zero-based row of meta.csv per line")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, TypeError) as exc:
        raise DataError(f"{f}: cannot read the row indexes ({exc.__class__.__name__}: {exc})",
                        fix="a column 'indexes' of whole numbers (zero-based rows of meta.csv)")
    if values.isna().any() or (values % 1 != 0).any():
        raise DataError(f"{f}: 'indexes' must be whole numbers", fix="zero-based rows of meta.csv")
    idx = values.astype(int).tolist()
    out = [i for i in idx if not 0 <= i < n_rows]
    if out:
        raise DataError(f"{f}: row index {out[0]} is outside meta.csv (rows 0..{n_rows - 1})",
                        fix="use the index files of the same release as meta.csv")
    return idx


def _place(named: dict[str, list[int]], where: Path, n_rows: int):
    rows = [r for idx in named.values() for r in idx]
    if len(set(rows)) != len(rows):
        raise DataError(f"{where}: a row is listed in more than one split")
    placed = {r: s for s, idx in named.items() for r in idx}
    return np.array([placed.get(r, UNUSED) for r in range(n_rows)], dtype=object)


def _curated_split(path: Path, task: str, labels: np.ndarray):
    """Rows in the task, their split, the split files read, class names and labels of those rows."""
    suffix = "reconstructed" if task == "diag5" else "NEVvsMEL_cfcml"
    files = [require_file(path / SPLIT_DIR / f"{s}_indexes_{suffix}.csv", f"{s} split file") for s in SPLIT_NAMES]
    named = {s: _read_indexes(f, len(labels)) for s, f in zip(SPLIT_NAMES, files)}
    split = _place(named, path / SPLIT_DIR, len(labels))
    if task == "diag5":
        # Keep rows no split file places (2 in Derm7pt) as "unused": encoded, never trained on.
        return np.arange(len(labels)), split, files, list(CLASSES), labels
    rows = np.flatnonzero(split != UNUSED)
    if not np.isin(labels[rows], [CLASSES.index("NEV"), CLASSES.index("MEL")]).all():
        raise DataError(f"{path / SPLIT_DIR}: the NEVvsMEL split lists rows that are neither NEV nor MEL")
    return rows, split[rows], files, ["NEV", "MEL"], (labels[rows] == CLASSES.index("MEL")).astype(np.int64)


def _index_split(path: Path, task: str, labels: np.ndarray, n_rows: int):
    """The official release: meta/{train,valid,test}_indexes.csv (all three must exist)."""
    files = [require_file(_index_file(path, s), f"Derm7pt {s} index file") for s in SPLIT_NAMES]
    named = {s: _read_indexes(f, n_rows) for s, f in zip(SPLIT_NAMES, files)}
    split = _place(named, path / "meta", n_rows)
    rows, class_names, y = _task_rows(task, labels)
    return rows, split[rows], files, class_names, y


def _stratified(task: str, labels: np.ndarray, test_size: float, seed: int):
    rows, class_names, y = _task_rows(task, labels)
    return rows, stratified_split(y, test_size, seed), class_names, y


def _task_rows(task: str, labels: np.ndarray):
    if task == "diag5":
        return np.arange(len(labels)), list(CLASSES), labels
    nev, mel = CLASSES.index("NEV"), CLASSES.index("MEL")
    rows = np.flatnonzero(np.isin(labels, [nev, mel]))
    return rows, ["NEV", "MEL"], (labels[rows] == mel).astype(np.int64)


def resolve_images(root: Path, rel_paths: list, meta_path: Path, rows=None, column: str | None = None) -> list[Path]:
    """Image paths, matched case-insensitively (one Derm7pt file differs from the table in case).
    Every missing image is counted and the first few named (with their row of the table when given)."""
    by_lower = {p.relative_to(root).as_posix().lower(): p for p in root.rglob("*") if p.is_file()}
    out, missing = [], []
    for k, rel in enumerate(rel_paths):
        hit = None if pd.isna(rel) else by_lower.get(str(rel).strip().replace("\\", "/").lower())
        if hit is None:
            missing.append(f"{rel!r} (row {rows[k]})" if rows is not None else repr(rel))
        out.append(hit)
    if missing:
        where = f" of the {column!r} column" if column else ""
        what = (f"image {missing[0]}{where} not found under {root}" if len(missing) == 1 else
                f"{len(missing)} images{where} not found under {root}: " + ", ".join(missing[:5])
                + (", ..." if len(missing) > 5 else ""))
        raise DataError(f"{meta_path}: {what}",
                        fix="add the missing image files, or correct the image paths (relative to "
                            f"{root.name}/)")
    return out
