"""Reading the HDF5 feature file that ``encode`` writes (plain h5py; everything fits in memory)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.errors import StaleArtifactError

FILE = "features.h5"


@dataclass
class Features:
    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    modalities: dict[str, np.ndarray]
    kinds: dict[str, str]
    stages: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def counts(self, split: str = "train") -> np.ndarray:
        return np.bincount(self.labels[self.split == split], minlength=self.n_classes)


def open_h5(path: Path):
    """An HDF5 file of a cache opened for reading, once it is known to hold its data itself: a
    regular file (not a link, FIFO or device) without external links, external storage or virtual
    datasets, which would make h5py read files outside the cache that the SHA-256 of this one does not
    cover. Refused with a StaleArtifactError (exit 5) naming the object."""
    import h5py

    from stages.core import safefs

    path = Path(path)
    fix = f"delete {path.parent} (or rerun the command that built it with --force) to rebuild it"
    try:
        os.close(safefs.open_regular(path))
    except (safefs.NotRegular, safefs.TooLarge) as exc:
        raise safefs.corrupt(path, exc, fix) from None
    h5 = h5py.File(path, "r", locking=False)
    try:
        problem = _outside_data(h5)
    except BaseException:
        h5.close()
        raise
    if problem:
        h5.close()
        raise StaleArtifactError(f"{path} is refused: {problem}, so it would read data from outside the "
                                 "cache (an HDF5 file climd writes holds all its data itself)", fix=fix)
    return h5


def _outside_data(h5) -> str | None:
    """What in an open HDF5 file points outside it (None: nothing)."""
    import h5py

    todo = [("", h5)]
    while todo:
        prefix, group = todo.pop()
        for name in group:
            where = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                return f"{where} is an external link to {link.filename}:{link.path}"
            if isinstance(link, h5py.SoftLink):
                continue        # inside this file; what it points to is checked where it lives
            obj = group[name]
            if isinstance(obj, h5py.Group):
                todo.append((where, obj))
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    return f"dataset {where} is a virtual dataset"
                if obj.id.get_create_plist().get_external_count() > 0:
                    return f"dataset {where} uses external storage"
    return None


def read(path: Path, stages: bool = False) -> Features:
    with open_h5(path) as h5:
        mods = {name: h5["modalities"][name][...] for name in h5["modalities"]}
        kinds = {name: h5["modalities"][name].attrs["kind"] for name in h5["modalities"]}
        maps = {}
        if stages and "stages" in h5:
            for name in h5["stages"]:
                group = h5["stages"][name]
                maps[name] = [group[k][...] for k in sorted(group)]
        return Features(
            ids=h5["ids"].asstr()[...].astype(object),
            labels=h5["labels"][...].astype(np.int64),
            split=h5["split"].asstr()[...].astype(object),
            class_names=json.loads(h5.attrs["class_names"]),
            modalities=mods, kinds=kinds, stages=maps)
