"""Item 3: FIFOs, links to devices and huge files planted where climd reads never hang it or exhaust
its memory: a lease of that kind is no lease (taken over at once), anything else is corrupt (exit 5)."""
import json
import os
import time

import pytest

from stages.core import safefs
from stages.store.lease import Lease, read_record, record_status

from tests.procs import run


def test_a_planted_fifo_lease_does_not_hang_a_reused_stage(ros):
    os.mkfifo(ros / ".tmp-x-000000000000-1-deadbeef.lease")
    code, _, err = run(ros.parent, "score", "--run", "ros", "--probe-epochs", "50", timeout=60)
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("plant", ["fifo", "dev-zero", "huge"])
def test_a_lease_file_that_is_no_lease_is_taken_over_at_once(tmp_path, plant):
    folder = tmp_path / "f"
    folder.mkdir()
    lease = folder / ".lease.json"
    if plant == "fifo":
        os.mkfifo(lease)
    elif plant == "dev-zero":
        lease.symlink_to("/dev/zero")
    else:
        with open(lease, "wb") as fh:
            fh.truncate(1 << 30)                    # sparse: 1 GiB that costs no disk
    t0 = time.monotonic()
    rec, st = read_record(lease)
    assert rec.get("corrupt") and record_status(rec, st) == "expired"
    with Lease(folder) as held:
        assert held.held and read_record(lease)[0]["token"] == held.token
    assert time.monotonic() - t0 < 5


def test_meta_json_that_is_a_fifo_or_huge_is_corrupt(cli, ros):
    meta = ros / "score" / "meta.json"
    (ros / "score" / "COMMAND").unlink()
    os.mkfifo(ros / "score" / "COMMAND")           # the rerun hint reads COMMAND next to a bad meta.json
    meta.unlink()
    os.mkfifo(meta)
    code, _, err = run(ros.parent, "schedule", "--run", "ros", "--epochs", "12", "--tag", "t", timeout=60)
    assert code == 5 and "meta.json" in err and "FIFO" in err and "Traceback" not in err, err
    meta.unlink()
    with open(meta, "wb") as fh:
        fh.truncate(safefs.LIMITS["meta"] + 1)
    t0 = time.monotonic()
    r = cli("schedule", "--run", "ros", "--epochs", "12", "--tag", "t")
    assert r.exit_code == 5 and "bytes" in r.stderr and time.monotonic() - t0 < 10, r.output


def test_status_with_fifos_planted_does_not_hang(ros):
    os.mkfifo(ros / "fit-dist" / "COMMAND.x")
    (ros / "fit-dist" / "meta.json").write_text("{not json")
    (ros / "fit-dist" / "COMMAND").unlink()
    os.mkfifo(ros / "fit-dist" / "COMMAND")
    code, out, err = run(ros.parent, "status", "--run", "ros", timeout=60)
    assert code in (0, 5) and "Traceback" not in err, err


def test_a_fifo_as_a_checkpoint_file_does_not_hang_train(ros):
    seed0 = ros / "train" / "fifo" / "seed0"
    seed0.mkdir(parents=True)
    os.mkfifo(seed0 / "checkpoint-e00001.safetensors")
    (seed0 / "checkpoint.json").write_text(json.dumps({
        "format": "climd-tensors/1", "tensors": "checkpoint-e00001.safetensors", "sha256": "0" * 64,
        "bytes": 10, "meta": {"key": "x", "epoch": 1}}))
    os.mkfifo(seed0 / ".lease.json")
    code, _, err = run(ros.parent, "train", "--run", "ros", "--curriculum", "none", "--epochs", "2",
                       "--variant", "fifo", timeout=90)
    assert code == 0 and "Traceback" not in err, err
    assert (seed0 / "meta.json").is_file()
