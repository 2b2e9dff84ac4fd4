"""A full disk, a read-only cache or a forbidden folder: one message naming the path, exit code 6,
no traceback, and no temporary folder left behind (real mounts in a private mount namespace)."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _in_mount_namespace(mount_opts: str, target, climd_args: list[str]):
    script = (f"mount -t tmpfs -o {mount_opts} none {target} && "
              f"PYTHONPATH={ROOT} {sys.executable} -m climd_cli {' '.join(climd_args)}; echo EXIT=$?; ls -a {target}")
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120)


def test_read_only_cache_is_exit_6_naming_the_path(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = _in_mount_namespace("ro,size=1m", mnt, ["encode", "--run", "x", "--cache-dir", str(mnt)])
    assert "EXIT=6" in r.stdout, r.stdout + r.stderr
    assert "read-only" in r.stderr and str(mnt) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("size", ["64k", "600k"])
def test_full_disk_is_exit_6_and_leaves_no_temporary_folder(tmp_path, size):
    mnt = tmp_path / "full"
    mnt.mkdir()
    r = _in_mount_namespace(f"size={size}", mnt, ["encode", "--run", "x", "--cache-dir", str(mnt)])
    assert "EXIT=6" in r.stdout, r.stdout + r.stderr
    assert "disk is full" in r.stderr and "Traceback" not in r.stderr
    leftovers = [line for line in r.stdout.splitlines() if line.startswith(".tmp") or "tmp-" in line]
    assert leftovers == [], r.stdout
