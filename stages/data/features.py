"""Reading the HDF5 feature file that ``encode`` writes (plain h5py; everything fits in memory)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def read(path: Path, stages: bool = False) -> Features:
    import h5py

    with h5py.File(Path(path), "r", locking=False) as h5:
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
