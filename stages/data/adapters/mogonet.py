"""MOGONET format: ``{k}_tr.csv``/``{k}_te.csv`` per view, ``labels_tr.csv``/``labels_te.csv``,
optional ``{k}_featname.csv``. Files have no header and no ids; row i of every file is sample i."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from stages.data.dataset import Dataset, Modality, class_index
from stages.errors import DataError
from stages.data.adapters.common import read_numeric_matrix, require_file


def looks_like(path: Path) -> bool:
    return (path / "labels_tr.csv").is_file()


def view_numbers(path: Path) -> list[int]:
    nums = sorted(int(m.group(1)) for f in path.iterdir() if (m := re.fullmatch(r"(\d+)_tr\.csv", f.name)))
    if not nums:
        raise DataError(f"{path}: no view files (1_tr.csv, 2_tr.csv, ...) found",
                        fix="a MOGONET folder has {k}_tr.csv and {k}_te.csv for each view k")
    return nums


def load(path: Path, class_names: list[str] | None = None) -> Dataset:
    path = Path(path)
    labels_tr = _read_labels(path / "labels_tr.csv")
    labels_te = _read_labels(path / "labels_te.csv")
    n_tr, n_te = len(labels_tr), len(labels_te)
    files = [path / "labels_tr.csv", path / "labels_te.csv"]
    train_y, names = class_index(labels_tr, path / "labels_tr.csv")
    test_y, _ = class_index(labels_te, path / "labels_te.csv", known=names, check=False)
    modalities = {}
    for k in view_numbers(path):
        tr_path, te_path = path / f"{k}_tr.csv", path / f"{k}_te.csv"
        tr = read_numeric_matrix(tr_path, f"view {k} training features")
        te = read_numeric_matrix(te_path, f"view {k} test features")
        _check_rows(tr, n_tr, tr_path, "labels_tr.csv")
        _check_rows(te, n_te, te_path, "labels_te.csv")
        if tr.shape[1] != te.shape[1]:
            raise DataError(f"{te_path}: {te.shape[1]} columns but {tr_path.name} has {tr.shape[1]}",
                            fix="train and test files of a view need the same features")
        featnames = read_featnames(path / f"{k}_featname.csv", tr.shape[1])
        files += [tr_path, te_path] + ([path / f"{k}_featname.csv"] if featnames else [])
        modalities[f"view{k}"] = Modality(f"view{k}", "tabular", np.vstack([tr, te]), tr_path, featnames,
                                          row_files=[(tr_path, len(tr)), (te_path, len(te))])
    ids = np.array([f"tr{i:04d}" for i in range(n_tr)] + [f"te{i:04d}" for i in range(n_te)], dtype=object)
    split = np.array(["train"] * n_tr + ["test"] * n_te, dtype=object)
    names = class_names or names
    return Dataset(name=path.name, ids=ids, labels=np.concatenate([train_y, test_y]),
                   class_names=list(names), split=split, modalities=modalities,
                   label_source=path / "labels_tr.csv", files=files)


def _read_labels(path: Path) -> list:
    require_file(path, "label file")
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: the label file is empty", fix="write one label per line, one line per sample "
                        "(in the row order of the view files)")
    out = []
    for line in lines:
        value = line.strip()
        try:
            out.append(float(value) if value else None)
        except ValueError:
            out.append(value)
    return out


def _check_rows(x: np.ndarray, n: int, path: Path, label_file: str) -> None:
    if x.shape[0] != n:
        raise DataError(f"{path}: {x.shape[0]} rows but {label_file} has {n} labels",
                        fix="MOGONET files are matched by row: every view needs one row per label")


def read_featnames(path: Path, n_cols: int) -> list[str] | None:
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != n_cols:
        raise DataError(f"{path}: {len(names)} feature names for {n_cols} columns",
                        fix="one feature name per line, one line per column")
    return names
