"""New samples for ``climd predict``: every supported layout, labels optional (and never used).

Each reader returns :class:`NewSamples` (ids and raw modalities, as the labelled adapters build them)
without a split or labels. Where a layout names samples by position (MOGONET) the ids are the ones
the labelled adapter gives (``tr0000``..., ``te0000``...), so predictions line up with ``evaluate``'s.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stages.data.dataset import Modality
from stages.errors import DataError, UsageError
from stages.data.adapters import DataOptions, detect_format
from stages.data.adapters import derm7pt
from stages.data.adapters import manifest
from stages.data.adapters import mogonet
from stages.data.adapters import tcga
from stages.data.adapters.common import align, read_keyed_table, read_numeric_matrix, require_file


@dataclass
class NewSamples:
    name: str
    ids: np.ndarray                                   # str, unique
    modalities: dict[str, Modality]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ids)


def load(path: Path, fmt: str | None, opts: DataOptions, run_modalities: list[str] | None = None) -> NewSamples:
    """The samples at ``path`` (``fmt`` detected when None); ``opts``: the run's recorded data options
    (modality selection, Derm7pt task and table); ``run_modalities``: the run's modality names (a
    folder of tables: only those are read, the other CSVs are named in a note)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist", fix="check --data")
    fmt = fmt or _detect(path)
    if fmt == "mogonet":
        new = _mogonet(path)
    elif fmt == "manifest":
        new = _manifest(path)
    elif fmt == "tcga":
        new = _tcga(path, opts.modalities or run_modalities)
    elif fmt == "derm7pt":
        ds = derm7pt.load(path, opts.task, opts.derm_tabular)
        new = NewSamples(ds.name, ds.ids, ds.modalities, ds.files,
                         ds.notes + ["derm7pt: every case of the folder is predicted (its labels are not used)"])
    else:
        raise UsageError(f"unknown --format {fmt!r}", fix="choose from mogonet, tcga, derm7pt, manifest")
    if opts.modalities and fmt != "tcga":
        have = [m for m in opts.modalities if m in new.modalities]
        if len(have) == len(opts.modalities):      # the run's --modalities selection; a gap is named later
            new.notes.append(f"modalities {opts.modalities} selected, as when the run was encoded")
            new.modalities = {m: new.modalities[m] for m in opts.modalities}
    _check_ids(new, path)
    return new


def _detect(path: Path) -> str:
    if manifest.looks_like(path) or (path.is_dir() and derm7pt.looks_like(path)):
        return detect_format(path)
    if path.is_dir() and _view_files(path):
        return "mogonet"                           # a MOGONET folder, with or without its label files
    if path.is_dir() and not (path / tcga.TARGET).is_file() and list(path.glob("*.csv")):
        return "tcga"                              # TCGA modality tables without target.csv
    return detect_format(path)


def _view_files(path: Path) -> dict[int, dict[str, Path]]:
    views: dict[int, dict[str, Path]] = {}
    for f in path.iterdir():
        m = re.fullmatch(r"(\d+)_(tr|te)\.csv", f.name)
        if m:
            views.setdefault(int(m.group(1)), {})[m.group(2)] = f
    return dict(sorted(views.items()))


def _mogonet(path: Path) -> NewSamples:
    """Every ``{k}_tr.csv`` then ``{k}_te.csv`` present (either may be absent); label files ignored."""
    views = _view_files(path)
    if not views:
        raise DataError(f"{path}: no view files (1_te.csv, 2_te.csv, ...) found",
                        fix="a MOGONET folder has {k}_tr.csv and/or {k}_te.csv for each view k")
    parts = sorted({p for v in views.values() for p in v})
    mods, files, rows = {}, [], {}
    for k, by_part in views.items():
        blocks = []
        for part in parts:
            f = by_part.get(part)
            if f is None:
                other = next(iter(by_part.values()))
                raise DataError(f"{path}: view {k} has no {k}_{part}.csv but {other.name} exists",
                                fix=f"give every view the same files ({', '.join(f'{{k}}_{p}.csv' for p in parts)})")
            x = read_numeric_matrix(f, f"view {k} features")
            first = rows.setdefault(part, (len(x), f))
            if len(x) != first[0]:
                raise DataError(f"{f}: {len(x)} rows but {first[1].name} has {first[0]}",
                                fix="MOGONET files are matched by row: every view needs one row per sample")
            if blocks and x.shape[1] != blocks[0].shape[1]:
                raise DataError(f"{f}: {x.shape[1]} columns but {by_part[parts[0]].name} has {blocks[0].shape[1]}")
            blocks.append(x)
            files.append(f)
        names = mogonet.read_featnames(path / f"{k}_featname.csv", blocks[0].shape[1])
        mods[f"view{k}"] = Modality(f"view{k}", "tabular", np.vstack(blocks), by_part[parts[0]], names)
    ids = [f"{part}{i:04d}" for part in parts for i in range(rows[part][0])]
    return NewSamples(path.name, np.array(ids, dtype=object), mods, files)


def _manifest(path: Path) -> NewSamples:
    """A manifest whose ``label_column`` may be absent (from the manifest or from the table)."""
    spec = manifest.read_spec(path, required=("table", "id_column", "modalities"))
    base = path.parent
    table_path = require_file(base / spec["table"], "manifest table")
    table = pd.read_csv(table_path, dtype={spec["id_column"]: str})
    if spec["id_column"] not in table.columns:
        raise DataError(f"{table_path}: no column {spec['id_column']!r} (named in {path.name})")
    ids = table[spec["id_column"]].astype(str).str.strip().tolist()
    files = [path, table_path]
    mods = {name: manifest.modality(name, mspec or {}, table, ids, base, table_path, path, files)
            for name, mspec in spec["modalities"].items()}
    return NewSamples(spec.get("name", path.stem), np.array(ids, dtype=object), mods, files)


def _tcga(path: Path, modalities: list[str] | None) -> NewSamples:
    """Modality tables keyed by sample id; ``target.csv`` optional (when present: its ids, all of them,
    labelled or not); without it, the ids of the first modality table."""
    available = tcga.available(path)
    chosen = modalities or [m for m in available if m not in tcga.OPT_IN]
    if not chosen:
        raise DataError(f"{path}: no modality CSVs found")
    target_path = path / tcga.TARGET
    frames = {}
    for name in chosen:
        mod_path = path / f"{name}.csv"
        if mod_path.is_file():
            frames[name] = (read_keyed_table(mod_path, f"modality {name!r}"), mod_path)
    if not frames:
        raise DataError(f"{path}: none of the run's modalities {chosen} is there", fix=f"found {available}")
    if target_path.is_file():
        ids = pd.read_csv(target_path, index_col=0, dtype={0: str}).index.astype(str).str.strip().tolist()
        id_source = target_path
    else:
        first, id_source = next(iter(frames.values()))
        ids = first.index.tolist()
    mods = {name: Modality(name, "tabular", align(frame, ids, mod_path, id_source, labelled=False), mod_path,
                           [str(c) for c in frame.columns]) for name, (frame, mod_path) in frames.items()}
    ignored = sorted(set(available) - set(frames) - {tcga.TARGET.removesuffix(".csv")})
    notes = [f"ignored {', '.join(f'{n}.csv' for n in ignored)}: not a modality of the run"] if ignored else []
    return NewSamples(path.name, np.array(ids, dtype=object), mods, [p for _, p in frames.values()], notes)


def _check_ids(new: NewSamples, path: Path) -> None:
    if new.n == 0:
        raise DataError(f"{path}: no samples to predict", fix="give at least one sample")
    uniq, counts = np.unique(new.ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: duplicate sample ids {uniq[counts > 1][:5].tolist()}", fix="make sample ids unique")
    for mod in new.modalities.values():
        if len(mod) != new.n:
            raise DataError(f"{mod.source}: modality {mod.name!r} has {len(mod)} samples, not {new.n}",
                            fix="give every modality one row per sample")
