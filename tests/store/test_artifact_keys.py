"""The cache is an API: a refactor must not change any stage's artifact names or keys.

``tests/store/artifact_keys.json`` was written by the code before the wave-3 package move (issue 21);
a small run of every stage must produce exactly those artifact paths with exactly those keys.
A change of a key is a deliberate format change: regenerate the file with
``CLIMD_WRITE_KEYS=1 pytest tests/store/test_artifact_keys.py`` and say why in the commit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import run_cli

EXPECTED = Path(__file__).parent / "artifact_keys.json"
STEPS = (
    ["encode"],
    ["score"],
    ["fit-dist"],
    ["schedule", "--epochs", "3"],
    ["train", "--curriculum", "climd", "--seeds", "0"],
    ["train", "--curriculum", "none", "--seeds", "0"],
    ["evaluate"],
    ["report", "--reference", "baseline"],
)


def _keys(run: Path) -> dict[str, str]:
    out = {}
    for meta in sorted(run.rglob("meta.json")):
        out[meta.parent.relative_to(run).as_posix()] = json.loads(meta.read_text())["key"]
    return out


def test_every_stage_keeps_its_artifact_names_and_keys(tmp_path):
    cache = tmp_path / "cache"
    for step in STEPS:
        run_cli("--no-progress", *step, "--run", "keys", cache_dir=cache)
    keys = _keys(cache / "keys")
    if os.environ.get("CLIMD_WRITE_KEYS"):
        EXPECTED.write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    assert keys == json.loads(EXPECTED.read_text())
