"""stages.method.reference: every reference model round-trips through its file exactly, and the file format
cannot execute code (a planted pickle is refused without running)."""
import pickle
import warnings
import zipfile

import numpy as np
import pytest

from stages.method import reference
from stages.errors import StaleArtifactError, UsageError
from stages.data.features import Features


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    n = 80
    labels = np.array([0] * 40 + [1] * 25 + [2] * 15)
    rng.shuffle(labels)
    split = np.array(["train"] * 60 + ["test"] * 20, dtype=object)
    a = rng.normal(size=(n, 4)) + labels[:, None] * 0.8
    b = rng.normal(size=(n, 3)) - labels[:, None] * 0.5
    return Features(ids=np.array([f"s{i}" for i in range(n)], dtype=object), labels=labels, split=split,
                    class_names=["x", "y", "z"], modalities={"b": b, "a": a}, kinds={"a": "tabular", "b": "tabular"})


@pytest.mark.parametrize("name", reference.MODELS)
def test_fit_predict_round_trip_equals_the_in_memory_model(feats, name, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)          # every parameter explicit
        summary = reference.fit(feats, name, 3, tmp_path)
        train, test = feats.indices("train"), feats.indices("test")
        model = reference.make(name, 3, feats.counts("train")).fit(reference.design_matrix(feats, train),
                                                                   feats.labels[train])
    assert (tmp_path / reference.FILE).is_file() and zipfile.is_zipfile(tmp_path / reference.FILE)
    assert not list(tmp_path.glob("*.joblib")) and not list(tmp_path.glob("*.pkl"))
    got = reference.predict(tmp_path / reference.FILE, feats, test)
    want = model.predict_proba(reference.design_matrix(feats, test))
    assert got.shape == (20, 3) and np.array_equal(got, want)
    assert summary["train_class_counts"] == np.bincount(feats.labels[train]).tolist()
    assert summary["optimizer_steps"] == reference.iterations(model) >= 1


def test_design_matrix_orders_modalities_by_name(feats):
    rows = np.array([0, 5])
    np.testing.assert_array_equal(reference.design_matrix(feats, rows),
                                  np.hstack([feats.modalities["a"][rows], feats.modalities["b"][rows]]))


class _Boom:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_is_refused_without_running(feats, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(marker))
    # the payload is live: plain unpickling would run it
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Boom(live))).close()
    assert live.exists()
    target = tmp_path / "seed0" / reference.FILE
    target.parent.mkdir()
    target.write_bytes(payload)
    with pytest.raises(StaleArtifactError) as exc:
        reference.predict(target, feats, feats.indices("test"))
    assert str(target) in str(exc.value) and "--force" in str(exc.value)
    assert not marker.exists()


def test_untrusted_types_and_legacy_joblib_are_refused(feats, tmp_path):
    import skops.io as sio
    from sklearn.neighbors import KDTree

    path = tmp_path / reference.FILE
    sio.dump({"model": KDTree(np.eye(3)), "modalities": ["a", "b"]}, path)   # a type outside the list
    with pytest.raises(StaleArtifactError, match="trusted list") as exc:
        reference.predict(path, feats, feats.indices("test"))
    assert "KDTree" in str(exc.value)
    path.unlink()
    (tmp_path / "model.joblib").write_bytes(b"\x80\x04N.")
    with pytest.raises(StaleArtifactError, match="joblib pickle from an older climd"):
        reference.load(path)
    with pytest.raises(UsageError, match="--model"):
        reference.make("svm", 0, np.array([3, 3]))


def test_every_stored_type_is_on_the_trusted_list(feats, tmp_path):
    import skops.io as sio

    for name in reference.MODELS:
        reference.fit(feats, name, 0, tmp_path)
        assert set(sio.get_untrusted_types(file=tmp_path / reference.FILE)) <= set(reference.trusted_types()), name
