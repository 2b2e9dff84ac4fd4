"""Item 6: a checkpoint is checked field by field before it is resumed; a damaged one is discarded for
its replica only (a warning naming it; that replica trains from the start and ends as if it never had
one), the others resume; temporary checkpoint files of killed runs go when a replica completes."""
import json
import shutil
import signal

import numpy as np
import pytest

from stages.store import tensorio

from tests.procs import climd, wait_for

ARGS = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "12", "--checkpoint-every", "1",
        "--variant", "dmg", "--jobs", "1"]


@pytest.fixture(scope="module")
def killed(tmp_path_factory, ros_template):
    """A copy of ROSMAP whose seeds 0-1 were killed mid-training (checkpoints on disk), and the
    replicas trained without interruption to compare with."""
    from ..conftest import run_cli

    root = tmp_path_factory.mktemp("killed")
    shutil.copytree(ros_template, root, dirs_exist_ok=True)
    proc = climd(root, *ARGS, "--seeds", "0-1", env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.15"})
    wait_for("train/dmg/seed1/checkpoint-e00003.safetensors", root / "ros")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_cli(*ARGS[:-4], "--variant", "clean", "--seeds", "0-1", cache_dir=root)
    return root


def _weights(folder):
    return tensorio.load(folder / "model", as_numpy=True)[0]


def _damage_json(seed, edit):
    path = seed / "checkpoint.json"
    record = json.loads(path.read_text())
    edit(record["meta"])
    path.write_text(json.dumps(record))


def _damage_tensors(seed, edit):
    record = json.loads((seed / "checkpoint.json").read_text())
    tensors = tensorio.load(seed / "checkpoint", as_numpy=True)[0]
    edit(tensors)
    (seed / record["tensors"]).unlink()
    tensorio.save(seed / "checkpoint", tensors, record["meta"], tensor_file=record["tensors"])   # hash updated


def _tensor_file(seed):
    return seed / json.loads((seed / "checkpoint.json").read_text())["tensors"]


DAMAGE = {
    "zeroed-bytes": lambda s: (lambda f: f.write_bytes(f.read_bytes()[:200] + bytes(200) + f.read_bytes()[400:]))(
        _tensor_file(s)),
    "pickle": lambda s: _tensor_file(s).write_bytes(b"\x80\x04\x95cos\nsystem\n(S'touch pwned'\ntR."),
    "not-json": lambda s: (s / "checkpoint.json").write_text("{not json"),
    "short-exp_avg": lambda s: _damage_tensors(s, lambda t: t.update(exp_avg=t["exp_avg"][:-3])),
    "float64-params": lambda s: _damage_tensors(s, lambda t: t.update(params=t["params"].astype(np.float64))),
    "no-rng": lambda s: _damage_json(s, lambda m: m.pop("rng")),
    "bad-rng": lambda s: _damage_json(s, lambda m: m["rng"]["order"].update(state={"state": "x"})),
    "history-type": lambda s: _damage_json(s, lambda m: m.update(history={"0": 1})),
    "epoch-past-the-end": lambda s: _damage_json(s, lambda m: m.update(epoch=12)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_discarded_for_its_replica_only(cli, killed, cache, damage, tmp_path, monkeypatch):
    shutil.copytree(killed, cache)
    monkeypatch.chdir(tmp_path)                     # where a planted pickle would `touch pwned`
    dmg = cache / "ros" / "train" / "dmg"
    seed0, seed1 = dmg / "seed0", dmg / "seed1"
    assert (seed0 / "checkpoint.json").exists() and (seed1 / "checkpoint.json").exists()
    (seed1 / ".tmp-checkpoint-e00009.safetensors-000000000000-1-deadbeef").write_bytes(b"half")   # a killed write
    DAMAGE[damage](seed1)
    r = cli(*ARGS, "--seeds", "0-1")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    said = " ".join(r.stderr.split())           # log lines are wrapped
    assert said.count("the checkpoint cannot be resumed") == 1, r.stderr
    assert f"{seed1}: the checkpoint cannot be resumed" in said and "is discarded" in said
    assert "resuming ros/dmg/seed0" in r.stderr                   # the healthy replica resumed
    assert not (tmp_path / "pwned").exists()
    for seed in (seed0, seed1):
        clean = _weights(cache / "ros" / "train" / "clean" / seed.name)
        mine = _weights(seed)
        assert all(np.array_equal(mine[k], clean[k]) for k in clean)
        assert not list(seed.glob("*checkpoint*")), list(seed.iterdir())
