"""Artifact store: reuse, force, staleness, corruption, incomplete and interrupted stages."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stages.store.atomic import atomic_dir, atomic_write_text
from stages.errors import MissingArtifactError, StaleArtifactError
from stages.store.artifacts import RunStore


def _producer(text, calls):
    def produce(out):
        calls.append(text)
        (out / "data.txt").write_text(text)
        return {"text": text}
    return produce


def test_build_then_reuse_then_force(tmp_path):
    store, calls = RunStore(tmp_path, "r"), []
    a, reused = store.build("a", "a", 1, {"p": 1}, {}, _producer("x", calls))
    assert not reused and calls == ["x"] and a.file("data.txt").read_text() == "x"
    b, reused = store.build("a", "a", 1, {"p": 1}, {}, _producer("y", calls))
    assert reused and calls == ["x"] and b.key == a.key
    c, reused = store.build("a", "a", 1, {"p": 1}, {}, _producer("z", calls), force=True)
    assert not reused and c.file("data.txt").read_text() == "z"


def test_changed_parameter_recomputes_and_makes_downstream_stale(tmp_path):
    store, calls = RunStore(tmp_path, "r"), []
    up, _ = store.build("up", "up", 1, {"gamma": 0.3}, {}, _producer("u1", calls))
    store.build("down", "down", 1, {}, {"up": up.ref()}, _producer("d1", calls))
    store.load("down")  # fresh
    store.build("up", "up", 1, {"gamma": 0.5}, {}, _producer("u2", calls))
    with pytest.raises(StaleArtifactError, match="up has changed"):
        store.load("down")
    # and the check is transitive: a grandchild of a changed artifact is stale too
    down = store.read("down")
    store.build("up", "up", 1, {"gamma": 0.3}, {}, _producer("u1", calls))
    store.build("down", "down", 1, {}, {"up": store.read("up").ref()}, _producer("d1", calls))
    store.build("leaf", "leaf", 1, {}, {"down": store.read("down").ref()}, _producer("l", calls))
    store.build("up", "up", 1, {"gamma": 0.9}, {}, _producer("u3", calls))
    with pytest.raises(StaleArtifactError):
        store.load("leaf")
    assert down.key  # unused but keeps the earlier read meaningful


def test_corrupt_output_is_detected_and_rebuilt(tmp_path):
    store, calls = RunStore(tmp_path, "r"), []
    a, _ = store.build("a", "a", 1, {}, {}, _producer("x", calls))
    a.file("data.txt").write_text("tampered")
    with pytest.raises(StaleArtifactError, match="corrupt"):
        store.load("a")
    _, reused = store.build("a", "a", 1, {}, {}, _producer("x", calls))
    assert not reused and store.load("a").file("data.txt").read_text() == "x"


def test_missing_and_incomplete(tmp_path):
    store = RunStore(tmp_path, "r")
    with pytest.raises(MissingArtifactError, match="climd score --run r"):
        store.load("score")
    store.path("score").mkdir(parents=True)
    (store.path("score") / "scores.csv").write_text("half")
    with pytest.raises(StaleArtifactError, match="incomplete"):
        store.load("score")


def test_failed_producer_leaves_previous_artifact_untouched(tmp_path):
    store, calls = RunStore(tmp_path, "r"), []
    store.build("a", "a", 1, {"v": 1}, {}, _producer("good", calls))

    def broken(out):
        (out / "data.txt").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.build("a", "a", 1, {"v": 2}, {}, broken)
    assert store.load("a").file("data.txt").read_text() == "good"
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["a"]


def test_killed_process_leaves_no_complete_looking_artifact(tmp_path):
    """SIGKILL in the middle of a stage: no artifact appears; the next run cleans up and builds."""
    script = textwrap.dedent(f"""
        import time
        from stages.store.artifacts import RunStore
        def produce(out):
            (out / "data.txt").write_text("partial")
            print("writing", flush=True)
            time.sleep(60)
        RunStore({str(tmp_path)!r}, "r").build("a", "a", 1, {{}}, {{}}, produce)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(tmp_path, "r")
    with pytest.raises(MissingArtifactError):
        store.load("a")
    # the killed writer's temporary folder and its lease (a dead process of this node) are left ...
    leftovers = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert len(leftovers) == 2 and leftovers[0].startswith(".tmp-a-"), leftovers
    assert leftovers[1] == leftovers[0] + ".lease" and (tmp_path / "r" / leftovers[0] / "data.txt").exists()
    # ... and the next build of that artifact removes both at once
    store.build("a", "a", 1, {}, {}, _producer("x", []))
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["a"]


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    atomic_write_text(target, json.dumps({"a": 2}))
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_dir_exception_removes_temp(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_meta_records_provenance(tmp_path):
    store = RunStore(tmp_path, "r")
    a, _ = store.build("a", "a", 3, {"gamma": 0.3}, {"data": {"path": "p", "fingerprint": "f"}},
                       _producer("x", []))
    meta = a.meta
    assert meta["params"] == {"gamma": 0.3} and meta["stage_version"] == 3
    assert meta["inputs"]["data"]["fingerprint"] == "f"
    assert meta["outputs"]["data.txt"]["bytes"] == 1
    assert {"climd", "python", "numpy"} <= set(meta["versions"])
    assert meta["started"] <= meta["finished"]


def test_bad_run_name(tmp_path):
    from stages.errors import UsageError

    with pytest.raises(UsageError):
        RunStore(tmp_path, "../escape")


def test_keys_ignore_options_at_their_defaults(tmp_path):
    """An option added later with its default value keeps the old key; a non-default value changes it."""
    from stages.store.artifacts import without_defaults

    store = RunStore(tmp_path, "r")
    old, _ = store.build("a", "a", 1, {"lr": 1.0}, {}, _producer("x", []), key_params={"lr": 1.0})
    grown = {"lr": 1.0, "new_option": "default"}
    same = without_defaults(grown, {"lr": 0.5, "new_option": "default"})
    assert same == {"lr": 1.0}
    again, reused = store.build("a", "a", 1, grown, {}, _producer("y", []), key_params=same)
    assert reused and again.key == old.key
    assert again.meta["params"] == {"lr": 1.0}                     # what the reused artifact recorded
    changed = without_defaults({"lr": 1.0, "new_option": "other"}, {"lr": 0.5, "new_option": "default"})
    _, reused = store.build("a", "a", 1, {"lr": 1.0, "new_option": "other"}, {}, _producer("z", []), key_params=changed)
    assert not reused
