"""A small corpus of broken inputs (tables, manifests, CT/MRI volumes), each run through `climd encode` in a fresh process.

    python scripts/broken_inputs.py OUT_DIR [--only CASE,CASE] [--list]

Each case is a folder ``OUT_DIR/<case>/`` (its data plus ``expected.json``: exit code and the file
name the message must contain). Prints one row per case: case, exit code (expected), traceback
yes/no, the first line of the message. Exits 1 when a case deviates: another exit code, a
traceback, or a failure message that does not name the offending file. The ``ok-*`` cases are
valid controls that must encode (exit 0).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
N = 24


# -- generators ------------------------------------------------------------------------------------
def _tcga(root: Path, ids=None) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    y = np.arange(N) % 2
    ids = ids or [f"TCGA-{i:03d}" for i in range(N)]
    pd.DataFrame({"patient": ids, "target": y}).to_csv(root / "target.csv", index=False)
    pd.DataFrame(rng.normal(size=(N, 4)) + y[:, None], index=pd.Index(ids, name="patient"),
                 columns=[f"g{j}" for j in range(4)]).to_csv(root / "rna.csv")
    return root


def _mogonet(root: Path) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for part, n in (("tr", 16), ("te", 8)):
        y = np.arange(n) % 2
        np.savetxt(root / f"1_{part}.csv", rng.normal(size=(n, 3)) + y[:, None], delimiter=",")
        np.savetxt(root / f"labels_{part}.csv", y, fmt="%d")
    return root


def _manifest(root: Path, extra: str = "", modalities: str | None = None) -> Path:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"s{i:02d}" for i in range(N)]
    pd.DataFrame({"sid": ids, "dx": np.array(["no", "yes"])[np.arange(N) % 2],
                  "age": rng.normal(50, 9, N)}).to_csv(root / "samples.csv", index=False)
    pd.DataFrame(rng.normal(size=(N, 3)), index=pd.Index(ids, name="sid"), columns=["a", "b", "c"]).to_csv(root / "labs.csv")
    mods = modalities or "  labs: {type: tabular, file: labs.csv}\n  vit: {type: tabular, columns: [age]}\n"
    (root / "m.yaml").write_text("table: samples.csv\nid_column: sid\nlabel_column: dx\n" + extra + "modalities:\n" + mods)
    return root / "m.yaml"


def _edit(path: Path, fn) -> None:
    path.write_text(fn(path.read_text()))


# -- the cases: name -> (builder(folder) -> (data, extra args), expected exit code, file to name) -----
def _c(fn, code, names):
    return fn, code, names


def _empty(rel):
    def build(d):
        data = _tcga(d)
        (data / rel).write_text("")
        return data, []
    return build


def _header_only(rel):
    def build(d):
        data = _tcga(d)
        _edit(data / rel, lambda t: t.splitlines()[0] + "\n")
        return data, []
    return build


def _split_empty(d):
    data = _tcga(d / "data")
    (d / "split.csv").write_text("")
    return data, ["--split-file", str(d / "split.csv")]


def _semicolon(d):
    data = _tcga(d)
    frame = pd.read_csv(data / "rna.csv")
    frame.to_csv(data / "rna.csv", sep=";", index=False)
    return data, []


def _dup_target(d):
    data = _tcga(d)
    _edit(data / "target.csv", lambda t: t.replace("TCGA-001,", "TCGA-000,"))
    return data, []


def _huge_test_value(d):
    data = _mogonet(d)
    lines = (data / "1_te.csv").read_text().splitlines()
    lines[0] = "1e300," + lines[0].split(",", 1)[1]
    (data / "1_te.csv").write_text("\n".join(lines) + "\n")
    return data, []


def _inf_te(d):
    data = _mogonet(d)
    _edit(data / "1_te.csv", lambda t: "inf," + t.split(",", 1)[1])
    return data, []


def _empty_labels_tr(d):
    data = _mogonet(d)
    (data / "labels_tr.csv").write_text("")
    return data, []


def _id_not_first(d):
    data = _tcga(d)
    frame = pd.read_csv(data / "rna.csv")
    frame[["g0", "patient", "g1", "g2", "g3"]].to_csv(data / "rna.csv", index=False)
    return data, []


def _spaces_ok(d):
    return _tcga(d, ids=[f"pt {i:02d}" for i in range(N)]), []


def _near_max_ok(d):
    data = _mogonet(d)
    for part in ("tr", "te"):
        x = np.loadtxt(data / f"1_{part}.csv", delimiter=",")
        x[:, 0] = np.where(np.arange(len(x)) % 2, 1.7e308, -1.6e308)
        np.savetxt(data / f"1_{part}.csv", x, delimiter=",")
    return data, []


VOLUME_ARGS = ["--random-init", "--image-size", "32", "--volume-slices", "1", "--volume-spacing", "3"]


def _volumes(bad: str | None, extra: list[str] = ()):
    """A manifest whose `scan` volumes are copies of nibabel's 4x5x7 example, sample s00's replaced by
    the ``bad`` kind of volume (files from the nibabel and pydicom wheels, or written here)."""
    def build(d: Path):
        import shutil

        import nibabel
        import pydicom

        nib_data = Path(nibabel.__file__).parent / "tests" / "data"
        dcm = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
        (d / "vol").mkdir(parents=True, exist_ok=True)
        shutil.copy(nib_data / "standard.nii.gz", d / "vol" / "ok.nii.gz")
        first = "ok.nii.gz"
        if bad == "4d":
            first = "frames.nii.gz"
            shutil.copy(nib_data / "example4d.nii.gz", d / "vol" / first)
        elif bad == "two-series":
            first = "series"
            shutil.copytree(dcm / "98892003" / "MR2", d / "vol" / first)
        elif bad == "nan":
            first = "nan.nii.gz"
            x = np.zeros((4, 4, 4), np.float32)
            x[1, 1, 1] = np.nan
            nibabel.Nifti1Image(x, np.eye(4)).to_filename(str(d / "vol" / first))
        ids = [f"s{i:02d}" for i in range(N)]
        pd.DataFrame({"sid": ids, "dx": np.array(["no", "yes"])[np.arange(N) % 2],
                      "scan": [first] + ["ok.nii.gz"] * (N - 1)}).to_csv(d / "samples.csv", index=False)
        (d / "m.yaml").write_text("table: samples.csv\nid_column: sid\nlabel_column: dx\n"
                                  "modalities:\n  scan: {type: volume, column: scan, root: vol}\n")
        return d / "m.yaml", VOLUME_ARGS + list(extra)
    return build


CASES = {
    "ok-tcga": _c(lambda d: (_tcga(d), []), 0, []),
    "ok-manifest": _c(lambda d: (_manifest(d), []), 0, []),
    "ok-ids-with-spaces": _c(_spaces_ok, 0, []),
    "ok-values-near-1e308": _c(_near_max_ok, 0, []),
    "empty-modality": _c(_empty("rna.csv"), 3, ["rna.csv"]),
    "empty-target": _c(_empty("target.csv"), 3, ["target.csv"]),
    "header-only-modality": _c(_header_only("rna.csv"), 3, ["rna.csv"]),
    "header-only-target": _c(_header_only("target.csv"), 3, ["target.csv"]),
    "empty-split-file": _c(_split_empty, 3, ["split.csv"]),
    "semicolon-csv": _c(_semicolon, 3, ["rna.csv"]),
    "duplicate-id-in-target": _c(_dup_target, 3, ["target.csv"]),
    "id-not-first-column": _c(_id_not_first, 3, ["rna.csv", "patient"]),
    "mogonet-inf-in-test": _c(_inf_te, 3, ["1_te.csv"]),
    "mogonet-empty-labels-tr": _c(_empty_labels_tr, 3, ["labels_tr.csv"]),
    "mogonet-huge-test-value": _c(_huge_test_value, 3, ["1_te.csv"]),
    "manifest-unsafe-modality-name": _c(lambda d: (_manifest(d, modalities="  lab/s: {type: tabular, file: labs.csv}\n"), []), 2, ["m.yaml"]),
    "manifest-key-typo": _c(lambda d: (_manifest(d, extra="split_colum: split\n"), []), 3, ["m.yaml", "split_column"]),
    "manifest-modalities-list": _c(lambda d: (_manifest(d, modalities="  - labs\n"), []), 3, ["m.yaml"]),
    "manifest-table-int": _c(lambda d: (_edit_manifest(d, "table: samples.csv", "table: 5"), []), 3, ["m.yaml"]),
    "manifest-empty": _c(lambda d: (_edit_manifest(d, None, ""), []), 3, ["m.yaml"]),
    "ok-volume-nifti": _c(_volumes(None), 0, []),
    "volume-4d": _c(_volumes("4d"), 3, ["frames.nii.gz"]),
    "volume-two-dicom-series": _c(_volumes("two-series"), 3, ["series"]),
    "volume-nan-voxels": _c(_volumes("nan"), 3, ["nan.nii.gz"]),
    "volume-over-memory-budget": _c(_volumes(None, ["--volume-memory-mb", "0.001"]), 3, ["ok.nii.gz"]),
}


def _edit_manifest(d: Path, old, new) -> Path:
    path = _manifest(d)
    path.write_text(new if old is None else path.read_text().replace(old, new))
    return path


# -- running ---------------------------------------------------------------------------------------
def run_case(name: str, folder: Path, cache: Path) -> dict:
    build, code, names = CASES[name]
    folder.mkdir(parents=True, exist_ok=True)
    data, extra = build(folder)
    (folder / "expected.json").write_text(json.dumps({"exit_code": code, "names": names}) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "climd_cli", "encode", "--run", name, "--data", str(data),
                           "--cache-dir", str(cache), *extra], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    message = next((ln for ln in lines if ln.startswith(("error:", "encode:"))), lines[0] if lines else "")
    traceback = "Traceback" in proc.stderr or "Traceback" in proc.stdout
    named = all(n in proc.stderr for n in names)
    ok = proc.returncode == code and not traceback and (code == 0 or named)
    return {"case": name, "exit": proc.returncode, "expected": code, "traceback": traceback, "named": named,
            "ok": ok, "message": message[:160], "stderr_chars": len(proc.stderr)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for the corpus (and a cache/ inside it)")
    ap.add_argument("--only", help="comma-separated case names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    names = args.only.split(",") if args.only else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; see --list")
    rows = [run_case(n, args.out / n, args.out / "cache") for n in names]
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  exit (want)  traceback  ok  message")
    for r in rows:
        print(f"{r['case']:<{width}}  {r['exit']:>4} ({r['expected']:>2})  {'yes' if r['traceback'] else 'no':<9}  "
              f"{'ok' if r['ok'] else 'NO'}  {r['message']}")
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
