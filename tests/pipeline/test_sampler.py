"""CurriculumSampler / CurriculumBatchSampler: a climd schedule in the run's seeded order, for a
user's own training loop. One tiny ROSMAP schedule (6 epochs) is built once for the module."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from stages.data import features
from stages.engine import order
from stages.errors import DataError, MissingArtifactError, StaleArtifactError, UsageError
from stages.sampler import CurriculumBatchSampler, CurriculumSampler

from tests import datagen
from tests.conftest import ROOT

T, RUN = 6, "ros"


def _climd(cache_dir, *args):
    from climd_cli.app import app

    cmd, *rest = args
    r = CliRunner().invoke(app, ["--no-progress", cmd, *map(str, rest), "--cache-dir", str(cache_dir)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("sampler") / "cache"
    for args in (["encode"], ["score", "--probe-epochs", "20"], ["fit-dist"], ["schedule", "--epochs", T]):
        _climd(cache_dir, args[0], "--run", RUN, *args[1:])
    return cache_dir / RUN


def _sampler(run_dir, cls=CurriculumSampler, **kw):
    return cls.from_run(RUN, cache_dir=run_dir.parent, **kw)


def _lines(path):
    return path.read_text().splitlines()


def _train_ids(run_dir):
    feats = features.read(run_dir / "encode" / features.FILE)
    return list(feats.ids[feats.indices("train")])


def _predicted(run_dir, seed, batch_size, budget="epochs", finish=0):
    """climd's batches (training rows) per epoch, straight from stages/order.py and the files."""
    train = _train_ids(run_dir)
    row = {i: r for r, i in enumerate(train)}
    gen = order.streams(seed)["order"]
    n_steps = order.steps_per_full_epoch(len(train), batch_size) if budget == "steps" else None
    pools = [[row[i] for i in _lines(run_dir / "schedule" / f"epoch_{t:04d}.txt")] for t in range(1, T + 1)]
    pools += [list(range(len(train)))] * finish
    return [[b.tolist() for b in order.epoch_batches(gen, np.array(p), batch_size, n_steps)] for p in pools]


def _epochs(sampler, epochs):
    out = []
    for t in epochs:
        sampler.set_epoch(t)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_every_epoch_is_its_file_in_the_seeded_order(run_dir, seed):
    s = _sampler(run_dir, seed=seed)
    train = np.array(_train_ids(run_dir), dtype=object)
    assert s.epochs_ == T and list(s.train_ids_) == list(train)
    expected = [sum(batches, []) for batches in _predicted(run_dir, seed, 32)]
    for t in range(1, T + 1):
        s.set_epoch(t)
        got, file_ids = list(s), _lines(run_dir / "schedule" / f"epoch_{t:04d}.txt")
        assert s.subset(t) == file_ids
        assert sorted(train[got]) == sorted(file_ids) and len(s) == len(got) == len(file_ids)
        assert got == expected[t - 1]
    assert expected[0] != sorted(expected[0])           # really shuffled


@pytest.mark.parametrize("budget", ["epochs", "steps"])
def test_batch_sampler_reproduces_budgets_and_finishing_epochs(run_dir, budget):
    b = _sampler(run_dir, CurriculumBatchSampler, batch_size=16, budget=budget, finish_epochs=2, seed=1)
    expected = _predicted(run_dir, 1, 16, budget, finish=2)
    for t in range(1, T + 3):
        b.set_epoch(t)
        got = list(b)
        assert got == expected[t - 1] and len(b) == len(got)
    assert b.subset(T + 1) == _train_ids(run_dir)
    n_full = -(-len(_train_ids(run_dir)) // 16)
    assert len(expected[0]) == (n_full if budget == "steps" else -(-41 // 16))


def test_set_epoch_equals_sequential_iteration(run_dir):
    for cls, kw in ((CurriculumSampler, {}), (CurriculumBatchSampler, {"budget": "steps", "batch_size": 8})):
        sequential = _epochs(_sampler(run_dir, cls, seed=2, finish_epochs=1, **kw), range(1, T + 2))
        jumping = _sampler(run_dir, cls, seed=2, finish_epochs=1, **kw)
        for t in (5, 2, 7, 1, 5, 6):
            jumping.set_epoch(t)
            assert list(jumping) == sequential[t - 1]


def test_seeds_change_the_order_not_the_subsets(run_dir):
    a, b = _epochs(_sampler(run_dir, seed=0), [3]), _epochs(_sampler(run_dir, seed=1), [3])
    assert a != b and sorted(a[0]) == sorted(b[0])


def test_user_ids_give_positions_in_the_users_dataset(run_dir):
    train = _train_ids(run_dir)
    default = [np.array(train, dtype=object)[e].tolist() for e in _epochs(_sampler(run_dir), range(1, T + 1))]
    user = ["extra-1"] + train[::-1] + ["extra-2"]        # the user's order, with ids climd never samples
    s = _sampler(run_dir, ids=np.array(user))
    mapped = [[user[p] for p in e] for e in _epochs(s, range(1, T + 1))]
    assert mapped == default
    b = _sampler(run_dir, CurriculumBatchSampler, ids=user, batch_size=10)
    assert [user[p] for batch in b for p in batch] == default[0]

    missing = [i for i in user if i not in {"tr0000", "tr0001"}]
    with pytest.raises(DataError, match="tr0000") as err:
        _sampler(run_dir, ids=missing)
    assert err.value.exit_code == 3 and "2 of the 245" in err.value.message and err.value.fix
    with pytest.raises(DataError, match="more than once"):
        _sampler(run_dir, ids=user + ["tr0005"])


@pytest.mark.filterwarnings("ignore:An input array is constant")   # one modality: phi is constant
def test_ids_with_spaces_are_read_by_line(tmp_path):
    data = datagen.manifest(tmp_path / "m", n=24, image=False).parent
    table = (data / "samples.csv").read_text().splitlines()
    table[1:] = [line.replace("s", "patient s ", 1) for line in table[1:]]
    (data / "samples.csv").write_text("\n".join(table) + "\n")
    cache_dir = tmp_path / "cache"
    _climd(cache_dir, "encode", "--run", "m", "--data", data / "manifest.yaml")
    for args in (["score", "--probe-epochs", "5"], ["fit-dist"], ["schedule", "--epochs", "3"]):
        _climd(cache_dir, args[0], "--run", "m", *args[1:])
    s = CurriculumSampler.from_run("m", cache_dir=cache_dir)
    assert s.subset(3) == _lines(cache_dir / "m" / "schedule" / "epoch_0003.txt")
    assert all(i.startswith("patient s ") for i in s.subset(3)) and len(s.subset(3)) == 20
    s.set_epoch(3)
    assert sorted(s.train_ids_[list(s)]) == sorted(s.subset(3))


def test_stale_corrupt_incomplete_and_missing_schedules_are_refused(run_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    shutil.copytree(run_dir, cache_dir / "c")
    _climd(cache_dir, "fit-dist", "--run", "c", "--gamma", "0.5")       # schedule not rebuilt
    with pytest.raises(StaleArtifactError, match="stale") as err:
        CurriculumSampler.from_run("c", cache_dir=cache_dir)
    assert err.value.exit_code == 5 and "climd schedule" in err.value.fix

    shutil.copytree(run_dir, cache_dir / "d")
    with open(cache_dir / "d" / "schedule" / "epoch_0003.txt", "a") as f:
        f.write("tr0001\n")
    with pytest.raises(StaleArtifactError, match="corrupt: epoch_0003.txt"):
        CurriculumSampler.from_artifact(cache_dir / "d" / "schedule")
    (cache_dir / "d" / "schedule" / "meta.json").unlink()
    with pytest.raises(StaleArtifactError, match="incomplete"):
        CurriculumBatchSampler.from_run("d", cache_dir=cache_dir)

    with pytest.raises(MissingArtifactError) as err:
        CurriculumSampler.from_run("nope", cache_dir=cache_dir)
    assert err.value.exit_code == 4 and "climd schedule --run nope" in err.value.fix
    with pytest.raises(UsageError, match="not a schedule"):
        CurriculumSampler.from_run(RUN, schedule="score", cache_dir=run_dir.parent)
    with pytest.raises(UsageError, match="score artifact, not a schedule"):
        CurriculumSampler.from_artifact(run_dir / "score")


def test_from_artifact_equals_from_run(run_dir):
    a = CurriculumSampler.from_artifact(run_dir / "schedule", seed=4)
    assert a.schedule_path_ == run_dir / "schedule"
    assert _epochs(a, range(1, T + 1)) == _epochs(_sampler(run_dir, seed=4), range(1, T + 1))


def test_dataloader_with_index_and_batch_sampler(run_dir):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(len(_train_ids(run_dir))))
    s = _sampler(run_dir, seed=5)
    loader = DataLoader(data, batch_size=32, sampler=s)
    expected = _predicted(run_dir, 5, 32)
    for t in (1, 4):
        s.set_epoch(t)
        assert [x.tolist() for (x,) in loader] == expected[t - 1] and len(loader) == len(expected[t - 1])

    b = _sampler(run_dir, CurriculumBatchSampler, seed=5, batch_size=32, drop_last=True)
    loader = DataLoader(data, batch_sampler=b)
    b.set_epoch(4)
    got = [x.tolist() for (x,) in loader]
    assert got == [batch for batch in expected[3] if len(batch) == 32] and len(loader) == len(got) == 163 // 32


def test_epoch_numbering_and_bad_parameters(run_dir):
    s = _sampler(run_dir)
    with pytest.raises(UsageError, match=r"set_epoch\(0\)") as err:
        s.set_epoch(0)
    assert err.value.exit_code == 2 and "first_epoch=0" in err.value.fix
    with pytest.raises(UsageError, match="epochs 1..6"):
        s.set_epoch(T + 1)
    with pytest.raises(UsageError, match="epoch 7"):
        s.subset(T + 1)
    zero = _sampler(run_dir, first_epoch=0, finish_epochs=1)
    assert _epochs(zero, range(0, T + 1)) == _epochs(_sampler(run_dir, finish_epochs=1), range(1, T + 2))
    for kw in ({"batch_size": 0}, {"budget": "samples"}, {"finish_epochs": -1}, {"seed": -1}, {"first_epoch": 2}):
        with pytest.raises(UsageError):
            _sampler(run_dir, CurriculumBatchSampler, **kw)


def test_warns_when_set_epoch_is_never_called(run_dir):
    s = _sampler(run_dir)
    list(s)
    with pytest.warns(UserWarning, match="set_epoch"):
        list(s)
    s.set_epoch(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(s), list(s)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_imports_and_samples_without_torch(run_dir):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from stages.sampler import CurriculumSampler\n"
            f"s = CurriculumSampler.from_run({RUN!r}, cache_dir={str(run_dir.parent)!r}); s.set_epoch(2)\n"
            "print(len(list(s)))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(_lines(run_dir / "schedule" / "epoch_0002.txt")))]


def test_example_trains_on_the_schedules_epochs(run_dir, tmp_path):
    dump = tmp_path / "ids.json"
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "own_training_loop.py"), "--run", RUN,
                          "--cache-dir", str(run_dir.parent), "--dump", str(dump), "--seed", "0"],
                         env=_env(), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    seen = json.loads(dump.read_text())
    train = np.array(_train_ids(run_dir), dtype=object)
    expected = [train[sum(batches, [])].tolist() for batches in _predicted(run_dir, 0, 32)]
    assert list(seen) == [str(t) for t in range(1, T + 1)]
    for t in range(1, T + 1):
        assert sorted(seen[str(t)]) == sorted(_lines(run_dir / "schedule" / f"epoch_{t:04d}.txt"))
        assert seen[str(t)] == expected[t - 1]
    assert "test accuracy" in out.stdout


def test_the_sampler_yields_the_batches_climd_train_trains_on(tmp_path, monkeypatch):
    """Pinning test: `climd train --seed 3` (curriculum climd, batch 16, both budgets) records the
    batches its engine draws; CurriculumBatchSampler with the same seed yields exactly those."""
    import json

    from climd_cli.app import app
    from typer.testing import CliRunner

    from stages.sampler import CurriculumBatchSampler

    cache = tmp_path / "c"
    for args in (["encode"], ["score", "--probe-epochs", "20"], ["fit-dist"], ["schedule", "--epochs", "6"]):
        assert CliRunner().invoke(app, [*args, "--run", "pin", "--cache-dir", str(cache)]).exit_code == 0
    for budget in ("epochs", "steps"):
        log = tmp_path / f"batches-{budget}.jsonl"
        monkeypatch.setenv("CLIMD_DEBUG_BATCHES", str(log))
        r = CliRunner().invoke(app, ["train", "--run", "pin", "--cache-dir", str(cache), "--seed", "3",
                                     "--batch-size", "16", "--budget", budget, "--jobs", "1"])
        assert r.exit_code == 0, r.output
        monkeypatch.delenv("CLIMD_DEBUG_BATCHES")
        trained = [json.loads(line)["batches"] for line in log.read_text().splitlines()]
        sampler = CurriculumBatchSampler.from_run("pin", cache_dir=cache, seed=3, batch_size=16, budget=budget)
        assert len(trained) == sampler.epochs_ == 6
        for t, batches in enumerate(trained, start=1):
            sampler.set_epoch(t)
            assert [list(b) for b in sampler] == batches, (budget, t)
