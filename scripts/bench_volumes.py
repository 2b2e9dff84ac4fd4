"""Bench rows for CT volumes: `climd encode` volumes/s on the synthetic MLLC-shaped set, with the time
split into decode (nibabel, in a background thread that overlaps the rest), resample + slice +
window (torch, on the encode device) and the forward pass (EfficientNet-Lite0, 224 px, 24 slices per
volume: 8 per plane x 3 planes). CPU rows are measured; CUDA rows only where a GPU is present
(otherwise "unmeasured (no GPU)").

    python scripts/bench.py --only-volumes --volumes 20      # or: python scripts/bench_volumes.py 20
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def ensure_set(n: int) -> Path:
    """The synthetic NIfTI set of ``n`` patients under bench-data/ (made once, git-ignored)."""
    sys.path.insert(0, str(ROOT))
    from make_synthetic_volumes import make

    out = ROOT / "bench-data" / f"synthetic-volumes-{n}"
    manifest = out / "manifest.yaml"
    return manifest if manifest.is_file() else make(out, n=n)


def measure(manifest: Path, device: str, env: dict, batch_size: int = 32) -> dict:
    """One fresh `climd encode` of the volume modality (plus the labs, which cost nothing); its wall
    time and the encode record's split."""
    from bench import climd, run

    cache = Path(tempfile.mkdtemp(prefix="climd-vol-", dir=env.get("CLIMD_CACHE")))
    wall, rss, _ = run(climd("encode", "--run", "vol", "--data", str(manifest), "--modalities", "ct,labs",
                             "--device", device, "--batch-size", str(batch_size), "--force"),
                       {**env, "CLIMD_CACHE": str(cache)})
    meta = json.loads((cache / "vol" / "encode" / "meta.json").read_text())
    ct = meta["summary"]["modalities"]["ct"]
    return {"wall": wall, "rss_mb": rss, "n": ct["shape"][0], "rate": ct["volumes_per_s"],
            "seconds": ct["seconds"], **ct["timing_s"], "slices": ct["slices_per_volume"], "size": ct["image_size"]}


def volume_section(env: dict, n: int, lines: list[str]) -> None:
    import torch

    n = max(n, 20)                 # fewer leaves the smallest class (15 %) without 2 training volumes
    manifest = ensure_set(n)
    cpu = measure(manifest, "cpu", env)
    lines += ["", f"### Volume encode throughput (synthetic CT set, 48 x 48 x 26-32 voxels resampled to 1.5 mm, "
                  f"{cpu['slices']} slices per volume at {cpu['size']} px, EfficientNet-Lite0)", "",
              "| device | row | volumes | volumes/s | note |", "|---|---|---|---|---|"]
    sys.path.insert(0, str(ROOT))
    from stages.runtime import threads

    lines += _rows(f"cpu ({threads.allowed_cpus()} threads)", cpu)
    if not torch.cuda.is_available():
        lines += ["| cuda | end to end / resample / forward | | unmeasured (no GPU) | |"]
        return
    lines += _rows(f"cuda ({torch.cuda.get_device_name(0)})", measure(manifest, "cuda", env, 96))


def _rows(device: str, m: dict) -> list[str]:
    limit = max(("decode", "resample", "forward"), key=lambda k: m[k])

    def rate(seconds):
        return f"{m['n'] / seconds:,.2f}" if seconds > 0 else "-"

    return [f"| {device} | decode only (nibabel, background thread) | {m['n']} | {rate(m['decode'])} | "
            f"{m['decode']:.2f} s, overlaps the rows below |",
            f"| {device} | resample + slice + window only (torch) | | {rate(m['resample'])} | {m['resample']:.2f} s |",
            f"| {device} | forward only ({m['slices']} slices per volume) | | {rate(m['forward'])} | {m['forward']:.2f} s |",
            f"| {device} | end to end, `climd encode` loop | {m['n']} | {m['rate']:,.2f} | {m['seconds']:.2f} s in the loop; "
            f"process wall {m['wall']:.1f} s, peak RSS {m['rss_mb']:,.0f} MB; limit: {limit} "
            f"({100 * m[limit] / max(m['seconds'], 1e-9):.0f} % of the loop) |"]


if __name__ == "__main__":
    import os

    lines: list[str] = []
    volume_section({**os.environ, "PYTHONPATH": str(ROOT)}, int(sys.argv[1]) if len(sys.argv) > 1 else 20, lines)
    print("\n".join(lines))
