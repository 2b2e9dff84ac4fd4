"""Item 1: symbolic links planted in a cache never lead climd to write, empty or read outside it."""
import os

import pytest

TRAIN = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--seeds", "0-1", "--variant", "v",
         "--jobs", "1"]


@pytest.fixture
def outside(tmp_path):
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    (out / "precious.txt").write_text("p")
    (out / "sub" / "keep.txt").write_text("k")
    return out


def _tree(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


def test_a_replica_folder_linked_outside_is_refused_and_its_target_untouched(cli, ros, outside):
    assert cli(*TRAIN).exit_code == 0
    seed0 = ros / "train" / "v" / "seed0"
    before = _tree(outside)
    for entry in seed0.iterdir():
        entry.unlink()
    seed0.rmdir()
    seed0.symlink_to(outside)
    for args in (TRAIN + ["--force"], TRAIN):
        r = cli(*args)
        assert r.exit_code == 5 and str(seed0) in r.stderr and "symbolic link" in r.stderr, r.output
        assert "Traceback" not in r.output
        assert _tree(outside) == before
    r = cli("evaluate", "--run", "ros", "--variant", "v")
    assert r.exit_code != 0 and _tree(outside) == before
    seed0.unlink()
    assert cli(*TRAIN).exit_code == 0 and (seed0 / "meta.json").is_file()


def test_a_link_inside_a_replica_folder_is_removed_not_followed_by_force(cli, ros, outside):
    assert cli(*TRAIN).exit_code == 0
    before = _tree(outside)
    seed0 = ros / "train" / "v" / "seed0"
    (seed0 / "sub").symlink_to(outside / "sub")
    (seed0 / "file-link").symlink_to(outside / "precious.txt")
    r = cli(*TRAIN, "--force")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert _tree(outside) == before
    assert not os.path.lexists(seed0 / "sub") and not os.path.lexists(seed0 / "file-link")


def test_an_output_replaced_by_a_link_is_corrupt_not_read(cli, ros, tmp_path):
    assert cli(*TRAIN).exit_code == 0
    model = ros / "train" / "v" / "seed0" / "model.safetensors"
    secret = tmp_path / "secret"
    secret.write_bytes(model.read_bytes())          # same bytes: only the link gives it away
    model.unlink()
    model.symlink_to(secret)
    r = cli("evaluate", "--run", "ros", "--variant", "v", "--seed", "0")
    assert r.exit_code == 5 and "model.safetensors" in r.stderr and "Traceback" not in r.output, r.output


def test_a_linked_run_or_stage_folder_is_refused(cli, ros, tmp_path):
    real = tmp_path / "elsewhere"
    (ros / "score").rename(real)
    (ros / "score").symlink_to(real)
    r = cli("schedule", "--run", "ros", "--epochs", "12", "--force")
    assert r.exit_code == 5 and "symbolic link" in r.stderr and str(ros / "score") in r.stderr, r.output
