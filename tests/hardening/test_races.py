"""Item 4: completeness is decided while holding the lease, so a second identical `climd train`
started while the first runs never reopens (deletes the meta.json of) a replica the first finished."""
import json
import threading
import time

from tests.procs import climd


def test_two_identical_trains_1_s_apart_never_retrain_a_finished_replica(ros, cache):
    args = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "6", "--seeds", "0-5", "--variant", "race",
            "--jobs", "1"]
    metas = [ros / "train" / "race" / f"seed{s}" / "meta.json" for s in range(6)]
    seen: dict = {}
    problems: list = []
    stop = threading.Event()

    def watch():                                  # once a meta.json appears it never goes or changes
        while not stop.is_set():
            for m in metas:
                try:
                    text = m.read_text()
                except FileNotFoundError:
                    if m in seen:
                        problems.append(f"{m} disappeared")
                    continue
                try:
                    finished = json.loads(text)["finished"]
                except (ValueError, KeyError):
                    continue
                if seen.setdefault(m, finished) != finished:
                    problems.append(f"{m} was rewritten")
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    env = {"CLIMD_DEBUG_EPOCH_SLEEP": "0.05"}
    first = climd(cache, *args, env=env)
    time.sleep(1.0)
    second = climd(cache, *args, env=env)
    codes = [p.wait(timeout=180) for p in (first, second)]
    stop.set()
    watcher.join()
    errs = [p.stderr.read() for p in (first, second)]
    assert codes[0] == 0 and codes[1] in (0, 6), (codes, errs)
    assert "Traceback" not in errs[0] + errs[1]
    assert not problems, problems
    assert all(m.exists() for m in metas)


def test_a_replica_finished_between_prepare_and_lease_is_reused_not_reopened(ros, cache):
    """The race made deterministic: this process prepares (sees the replicas incomplete), another call
    finishes them, then this process takes the leases: it must reuse them, not delete their meta.json."""
    from stages.pipeline import train
    from stages.store.artifacts import RunStore
    from stages.pipeline.train import TrainOptions

    from tests.procs import run

    opts = TrainOptions(curriculum="none", epochs=2)
    store = RunStore(cache, "ros")
    reps = [train.prepare(store, opts, s, "late") for s in (0, 1)]
    assert all(isinstance(r, train.Replica) for r in reps)
    code, _, err = run(cache, "train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--seeds", "0-1",
                       "--variant", "late", "--jobs", "1")
    assert code == 0, err
    metas = {r.path / "meta.json": (r.path / "meta.json").read_text() for r in reps}
    errors, leases, finished = train._prepare_replicas(reps)
    for lease in leases:
        lease.release()
    assert not errors and not leases and len(finished) == 2
    assert all(m.read_text() == text for m, text in metas.items())


def test_two_encodes_of_different_data_into_one_run_cannot_both_win(cli, cache, tmp_path, monkeypatch):
    """Both pass the one-data-set-per-run check (the run is empty when they start); the one that
    publishes second finds the other's data there and is refused (exit 3), leaving it in place."""
    from stages.pipeline import encode

    from .. import datagen

    a = datagen.mogonet(tmp_path / "a", seed=1)
    b = datagen.mogonet(tmp_path / "b", seed=2)
    real_write = encode.write_features

    def write_after_another_encode_finished(*args, **kw):
        monkeypatch.setattr(encode, "write_features", real_write)
        assert cli("encode", "--run", "x", "--data", a).exit_code == 0      # the other writer, meanwhile
        return real_write(*args, **kw)

    monkeypatch.setattr(encode, "write_features", write_after_another_encode_finished)
    r = cli("encode", "--run", "x", "--data", b)
    assert r.exit_code == 3 and "already holds" in r.stderr and "Traceback" not in r.output, r.output
    meta = json.loads((cache / "x" / "encode" / "meta.json").read_text())
    assert meta["inputs"]["data"]["path"] == str(a)
    assert not [p for p in (cache / "x").iterdir() if p.name.startswith(".tmp-")]
