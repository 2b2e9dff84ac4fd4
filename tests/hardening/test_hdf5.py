"""Item 2: an HDF5 file in a cache whose data lives outside it (external storage, a virtual dataset,
an external link) is refused (exit 5), even with its hash in meta.json updated to match."""
import json

import h5py
import numpy as np
import pytest

from stages.core.hashing import file_sha256


def _rehash(artifact, rel):
    meta_path = artifact / "meta.json"
    meta = json.loads(meta_path.read_text())
    f = artifact / rel
    meta["outputs"][rel] = {"sha256": file_sha256(f), "bytes": f.stat().st_size}
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["external-storage", "virtual", "external-link"])
def test_features_whose_data_lives_outside_the_file_are_refused(cli, ros, tmp_path, how):
    h5_path = ros / "encode" / "features.h5"
    secret = tmp_path / "private-key"
    with h5py.File(h5_path, "r+") as h5:
        name = sorted(h5["modalities"])[0]
        old = h5["modalities"][name]
        data, attrs = old[...].astype(np.float32), dict(old.attrs)
        del h5["modalities"][name]
        if how == "external-storage":
            secret.write_bytes(data.tobytes())
            ds = h5["modalities"].create_dataset(name, shape=data.shape, dtype=np.float32,
                                                 external=[(str(secret), 0, data.nbytes)])
        elif how == "virtual":
            with h5py.File(secret, "w") as src:
                src["x"] = data
            layout = h5py.VirtualLayout(shape=data.shape, dtype=np.float32)
            layout[...] = h5py.VirtualSource(str(secret), "x", shape=data.shape)
            ds = h5["modalities"].create_virtual_dataset(name, layout)
        else:
            with h5py.File(secret, "w") as src:
                src["x"] = data
                src["x"].attrs.update(attrs)
            h5["modalities"][name] = h5py.ExternalLink(str(secret), "x")
            ds = None
        if ds is not None:
            ds.attrs.update(attrs)
    _rehash(ros / "encode", "features.h5")
    r = cli("fit-dist", "--run", "ros", "--force")
    assert r.exit_code == 5 and "features.h5" in r.stderr and "outside" in r.stderr, r.output
    assert "Traceback" not in r.output
