"""A user's own data described by a small YAML/JSON manifest::

    table: samples.csv            # one row per sample (paths are relative to the manifest)
    id_column: sample_id          # the table's sample-id column
    label_column: diagnosis
    split_column: split           # optional: train|valid|test per row
    classes: [benign, malignant]  # optional: fixes the class order; other labels are an error
    modalities:
      labs:   {type: tabular, file: labs.csv}           # CSV keyed by sample id (first column)
      omics:  {type: tabular, file: omics.csv, id_column: barcode}   # ... or by a named column
      vitals: {type: tabular, columns: [age, bmi]}      # numeric columns of the main table
      ct:     {type: image, column: ct_path, root: images}
      notes:  {type: text, column: report}
      scan:   {type: volume, column: ct_file, root: volumes}   # NIfTI files or DICOM series folders

Unknown keys and wrong types are refused by :mod:`.manifest_schema` before any file is read.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from stages.data.dataset import KINDS, Dataset, Modality, class_index
from stages.errors import DataError
from stages.data.adapters import manifest_schema
from stages.data.adapters.common import (align, check_unique, read_csv, read_keyed_table, require_file, to_float)
from stages.data.adapters.derm7pt import resolve_images

SUFFIXES = (".yaml", ".yml", ".json")


def looks_like(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES


def read_spec(path: Path, required: tuple = ("table", "id_column", "label_column", "modalities")) -> dict:
    """The parsed, schema-checked manifest; ``required`` keys must be present."""
    try:
        text = require_file(path, "manifest").read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: the manifest is not UTF-8 text", fix="save it as UTF-8 YAML or JSON") from None
    try:
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
        else:
            import yaml
            spec = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise different types; both mean "unreadable"
        detail = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: cannot parse the manifest ({detail})",
                        fix="check the YAML/JSON syntax near the place named") from None
    return manifest_schema.check(spec, path, required)


def load(path: Path, test_size: float = 0.3, seed: int = 0) -> Dataset:
    path = Path(path)
    spec = read_spec(path)
    base = path.parent
    table_path = require_file(base / spec["table"], "manifest table")
    table = read_csv(table_path, "manifest table", dtype={spec["id_column"]: str})
    for col in (spec["id_column"], spec["label_column"]):
        if col not in table.columns:
            raise DataError(f"{table_path}: no column {col!r} (named in {path.name}); columns: "
                            f"{list(map(str, table.columns))[:8]}", fix=f"correct the column name in {path.name}")
    ids = table_ids(table, spec["id_column"], table_path)
    labels, names = class_index(table[spec["label_column"]].tolist(), table_path, spec.get("classes"),
                                lines=[i + 2 for i in range(len(table))])
    files = [path, table_path]
    mods = {}
    for name, mspec in spec["modalities"].items():
        mods[name] = modality(name, mspec or {}, table, ids, base, table_path, path, files)
    if spec.get("split_column"):
        col = spec["split_column"]
        if col not in table.columns:
            raise DataError(f"{table_path}: no split column {col!r}")
        split = table[col].astype(str).str.strip().str.lower().to_numpy(dtype=object)
        check_split_values(split, table_path, col)
        notes = []
    else:                                  # drawn by finish_dataset, so a reused encode never draws it
        split, notes = None, []
    return Dataset(name=spec.get("name", path.stem), ids=np.array(ids, dtype=object), labels=labels,
                   class_names=names, split=split, modalities=mods, label_source=table_path,
                   files=files, notes=notes, pending_split=None if split is not None else (test_size, seed))


def modality(name, mspec, table, ids, base, table_path, manifest, files) -> Modality:
    kind = mspec.get("type")
    if kind not in KINDS:
        raise DataError(f"{manifest}: modality {name!r} has type {kind!r}", fix=f"use one of {KINDS}")
    if kind == "tabular" and "file" in mspec:
        mod_path = base / mspec["file"]
        frame = read_keyed_table(mod_path, f"modality {name!r}", mspec.get("id_column"))
        files.append(mod_path)
        return Modality(name, kind, align(frame, ids, mod_path, table_path), mod_path, list(map(str, frame.columns)))
    if kind == "tabular":
        cols = mspec.get("columns") or []
        missing = [c for c in cols if c not in table.columns]
        if not cols or missing:
            raise DataError(f"{manifest}: tabular modality {name!r} needs 'file' or existing 'columns'"
                            + (f" (missing {missing})" if missing else ""))
        return Modality(name, kind, to_float(table[cols], table_path), table_path, list(cols))
    col = mspec.get("column")
    if col not in table.columns:
        raise DataError(f"{table_path}: no column {col!r} for {kind} modality {name!r}")
    if kind == "image":
        root = base / mspec.get("root", ".")
        paths = resolve_images(root, table[col].astype(str).tolist(), table_path)
        files.extend(paths)
        return Modality(name, kind, paths, table_path)
    if kind == "volume":
        from stages.data.adapters.volumes import resolve

        paths, volume_files = resolve(base / mspec.get("root", "."), table[col].tolist(), table_path, col)
        files.extend(volume_files)
        return Modality(name, kind, paths, table_path)
    texts = table[col].fillna("").astype(str).tolist()
    return Modality(name, kind, texts, table_path)


def check_split_values(split: np.ndarray, path: Path, column: str) -> None:
    """Every value of a split column is train, valid or test: else the file, line and value named."""
    import difflib

    from stages.data.dataset import SPLITS, UNUSED

    bad = [i for i, v in enumerate(split) if v not in SPLITS and v != UNUSED]
    if bad:
        value = split[bad[0]]
        close = difflib.get_close_matches(value, SPLITS, 1, 0.5)
        raise DataError(f"{path}: split column {column!r} has {value!r} on line {bad[0] + 2}"
                        + (f" ({len(bad)} rows in all)" if len(bad) > 1 else "")
                        + (f"; did you mean {close[0]!r}?" if close else ""),
                        fix=f"use only {', '.join(SPLITS)} in column {column!r}")


def table_ids(table: pd.DataFrame, column: str, path: Path) -> list[str]:
    """The sample ids of a table: present, stripped, unique (the file and lines named otherwise)."""
    raw = table[column]
    empty = (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path}: {int(empty.sum())} row(s) without a sample id in column {column!r}, "
                        f"first on line {first + 2}", fix="give every row its sample id (or delete the row)")
    ids = raw.astype(str).str.strip()
    check_unique(ids, path, column)
    return ids.tolist()
