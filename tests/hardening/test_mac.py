"""Item 9: with $CLIMD_CACHE_KEY, records carry a keyed MAC: a consistent edit of an output and its
recorded hash (accepted on integrity alone) is refused, as are unsigned records and other keys'."""
import json

import pytest

from stages.errors import StaleArtifactError
from stages.core.hashing import file_sha256
from stages.store.artifacts import RunStore


def _consistent_edit(artifact, rel, text):
    (artifact / rel).write_text(text)
    meta = json.loads((artifact / "meta.json").read_text())
    meta["outputs"][rel] = {"sha256": file_sha256(artifact / rel), "bytes": (artifact / rel).stat().st_size}
    (artifact / "meta.json").write_text(json.dumps(meta))


def test_a_keyed_mac_refuses_consistent_edits_unsigned_records_and_other_keys(cli, cache, monkeypatch):
    monkeypatch.setenv("CLIMD_CACHE_KEY", "our group's secret")
    assert cli("encode", "--run", "m").exit_code == 0
    assert cli("fit-dist", "--run", "m").exit_code == 0
    store = RunStore(cache, "m")
    assert store.load("fit-dist").meta["mac"]["alg"] == "hmac-sha256"
    dist = store.path("fit-dist")
    original = (dist / "dist.json").read_text()
    _consistent_edit(dist, "dist.json", original.replace('"status": "ok"', '"status": "edited"'))
    with pytest.raises(StaleArtifactError, match="changed after it was signed"):
        store.load("fit-dist")
    monkeypatch.delenv("CLIMD_CACHE_KEY")
    store.load("fit-dist")                          # without a key: integrity only, the edit passes
    monkeypatch.setenv("CLIMD_CACHE_KEY", "someone else's")
    with pytest.raises(StaleArtifactError, match="signed with another key"):
        store.load("encode")
    monkeypatch.setenv("CLIMD_CACHE_KEY", "our group's secret")
    meta = json.loads((dist / "meta.json").read_text())
    meta.pop("mac")
    (dist / "meta.json").write_text(json.dumps(meta))
    r = cli("inspect", "fit-dist", "--run", "m")
    assert r.exit_code == 5 and "not signed" in r.stderr and "Traceback" not in r.output, r.output


def test_tensor_sidecars_are_signed_too(tmp_path, monkeypatch):
    import numpy as np

    from stages.store import tensorio

    monkeypatch.setenv("CLIMD_CACHE_KEY", "k")
    tensorio.save(tmp_path / "model", {"w": np.ones(3, dtype=np.float32)}, {"epoch": 1})
    tensorio.load(tmp_path / "model")
    side = tmp_path / "model.json"
    record = json.loads(side.read_text())
    record["meta"]["epoch"] = 2
    side.write_text(json.dumps(record))
    with pytest.raises(StaleArtifactError, match="changed after it was signed"):
        tensorio.load(tmp_path / "model")
