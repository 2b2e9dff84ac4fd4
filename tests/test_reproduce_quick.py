"""`make reproduce-quick` as a test: every code path of scripts/reproduce.sh (one seed, 4 epochs),
the tables, plots and validation choices it must produce, and a rerun that rebuilds nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, shared

pytestmark = pytest.mark.slow
DATASETS = ["brca", "derm7pt", "cfcml"]


def _run(tmp_path):
    climd = Path(sys.executable).parent / "climd"
    assert climd.exists(), f"{climd} missing: install the project (make install)"
    env = {**os.environ, "CLIMD": str(climd), "CLIMD_CACHE": str(tmp_path / "cache"),
           "RESULTS": str(tmp_path / "results"), "SHARED": str(shared())}
    return subprocess.run(["bash", "scripts/reproduce.sh", "--quick", *DATASETS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


def _artifact_times(cache: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in cache.rglob("meta.json") if "/eval-" not in p.as_posix()}


def test_reproduce_quick_then_rerun(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    res = tmp_path / "results"
    for ds, tables in {"brca": ["table2-paper-lr", "table2-tuned-lr", "variants-paper-lr", "variants-tuned-lr",
                                "table4-paper-lr", "table4-steps-paper-lr", "table4-tuned-lr", "gamma-paper-lr"],
                       "derm7pt": ["table2-paper-lr", "table4-paper-lr", "pretrained-vs-random"]}.items():
        for table in tables:
            md = (res / ds / table / "report.md").read_text()
            assert "| variant | n |" in md and "Produced by: `climd report" in md
        for plot in ("class-mix.png", "recall-paper-lr.png", "recall-tuned-lr.png"):
            assert (res / ds / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    # every variant the validation split chose is what the tuned table reports, and nothing else
    chosen = json.loads((res / "brca" / "selection.json").read_text())
    tuned = pd.read_csv(res / "brca" / "table2-tuned-lr" / "report.csv")
    for method in ("baseline", "climd", "climd+steps", "baseline+smote", "baseline+wce"):
        assert chosen[method]["split"] == "valid" and chosen[method]["chosen"] in set(tuned.variant)
    table2 = pd.read_csv(res / "brca" / "table2-paper-lr" / "report.csv")
    assert {"baseline", "climd", "baseline+vae", "logreg", "smote-logreg"} <= set(table2.variant)
    models = pd.read_csv(res / "cfcml" / "dermnm" / "models" / "report.csv")
    assert len(models) == 4 and any(v.startswith("cfcml:climd@") for v in models.variant)
    assert len(pd.read_csv(res / "cfcml" / "dermnm" / "ablation" / "report.csv")) == 3
    # resumable: a rerun reuses every artifact
    before = _artifact_times(tmp_path / "cache")
    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert _artifact_times(tmp_path / "cache") == before
