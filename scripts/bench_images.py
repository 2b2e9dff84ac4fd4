"""Image encode throughput rows of `make bench` (scripts/bench.py --images N): end to end against the
decode-only and forward-only limits of this machine, EfficientNet-Lite0 at 224 px, on the synthetic
set of scripts/make_synthetic_images.py (made on first use).

CPU rows: decode-only = PIL decode + resize + normalise of the subset by as many threads as climd may
use; forward-only = the channels-last forward pass on random batches with all those threads (and the
contiguous NCHW pass beside it); end to end = a fresh `climd encode --device cpu` process (its
encoding loop's images/s, from the artifact). Goal: end to end >= 80 % of min(decode, forward).
GPU rows (only with CUDA; else "unmeasured (no GPU)"): decode-only = batched nvJPEG decode + resize
on the GPU of bytes already in memory; forward-only = fp16 autocast, channels-last; end to end =
`climd encode --device cuda`. Goal: end to end >= 2,000 img/s on an H100-class GPU.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "bench-data" / "synthetic"
SIZE = 224


def ensure_set(n: int, env: dict) -> Path:
    """A manifest of the first ``n`` synthetic images (the set is made when it has fewer)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_synthetic_images as synth

    have = 0
    if (SYNTHETIC / "manifest.csv").exists():
        have = sum(1 for _ in open(SYNTHETIC / "manifest.csv")) - 1
    if have < n:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_images.py"), "--n", str(max(n, have))],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    return synth.subset(SYNTHETIC, n)


def _paths(manifest: Path) -> list[Path]:
    import csv

    with open(manifest.with_suffix(".csv"), newline="") as fh:
        return [manifest.parent / r["image"] for r in csv.DictReader(fh)]


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "?"


def end_to_end(manifest: Path, device: str, batch: int, env: dict) -> tuple[float, float]:
    """(images/s of the encoding loop, wall seconds of the whole process) of a fresh `climd encode`."""
    cmd = [sys.executable, "-m", "climd_cli", "-q", "--no-progress", "encode", "--run", f"bench-img-{device}",
           "--data", str(manifest), "--device", device, "--batch-size", str(batch), "--force", "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]
    return summary["modalities"]["derm"]["images_per_s"], wall


def cpu_limits(paths: list[Path], encoder, threads: int, batch: int = 32) -> dict:
    import torch

    from stages.encoders import image
    from stages.encoders import image_batch

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(lambda p: image.load_image(p, encoder), paths):
            pass
    decode = len(paths) / (time.perf_counter() - t0)
    x = torch.randn(batch, 3, SIZE, SIZE)
    rates = {}
    steps = max(2, len(paths) // batch // 2)
    for fmt in ("contiguous", "channels_last"):
        model = encoder.model.to(memory_format=getattr(torch, f"{fmt}_format" if fmt == "contiguous" else fmt))
        xx = x.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else x.contiguous()
        with torch.inference_mode():
            model.forward_features(xx)                            # warm-up: oneDNN picks its kernels
            t0 = time.perf_counter()
            for _ in range(steps):
                model.forward_features(xx)
        rates[fmt] = steps * batch / (time.perf_counter() - t0)
    image_batch.to_channels_last(encoder.model, "cpu")
    return {"decode": decode, "forward": rates["channels_last"], "forward_nchw": rates["contiguous"]}


def gpu_limits(paths: list[Path], encoder, batch: int = 256) -> dict:
    import torch

    from stages.encoders import image_batch

    data = [image_batch.read_batch(paths[s:s + batch], encoder) for s in range(0, len(paths), batch)]
    image_batch.decode_jpegs(data[0][0], encoder, "cuda")          # warm-up (nvJPEG handles)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for jpegs, _ in data:
        image_batch.decode_jpegs(jpegs, encoder, "cuda")
    torch.cuda.synchronize()
    decode = sum(len(j) for j, _ in data) / (time.perf_counter() - t0)
    model = image_batch.to_channels_last(encoder.model, "cuda")
    torch.backends.cudnn.benchmark = True
    x = torch.randn(batch, 3, SIZE, SIZE, device="cuda")
    steps = 20
    image_batch.forward(model, x, amp=image_batch.AMP_DTYPE)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        image_batch.forward(model, x, amp=image_batch.AMP_DTYPE)
    torch.cuda.synchronize()
    return {"decode": decode, "forward": steps * batch / (time.perf_counter() - t0)}


def limits(kind: str, manifest: Path, env: dict) -> dict:
    """The decode-only and forward-only limits, measured by a fresh process (as `climd` runs: its
    thread settings are made before torch starts; set afterwards, the forward pass ran 2x slower here)."""
    out = subprocess.run([sys.executable, str(Path(__file__)), kind, str(manifest)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"failed: the {kind} limits\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def image_section(env: dict, n: int, gpu_n: int, lines: list[str]) -> None:
    import torch

    manifest = ensure_set(n, env)
    lim = limits("cpu", manifest, env)
    cpus = lim["threads"]
    e2e, wall = end_to_end(manifest, "cpu", 32, env)
    floor = min(lim["decode"], lim["forward"])
    lines += ["", f"### Image encode throughput (EfficientNet-Lite0, {SIZE} px, synthetic Derm7pt set)", "",
              "| device | row | images | img/s | note |", "|---|---|---|---|---|",
              f"| cpu ({cpus} threads) | decode + resize only (PIL, {cpus} threads) | {n} | {lim['decode']:,.0f} | limit |",
              f"| cpu | forward only, channels-last (batch 32) | | {lim['forward']:,.1f} | limit |",
              f"| cpu | forward only, contiguous NCHW (batch 32) | | {lim['forward_nchw']:,.1f} | "
              f"channels-last is {lim['forward'] / lim['forward_nchw']:.2f}x |",
              f"| cpu | end to end, `climd encode --device cpu` (loop) | {n} | {e2e:,.1f} | "
              f"{100 * e2e / floor:.0f} % of min(limits) (goal >= 80 %); process wall {wall:.1f} s |"]
    if not torch.cuda.is_available():
        lines += ["| cuda | end to end / GPU decode only / forward only | | unmeasured (no GPU) | goal >= 2,000 img/s |"]
        return
    gpu_manifest = ensure_set(gpu_n, env)
    glim = limits("cuda", gpu_manifest, env)
    g2e, gwall = end_to_end(gpu_manifest, "cuda", 256, env)
    lines += [f"| cuda ({glim['name']}) | decode + resize only (nvJPEG, batch 256) | {gpu_n} | {glim['decode']:,.0f} | limit |",
              f"| cuda | forward only, fp16 channels-last (batch 256) | | {glim['forward']:,.0f} | limit |",
              f"| cuda | end to end, `climd encode --device cuda --batch-size 256` (loop) | {gpu_n} | {g2e:,.0f} | "
              f"goal >= 2,000; {100 * g2e / min(glim['decode'], glim['forward']):.0f} % of min(limits); "
              f"process wall {gwall:.1f} s |"]


def _measure(kind: str, manifest: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from stages.runtime import threads

    n = threads.configure()                      # before torch is imported, as every climd command does
    import torch

    from stages.encoders import image

    threads.apply_to_torch()
    encoder = image.build("efficientnet-lite0", None, SIZE)
    paths = _paths(manifest)
    if kind == "cpu":
        return {"threads": n, **cpu_limits(paths, encoder, n)}
    return {"name": torch.cuda.get_device_name(0), **gpu_limits(paths, encoder)}


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], Path(sys.argv[2]))))
