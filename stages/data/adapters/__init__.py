"""Data adapters: every supported layout becomes one :class:`stages.data.dataset.Dataset`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.data.dataset import Dataset, validate
from stages.errors import DataError, UsageError, check_choices
from stages.core.names import check_name
from stages.data.adapters import derm7pt
from stages.data.adapters import folder
from stages.data.adapters import manifest
from stages.data.adapters import mogonet
from stages.data.adapters.splits import stratified_split
from stages.data.adapters import tcga
from stages.data.adapters.resplit import resplit
from stages.data.adapters.splits import carve_validation

FORMATS = ("mogonet", "tcga", "derm7pt", "manifest")
EMBEDDED_ROSMAP = Path(__file__).resolve().parent.parent / "embedded" / "rosmap"


@dataclass
class DataOptions:
    """Everything that decides which samples, labels, modalities and split a data set yields."""

    format: str | None = None
    modalities: list[str] | None = None
    split_file: Path | None = None
    test_size: float = 0.3
    split_seed: int = 0
    val_fraction: float = 0.0
    task: str = "diag5"
    derm_tabular: str = "meta"
    derm_modalities: str | None = None
    impute: str | None = None
    resplit: int = 0

    def as_params(self) -> dict:
        """The key's view: a split file counts by its content (an input of encode), not its path,
        so moving the data or running from another directory reuses the artifacts."""
        d = dict(self.__dict__)
        d["split_file"] = "given" if self.split_file else None
        return d


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist", fix="check --data")
    if manifest.looks_like(path):
        return "manifest"
    if path.is_dir():
        for name, module in (("mogonet", mogonet), ("derm7pt", derm7pt), ("tcga", tcga)):
            if module.looks_like(path):
                return name
    if folder.looks_like(path):
        tables = sorted(p.name for p in path.glob("*.csv") if p != folder.label_file(path))
        raise DataError(f"{path} holds {folder.label_file(path).name} and {len(tables)} other table(s) "
                        f"({', '.join(tables[:5])}{', ...' if len(tables) > 5 else ''}): climd reads your own "
                        "data through a manifest that says which column is the sample id, which the label, "
                        "and which files are model inputs",
                        fix=f"`climd manifest {path} > {path / 'manifest.yaml'}` writes one from what the "
                            f"folder holds; check it, then `climd encode --data {path / 'manifest.yaml'}` "
                            "(docs/data.md)")
    raise DataError(f"cannot tell the format of {path}",
                    fix=f"pass --format {'|'.join(FORMATS)} (see `climd encode --help`); for your own data, "
                        "a manifest (docs/data.md; `climd manifest DIR` writes one for a folder with labels.csv)")


def load_dataset(path: Path | None, opts: DataOptions) -> Dataset:
    """Read, split and validate a data set. ``path=None`` is the embedded ROSMAP."""
    return finish_dataset(read_dataset(path, opts), opts)


def read_dataset(path: Path | None, opts: DataOptions) -> Dataset:
    """Read a data set as stored: its files, modalities and given split, before any resplit or
    validation carve-out (enough for the encode key: a reused encode never needs more)."""
    path = Path(path) if path else EMBEDDED_ROSMAP
    fmt = opts.format or detect_format(path)
    check_choices((fmt, FORMATS, "--format"))
    if fmt == "mogonet":
        _no_split_options(opts, fmt)
        ds = mogonet.load(path)
    elif fmt == "tcga":
        ds = tcga.load(path, opts.modalities, opts.split_file, opts.test_size, opts.split_seed)
    elif fmt == "derm7pt":
        _no_split_options(opts, fmt)
        ds = derm7pt.load(path, opts.task, opts.derm_tabular, opts.derm_modalities, opts.test_size,
                          opts.split_seed)
    else:
        ds = manifest.load(path, opts.test_size, opts.split_seed)
    if opts.modalities and fmt != "tcga":
        ds.modalities = _select(ds, opts.modalities)
    _check_modality_names(ds)
    return ds


def finish_dataset(ds: Dataset, opts: DataOptions) -> Dataset:
    """``--resplit``, the validation carve-out and every check of :func:`stages.data.dataset.validate`."""
    if ds.pending_split is not None:
        test_size, seed = ds.pending_split
        ds.split, ds.pending_split = stratified_split(ds.labels, test_size, seed), None
        ds.notes.append(f"stratified split: test_size={test_size}, seed={seed}")
    ds = resplit(ds, opts.resplit)
    ds.split = carve_validation(ds.split, ds.labels, opts.val_fraction, opts.split_seed)
    validate(ds, opts.impute)
    return ds


def _no_split_options(opts: DataOptions, fmt: str) -> None:
    if opts.split_file:
        raise UsageError(f"--split-file does not apply to {fmt} data: its split is part of the data set")


def _check_modality_names(ds: Dataset) -> None:
    """A modality name becomes a folder name in the cache: one safe path component (exit 2)."""
    for name, mod in ds.modalities.items():
        try:
            check_name(name, "modality name")
        except UsageError as exc:
            raise UsageError(f"{mod.source}: {exc.message} (modality from {Path(mod.source).name})",
                             fix=f"rename the file or the modality: {exc.fix}") from None


def _select(ds: Dataset, names: list[str]) -> dict:
    unknown = [n for n in names if n not in ds.modalities]
    if unknown:
        raise UsageError(f"unknown modality {unknown}", fix=f"choose from {list(ds.modalities)}")
    return {n: ds.modalities[n] for n in names}
