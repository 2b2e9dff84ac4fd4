"""Leases and leftovers on a shared file system, with writers in other PID namespaces as other nodes.

A process started with ``unshare --pid --fork`` has this hostname and boot id but pids that mean
nothing here: exactly what a writer on another node looks like to a cleanup on this one.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import stages.store.atomic as atomic
from stages.store import lease as L
from stages.store.atomic import (TargetExists, atomic_dir, atomic_write_text, remove_orphans, sweep_leftovers)
from stages.errors import StorageError, UsageError
from stages.store.lease import Lease, LeaseHeld, lease_status
from stages.store.artifacts import RunStore

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("CLIMD_RACE_ROUNDS", "8"))


@pytest.fixture(scope="module")
def unshare() -> list[str]:
    """The command prefix that starts a process in a new PID namespace (fails when it cannot)."""
    exe = shutil.which("unshare")
    if exe is None:
        pytest.fail("`unshare` (util-linux) is missing: these tests need it to stand in for other "
                    "nodes; install util-linux", pytrace=False)
    cmd = [exe, "--pid", "--fork", "--kill-child"]
    probe = subprocess.run(cmd + ["readlink", "/proc/self/ns/pid"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() == os.readlink("/proc/self/ns/pid"):
        pytest.fail(f"`unshare --pid --fork` does not work here (needs root or CAP_SYS_ADMIN): "
                    f"{probe.stderr.strip()}", pytrace=False)
    return cmd


def _with_pid_dead_here(prefix: list[str]) -> list[str]:
    """``prefix`` that starts the writer under a pid which no process of this namespace has, so
    that a cleanup judging by local pids (the old rule) would take the writer for dead."""
    pid = next(p for p in range(40, 30000) if not L.pid_alive(p))
    loop = f'i=0; while [ $i -lt {pid - 2} ]; do /bin/true; i=$((i+1)); done; "$@"; exit $?'
    return prefix + ["sh", "-c", loop, "sh"]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _spawn(prefix: list[str], script: str, cfg: dict, **env) -> subprocess.Popen:
    return subprocess.Popen(prefix + [sys.executable, "-c", script, json.dumps(cfg)], env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"writer exited {proc.returncode} before reporting: {proc.stderr.read()}")
    return json.loads(line)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"writer exited {proc.returncode}:\n{err}"
    return json.loads(out.strip().splitlines()[-1])


# A writer of one artifact: reports its identity, waits for the shared start signal, then builds
# through RunStore.build (or atomic_dir with replace=False) with a producer that finishes at a
# shared deadline plus a small jitter, so that two writers publish at nearly the same moment.
WRITER = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1])
import stages.store.atomic as A
if cfg["no_exchange"]:
    A._renameat2 = None          # publish as on NFS: no renameat2
from stages.store import lease
from stages.store.artifacts import RunStore
print(json.dumps({"node": lease.node(), "pid": os.getpid()}), flush=True)
while not os.path.exists(cfg["go"]):
    time.sleep(0.001)
deadline = float(open(cfg["go"]).read()) + cfg["delay"]
def produce(out):
    (out / "a.txt").write_text(cfg["who"])
    time.sleep(max(0.0, deadline - time.time()))
    (out / "b.txt").write_text(cfg["who"])
    return {"who": cfg["who"]}
if cfg["mode"] == "store":
    art, reused = RunStore(cfg["cache"], "r").build("art", "art", 1, {}, {}, produce)
    print(json.dumps({"outcome": "reused" if reused else "built", "who": art.summary["who"]}))
else:
    from pathlib import Path
    try:
        with A.atomic_dir(Path(cfg["cache"]) / "r" / "art", replace=False) as tmp:
            produce(tmp)
        print(json.dumps({"outcome": "published", "who": cfg["who"]}))
    except A.TargetExists:
        print(json.dumps({"outcome": "kept the other", "who": cfg["who"]}))
"""


# RunStore.build publishes with replace=<"not an intact artifact with my key">: the second writer
# keeps (reuses) the first one's artifact, with or without renameat2 (NFS has none).
@pytest.mark.parametrize("mode,exchange", [("store", True), ("store", False), ("keep", True), ("keep", False)],
                         ids=["store-renameat2", "store-no-renameat2", "keep-renameat2", "keep-no-renameat2"])
def test_two_writers_in_separate_namespaces_leave_one_complete_artifact(tmp_path, unshare, mode, exchange):
    """Two nodes build one artifact at once: both exit 0, one complete artifact, nothing left over."""
    rng = random.Random(0)
    for round_ in range(ROUNDS):
        cache, go = tmp_path / f"c{round_}", tmp_path / f"go{round_}"
        writers = [_spawn(unshare, WRITER, {"cache": str(cache), "go": str(go), "who": who, "mode": mode,
                                            "no_exchange": not exchange, "delay": 0.2 + rng.random() * 0.004})
                   for who in ("w1", "w2")]
        nodes = [_line(w)["node"] for w in writers]
        assert nodes[0]["pidns"] != nodes[1]["pidns"] != L.node()["pidns"]  # three "nodes"
        atomic_write_text(go, repr(time.time()))
        results = [_finish(w) for w in writers]
        assert sorted(os.listdir(cache / "r")) == ["art"], f"round {round_}: leftovers"
        art = cache / "r" / "art"
        outcomes = sorted(r["outcome"] for r in results)
        if mode == "keep":
            assert outcomes == ["kept the other", "published"], results
            who = next(r["who"] for r in results if r["outcome"] == "published")
        else:
            # one built and published; the other built too, found the first one's artifact with the
            # same key at its end and reused it (or, with exact timing, both published in turn)
            assert outcomes in (["built", "reused"], ["built", "built"]), results
            who = RunStore(cache, "r").load("art").summary["who"]  # complete, files match meta.json
        assert (art / "a.txt").read_text() == (art / "b.txt").read_text() == who


# A writer that holds a temporary folder (atomic_dir) or a folder lease (Lease) until told to finish.
HOLDER = r"""
import json, os, sys, time
from pathlib import Path
cfg = json.loads(sys.argv[1])
from stages.store.atomic import atomic_dir
from stages.store.lease import Lease, node
stop = Path(cfg["stop"])
def hold(path):
    print(json.dumps({"path": str(path), "node": node(), "pid": os.getpid()}), flush=True)
    t0 = time.time()
    while not stop.exists():
        if time.time() - t0 > 60:
            sys.exit("never told to stop")
        time.sleep(0.05)
if cfg["kind"] == "tmp":
    with atomic_dir(Path(cfg["target"])) as tmp:
        (tmp / "data.txt").write_text("written")
        hold(tmp)
else:
    with Lease(Path(cfg["target"])):
        hold(Path(cfg["target"]))
print(json.dumps({"done": True}))
"""
FAST = {"CLIMD_LEASE_TTL": 2.0, "CLIMD_LEASE_HEARTBEAT": 0.2}


@pytest.fixture
def fast_leases(monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setenv(key, str(value))


def test_live_writer_in_another_namespace_survives_cleanups_past_the_ttl(tmp_path, unshare, fast_leases):
    """Heartbeats keep a long writer on another node alive; cleanups here never touch its folder."""
    run, stop = tmp_path / "run", tmp_path / "stop"
    writer = _spawn(_with_pid_dead_here(unshare), HOLDER,
                    {"kind": "tmp", "target": str(run / "art"), "stop": str(stop)}, **FAST)
    held = _line(writer)
    tmp = Path(held["path"])
    assert not L.is_local(held["node"]) and held["node"]["host"] == L.node()["host"]
    assert not L.pid_alive(held["pid"]), "the writer's pid should mean 'gone' here"
    t0 = time.time()
    while time.time() - t0 < 2 * FAST["CLIMD_LEASE_TTL"] + 1:  # well past the TTL
        assert sweep_leftovers(tmp_path) == [] and remove_orphans(run / "art") == []
        assert L.lease_file_status(Path(f"{tmp}.lease")) == "live"
        time.sleep(0.1)
    assert (tmp / "data.txt").read_text() == "written"
    stop.touch()
    assert _finish(writer) == {"done": True}
    assert sorted(os.listdir(run)) == ["art"] and (run / "art" / "data.txt").is_file()


def test_killed_writer_in_another_namespace_is_swept_after_its_lease_expires(tmp_path, unshare, monkeypatch):
    ttl = 3.0  # room for a slow machine between the kill and the first sweep
    monkeypatch.setenv("CLIMD_LEASE_TTL", str(ttl))
    monkeypatch.setenv("CLIMD_LEASE_HEARTBEAT", "0.5")
    run = tmp_path / "run"
    writer = _spawn(unshare, HOLDER, {"kind": "tmp", "target": str(run / "art"), "stop": str(tmp_path / "s")},
                    CLIMD_LEASE_TTL=ttl, CLIMD_LEASE_HEARTBEAT=0.5)
    tmp = Path(_line(writer)["path"])
    writer.send_signal(signal.SIGKILL)  # unshare --kill-child: the writer dies with it
    writer.communicate(timeout=10)
    killed = time.time()
    assert sweep_leftovers(run) == [] and tmp.is_dir()  # another node's pid: wait for the TTL
    assert L.lease_file_status(Path(f"{tmp}.lease")) == "live"
    assert time.time() - killed < ttl, "too slow to see the lease still live"
    time.sleep(ttl + 0.3)
    assert L.lease_file_status(Path(f"{tmp}.lease")) == "expired"
    removed = sweep_leftovers(run)
    assert sorted(p.name for p in removed) == [tmp.name, f"{tmp.name}.lease"]
    assert os.listdir(run) == []


def test_killed_local_writer_is_swept_at_once(tmp_path):
    """A writer of this node that is gone: its leftover goes at the next cleanup, no TTL wait."""
    run = tmp_path / "run"
    writer = _spawn([], HOLDER, {"kind": "tmp", "target": str(run / "art"), "stop": str(tmp_path / "s")})
    tmp = Path(_line(writer)["path"])
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=10)
    assert L.lease_file_status(Path(f"{tmp}.lease")) == "dead"
    assert sorted(p.name for p in sweep_leftovers(run)) == [tmp.name, f"{tmp.name}.lease"]
    assert os.listdir(run) == []


def test_lease_of_another_namespace_is_held_then_taken_over_when_expired(tmp_path, unshare, fast_leases, caplog):
    folder, stop = tmp_path / "train" / "seed0", tmp_path / "stop"
    writer = _spawn(_with_pid_dead_here(unshare), HOLDER,
                    {"kind": "lease", "target": str(folder), "stop": str(stop)}, **FAST)
    holder = _line(writer)
    assert not L.pid_alive(holder["pid"])
    time.sleep(2 * FAST["CLIMD_LEASE_TTL"])  # alive by its heartbeat, not by a pid we could check
    assert lease_status(folder) == "live"
    with pytest.raises(LeaseHeld) as held:
        Lease(folder).acquire()
    assert (held.value.host, held.value.pid) == (holder["node"]["host"], holder["pid"])
    assert held.value.since and held.value.exit_code == 6 and "is being written by" in str(held.value)
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=10)
    time.sleep(FAST["CLIMD_LEASE_TTL"] + 0.3)
    assert lease_status(folder) == "expired"
    with caplog.at_level(logging.WARNING, logger="climd"), Lease(folder) as lease:
        assert lease_status(folder) == "live" and lease.record["pid"] == os.getpid()
    assert "taking over the lease" in caplog.text and lease_status(folder) == "none"


def test_dead_local_lease_is_taken_over_and_statuses(tmp_path):
    folder = tmp_path / "f"
    assert lease_status(folder) == "none"
    writer = _spawn([], HOLDER, {"kind": "lease", "target": str(folder), "stop": str(tmp_path / "s")})
    _line(writer)
    assert lease_status(folder) == "live"
    with pytest.raises(LeaseHeld):
        Lease(folder).acquire()
    writer.kill()
    writer.communicate(timeout=10)
    assert lease_status(folder) == "dead"
    with Lease(folder) as lease:
        assert lease.held and lease_status(folder) == "live"
    assert lease_status(folder) == "none" and os.listdir(folder) == []


def _record(**changes) -> dict:
    now = time.time()
    rec = {**L.node(), "pid": os.getpid(), "pid_start": L._pid_start(os.getpid()), "token": "t",
           "since": "x", "heartbeat": now, "ttl": 30.0}
    rec.update(changes)
    return rec


def test_status_rules():
    dead_pid = _dead_pid()
    assert L.record_status(_record()) == "live"
    assert L.record_status(_record(pid=dead_pid)) == "dead"
    assert L.record_status(_record(pid_start="1")) == "dead"  # our pid, but another (older) process
    assert L.record_status(_record(heartbeat=time.time() - 31)) == "expired"
    # another PID namespace, or another boot, or another host: its pid means nothing here
    for other in ({"pidns": "0:1"}, {"boot_id": "other"}, {"host": "other"}):
        assert L.record_status(_record(pid=dead_pid, **other)) == "live"
        assert L.record_status(_record(pid=dead_pid, heartbeat=time.time() - 31, **other)) == "expired"
    # an unreadable lease is judged by its age
    assert L.record_status({}, os.stat(__file__), now=os.stat(__file__).st_mtime + 1) == "live"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_concurrent_takeover_of_an_expired_lease_has_one_winner(tmp_path):
    """Many processes see the same expired lease at once: exactly one holds it afterwards."""
    script = r"""
import json, sys, time
from stages.store.lease import Lease, LeaseHeld
cfg = json.loads(sys.argv[1])
while time.time() < cfg["at"]:
    pass
try:
    with Lease(cfg["dir"]):
        print("won", flush=True)
        time.sleep(0.5)
except LeaseHeld:
    print("held")
"""
    for round_ in range(max(2, ROUNDS // 2)):
        folder = tmp_path / f"f{round_}"
        folder.mkdir()
        atomic_write_text(folder / L.LEASE_FILE, json.dumps(_record(host="gone", heartbeat=time.time() - 99)))
        at = time.time() + 0.4
        procs = [_spawn([], script, {"dir": str(folder), "at": at}) for _ in range(4)]
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert sorted(outs) == ["held"] * 3 + ["won"], outs
        assert os.listdir(folder) == []


def test_heartbeat_refreshes_and_a_stopped_heartbeat_expires(tmp_path, fast_leases):
    with Lease(tmp_path / "a") as lease:
        first = lease.record["heartbeat"]
        time.sleep(3 * FAST["CLIMD_LEASE_TTL"])
        assert lease_status(tmp_path / "a") == "live" and lease.record["heartbeat"] > first + 2
        assert lease.record["since"] == L.read_record(lease.path)[0]["since"]
    stalled = Lease(tmp_path / "b").acquire()
    L._HEART.discard(stalled)  # as if this process were stopped (SIGSTOP, a suspended job)
    time.sleep(FAST["CLIMD_LEASE_TTL"] + 0.3)
    assert lease_status(tmp_path / "b") == "expired"
    with Lease(tmp_path / "b"):  # taken over
        assert not stalled.beat() and stalled.lost  # the stalled holder learns it lost the lease
        stalled.release()  # and does not remove the new holder's lease
        assert lease_status(tmp_path / "b") == "live"


def test_bad_lease_settings_are_usage_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMD_LEASE_TTL", "soon")
    with pytest.raises(UsageError, match="CLIMD_LEASE_TTL"):
        Lease(tmp_path).acquire()
    monkeypatch.setenv("CLIMD_LEASE_TTL", "10")
    monkeypatch.setenv("CLIMD_LEASE_HEARTBEAT", "6")
    with pytest.raises(UsageError, match="less than half"):
        Lease(tmp_path).acquire()
    assert os.listdir(tmp_path) == []


# -- sweep_leftovers -----------------------------------------------------------------------------
def test_sweep_rules_for_unleased_and_nested_leftovers(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "train" / "seed0").mkdir(parents=True)
    tag, dead = L.node_tag(), _dead_pid()
    local_dead = run / f".tmp-meta.json-{tag}-{dead}-0123abcd"
    local_live = run / f".tmp-meta.json-{tag}-{os.getpid()}-0123abcd"
    remote = run / "train" / "seed0" / ".tmp-model.pt-aaaaaaaaaaaa-7-0123abcd"
    legacy = run / "train" / ".tmp-old-123-abcdef"
    for path in (local_dead, local_live, remote, legacy):
        path.write_text("x")
    keep = run / "train" / "seed0" / "model.pt"
    keep.write_text("final")
    assert sweep_leftovers(run) == [local_dead]
    monkeypatch.setenv("CLIMD_LEFTOVER_AGE", "5")
    os.utime(remote, (time.time() - 10,) * 2)
    assert sweep_leftovers(run) == [remote]  # old enough; the legacy one is still fresh
    os.utime(legacy, (time.time() - 10,) * 2)
    assert sweep_leftovers(run) == [legacy]
    assert local_live.exists() and keep.exists()


def test_sweep_skips_folders_with_a_live_lease_and_cleans_dead_ones(tmp_path):
    run = tmp_path / "run"
    folder = run / "train" / "seed0"
    leftover = folder / ".tmp-checkpoint.pt-aaaaaaaaaaaa-7-0123abcd"
    with Lease(folder):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_text("x")
        os.utime(leftover, (0, 0))
        assert sweep_leftovers(run) == []  # its holder writes in there
    atomic_write_text(folder / L.LEASE_FILE, json.dumps(_record(pid=_dead_pid())))
    assert sorted(p.name for p in sweep_leftovers(run)) == [L.LEASE_FILE, leftover.name]
    assert os.listdir(folder) == []


# -- atomic_dir ------------------------------------------------------------------------------------
def test_atomic_dir_replace_modes(tmp_path):
    target = tmp_path / "art"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    with atomic_dir(target) as tmp:  # replace=True (the default, --force)
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    with pytest.raises(TargetExists) as exc:
        with atomic_dir(target, replace=False) as tmp:
            (tmp / "v").write_text("3")
    assert exc.value.target == target and (target / "v").read_text() == "2"
    with pytest.raises(TargetExists):
        with atomic_dir(target, replace=lambda existing: (existing / "v").read_text() != "2") as tmp:
            (tmp / "v").write_text("4")
    with atomic_dir(target, replace=lambda existing: (existing / "v").read_text() != "4") as tmp:
        (tmp / "v").write_text("4")
    assert (target / "v").read_text() == "4" and os.listdir(tmp_path) == ["art"]


def test_atomic_dir_whose_temp_folder_was_swept_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="missed its lease heartbeats"):
        with atomic_dir(tmp_path / "art") as tmp:
            shutil.rmtree(tmp)  # what a cleanup elsewhere does once this process stalled past the TTL
            (tmp / "x").write_text("1")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "no-renameat2"])
@pytest.mark.parametrize("replace", [True, False])
def test_atomic_dir_threads_racing_to_publish(tmp_path, monkeypatch, exchange, replace):
    """Many rounds of 4 threads finishing one target together: no error, one consistent version."""
    if not exchange:
        monkeypatch.setattr(atomic, "_renameat2", None)
    for round_ in range(25 * ROUNDS):
        target, barrier, errors, published = tmp_path / f"t{round_}", threading.Barrier(4), [], []

        def write(who: int) -> None:
            try:
                with atomic_dir(target, replace=replace) as tmp:
                    (tmp / "a").write_text(str(who))
                    (tmp / "b").write_text(str(who))
                    barrier.wait()
                published.append(who)
            except TargetExists:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert (target / "a").read_text() == (target / "b").read_text()
        assert len(published) == (4 if replace else 1)
    assert sorted(os.listdir(tmp_path)) == sorted(f"t{i}" for i in range(25 * ROUNDS))
