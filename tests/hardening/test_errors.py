"""Item 5: every OSError at the command line's boundary, memory exhaustion and diverged training end
with one message and a documented exit code, never a traceback."""
import errno

import pytest

from stages.errors import EXIT_CODES, OutOfMemory, StorageError, UsageError
from stages.core.failures import classify


def test_a_cache_dir_that_is_a_file_is_one_message(cli, tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    r = cli("encode", "--run", "r", "--cache-dir", blocker)
    assert r.exit_code == 6 and str(blocker) in r.stderr and "Traceback" not in r.output, r.output
    assert "a file is in the way" in r.stderr


def test_a_file_where_a_seed_folder_goes_is_one_message(cli, ros):
    (ros / "train" / "v").mkdir(parents=True)
    (ros / "train" / "v" / "seed0").write_text("x")
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "1", "--variant", "v")
    assert r.exit_code == 6 and "seed0" in r.stderr and "Traceback" not in r.output, r.output


def test_an_over_long_path_is_a_usage_error(cli, tmp_path):
    deep = tmp_path / ("d" * 256)              # over NAME_MAX (255)
    r = cli("encode", "--run", "r", "--cache-dir", deep)
    assert r.exit_code == 2 and "too long" in r.stderr and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("exc, cls, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/c/x"), StorageError, "disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/c/x"), StorageError, "read-only"),
    (OSError(errno.EACCES, "Permission denied", "/c/x"), StorageError, "permission denied"),
    (OSError(errno.ENOTDIR, "Not a directory", "/c/x"), StorageError, "a file is in the way"),
    (OSError(errno.EEXIST, "File exists", "/c/x"), StorageError, "a file is in the way"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/c/x"), UsageError, "too long"),
    (OSError(errno.EMFILE, "Too many open files"), OutOfMemory, "too many open files"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/c/x"), StorageError, "cross-device"),
    (MemoryError(), OutOfMemory, "out of memory"),
    (RuntimeError("can't start new thread"), OutOfMemory, "can't start new thread"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
     OutOfMemory, "DefaultCPUAllocator"),
])
def test_every_os_and_memory_error_has_a_message_and_a_documented_code(exc, cls, words):
    known = classify(exc)
    assert type(known) is cls and words in known.message and known.fix and known.exit_code in EXIT_CODES
    assert "/c/x" in known.message or exc.__class__ is not OSError or not getattr(exc, "filename", None)


def test_a_plain_bug_is_not_dressed_up():
    assert classify(RuntimeError("index out of range")) is None and classify(KeyError("k")) is None


def test_diverged_training_fails_that_replica_naming_lr_and_epoch(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "3", "--seeds", "0-1",
            "--lr", "1e30,1e-3", "--variant-prefix", "nan", "--jobs", "1")
    assert r.exit_code == 7 and "Traceback" not in r.output, r.output
    said = " ".join(r.stderr.split())
    assert "diverged at epoch" in said and "--lr 1e+30" in said and "seed0" in said and "seed1" in said
    assert "--lr 0.001" not in said.split("fix:")[0]
    healthy = list((ros / "train").glob("nan@lr0.001/seed*/meta.json"))
    assert len(healthy) == 2                       # the replicas with a sane lr trained
    assert not list((ros / "train").glob("nan@lr1e+30/seed*/meta.json"))
    r = cli("evaluate", "--run", "ros", "--variant", "nan@lr1e+30", "--seed", "0")
    assert r.exit_code != 0 and r.exit_code != 1 and "Traceback" not in r.output, r.output


def test_a_model_with_non_finite_weights_never_gives_empty_probabilities(cli, ros):
    """A NaN model (built before divergence was caught, or edited consistently): evaluate and predict
    refuse it (exit 7) instead of writing NaN or empty probabilities."""
    import json

    import numpy as np

    from stages.core.hashing import file_sha256
    from stages.store import tensorio

    assert cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "1", "--variant", "nanw").exit_code == 0
    seed0 = ros / "train" / "nanw" / "seed0"
    tensors, meta = tensorio.load(seed0 / "model", as_numpy=True)
    first = next(iter(tensors))
    tensors[first] = np.full_like(tensors[first], np.nan)
    tensorio.save(seed0 / "model", tensors, meta)
    record = json.loads((seed0 / "meta.json").read_text())
    for rel in ("model.safetensors", "model.json"):
        record["outputs"][rel] = {"sha256": file_sha256(seed0 / rel), "bytes": (seed0 / rel).stat().st_size}
    (seed0 / "meta.json").write_text(json.dumps(record))
    r = cli("evaluate", "--run", "ros", "--variant", "nanw")
    assert r.exit_code == 7 and "non-finite" in r.stderr and "Traceback" not in r.output, r.output
    from ..conftest import ROOT

    r = cli("predict", "--run", "ros", "--variant", "nanw", "--data", ROOT / "stages" / "data" / "embedded" / "rosmap")
    assert r.exit_code == 7 and "non-finite" in r.stderr and r.stdout.strip() == "", r.output


def test_a_worker_failure_crosses_to_the_parent_with_its_class_code_and_traceback_for_debug(tmp_path):
    """What a worker raises is pickled to the parent: its class and exit code survive (LeaseHeld is 6,
    not 1), and a bug's traceback travels as ``detail`` (printed only with --debug)."""
    import pickle

    from stages.errors import ClimdError
    from stages.pipeline.workers import _worker_block
    from stages.store.lease import LeaseHeld

    held = LeaseHeld(tmp_path / ".lease.json", {"pid": 1, "host": "n1", "token": "t", "heartbeat": 0})
    back = pickle.loads(pickle.dumps(held))
    assert type(back) is LeaseHeld and back.exit_code == 6 and back.message == held.message and back.fix

    def buggy(*args):
        raise ValueError("boom")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    with pytest.raises(ClimdError) as bug:
        _worker_block([], False, None, buggy)
    back = pickle.loads(pickle.dumps(bug.value))
    assert back.exit_code == 1 and "unexpected ValueError: boom" in back.message and "Traceback" not in back.message
    assert "Traceback" in back.detail and "boom" in back.detail
    with pytest.raises(StorageError) as disk:
        _worker_block([], False, None, full)
    back = pickle.loads(pickle.dumps(disk.value))
    assert type(back) is StorageError and back.exit_code == 6 and "disk is full" in back.message
