"""`make reproduce-quick` as a test (2 replicates, 4 epochs): the omics (BRCA: Table 2, the variants, the
verdict, Table 4 and gamma) and Table 3 paths of scripts/reproduce.py, the tables, choices and plots
they must produce, and a rerun that rebuilds nothing. The Derm7pt and CFCML paths (image encodes, the
random-init control) are left to `make reproduce-quick`, which runs all of them, to keep the suite
short; Derm7pt encoding and CFCML run through the CLI in tests/data/test_derm7pt_layouts.py and
tests/models/test_cfcml.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, shared

pytestmark = pytest.mark.slow
DATASETS = ["brca", "table3"]


def _run(tmp_path):
    climd = Path(sys.executable).parent / "climd"
    assert climd.exists(), f"{climd} missing: install the project (make install)"
    env = {**os.environ, "CLIMD": str(climd), "CLIMD_CACHE": str(tmp_path / "cache"),
           "RESULTS": str(tmp_path / "results"), "SHARED": str(shared()), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "scripts/reproduce.py", "--quick", *DATASETS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


def _artifact_times(cache: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in cache.rglob("meta.json") if "/eval-" not in p.as_posix()}


def test_reproduce_quick_then_rerun(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-4000:]
    res = tmp_path / "results"
    for ds, tables in {"brca": ["table2-paper-lr", "table2-tuned-lr", "variants-paper-lr", "variants-tuned-lr",
                                "verdict", "table4-paper-lr", "table4-steps-paper-lr", "table4-tuned-lr",
                                "gamma-paper-lr"],
                       "table3": ["rosmap"]}.items():
        for table in tables:
            md = (res / ds / table / "report.md").read_text()
            made_by = "climd compare" if table == "verdict" else "climd report"    # the verdict: `climd compare`
            assert "| variant | n |" in md and f"Produced by: `{made_by}" in md, (ds, table)
    for ds in ("brca",):
        for plot in ("class-mix.png", "recall-paper-lr.png"):
            assert (res / ds / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    # every "tuned" or "best" row was chosen per replicate on validation, and the choice is listed
    verdict = json.loads((res / "brca" / "verdict" / "report.json").read_text())
    chosen = pd.read_csv(res / "brca" / "verdict" / "chosen.csv")
    assert {"curriculum-best", "noncurriculum-best", "baseline@tuned"} <= set(chosen["name"])
    assert len(chosen[chosen["name"] == "curriculum-best"]) == 2            # one choice per replicate
    assert all(not c.startswith("climd.random") for c in chosen[chosen["name"] == "curriculum-best"]["chosen"])
    paired = pd.read_csv(res / "brca" / "verdict" / "paired_vs_noncurriculum-best.csv")
    assert {"ci_low_f1_macro", "p_t_f1_macro", "p_wilcoxon_f1_macro", "p_holm_f1_macro"} <= set(paired.columns)
    assert paired["test"].iloc[0] == "nadeau-bengio"                     # replicates are resplits
    assert verdict["runs"] == ["brca-r0", "brca-r1"]
    table2 = pd.read_csv(res / "brca" / "table2-paper-lr" / "report.csv")
    assert {"baseline", "climd", "baseline+la", "baseline+smote", "logreg-balanced"} <= set(table2.variant)
    table3 = pd.read_csv(res / "table3" / "rosmap" / "report.csv")
    assert {f"{m}:{c}@tuned" for m in ("early-fusion", "multid", "dmib") for c in ("none", "climd", "random")} \
        == set(table3.variant)
    # resumable: a rerun reuses every artifact
    before = _artifact_times(tmp_path / "cache")
    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert _artifact_times(tmp_path / "cache") == before
