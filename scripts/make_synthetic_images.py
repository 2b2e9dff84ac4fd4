"""A synthetic image set for encode throughput, made from the Derm7pt images (`make bench-images`).

    python scripts/make_synthetic_images.py [--n 20000] [--out bench-data/synthetic] [--source DIR]

Each image is a random crop (40-100 % of the area, aspect 3:4 to 4:3) of a random Derm7pt image,
flipped and rotated by a multiple of 90 degrees at random, resized to a random square side of
224-448 px and written as a JPEG (quality 90), in folders of 1,000. The label is the diagnosis of
the source image, coarsened to melanoma / nevus / other; 70 % of the rows are `train`, 30 % `test`. `manifest.yaml` (written last) makes
the set readable by `climd encode --data bench-data/synthetic/manifest.yaml`; `subset(N)` writes a
manifest of the first N rows. The folder is git-ignored. Deterministic for a given --seed;
existing images are kept, so an interrupted run continues.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "Derm7pt_plus"
DEFAULT_OUT = ROOT / "bench-data" / "synthetic"
PER_FOLDER = 1000


def sources(source: Path) -> list[tuple[Path, str]]:
    """(image, diagnosis) of every Derm7pt image named in meta/meta.csv (paths matched case-insensitively)."""
    images = {p.relative_to(source / "images").as_posix().lower(): p
              for p in (source / "images").rglob("*") if p.is_file()}
    out = []
    with open(source / "meta" / "meta.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            hit = images.get(row["derm"].lower())
            if hit is not None:
                out.append((hit, coarse(row["diagnosis"])))
    if not out:
        sys.exit(f"no images of {source / 'meta' / 'meta.csv'} found under {source / 'images'}")
    return out


def coarse(diagnosis: str) -> str:
    """Three frequent classes (the rare Derm7pt diagnoses would leave classes without training rows)."""
    d = diagnosis.lower()
    return "melanoma" if "melanoma" in d else "nevus" if "nevus" in d else "other"


def plan(n: int, pool: list[tuple[Path, str]], seed: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        src, diagnosis = pool[int(rng.integers(len(pool)))]
        area, aspect = rng.uniform(0.4, 1.0), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        rows.append({"sample_id": f"syn{i:06d}", "diagnosis": diagnosis,
                     "split": "train" if rng.random() < 0.7 else "test",
                     "image": f"{i // PER_FOLDER:03d}/syn{i:06d}.jpg", "source": str(src),
                     "area": area, "aspect": aspect, "cx": rng.random(), "cy": rng.random(),
                     "flip": int(rng.integers(2)), "rot": int(rng.integers(4)), "side": int(rng.integers(224, 449))})
    return rows


def make(row: dict, out: Path) -> None:
    from PIL import Image

    target = out / row["image"]
    if target.exists():
        return
    with Image.open(row["source"]) as img:
        img = img.convert("RGB")
        w, h = img.size
        cw = min(w, round((row["area"] * w * h * row["aspect"]) ** 0.5))
        ch = min(h, round((row["area"] * w * h / row["aspect"]) ** 0.5))
        left, top = round(row["cx"] * (w - cw)), round(row["cy"] * (h - ch))
        img = img.crop((left, top, left + cw, top + ch))
        if row["flip"]:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if row["rot"]:
            img = img.rotate(90 * row["rot"], expand=True)
        img = img.resize((row["side"], row["side"]), Image.BILINEAR)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        img.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, target)


def _make_chunk(args) -> int:
    rows, out = args
    for row in rows:
        make(row, out)
    return len(rows)


def write_manifest(out: Path, rows: list[dict], name: str = "manifest") -> Path:
    table = out / f"{name}.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "diagnosis", "split", "image"])
        for r in rows:
            writer.writerow([r["sample_id"], r["diagnosis"], r["split"], r["image"]])
    manifest = out / f"{name}.yaml"
    manifest.write_text(f"name: synthetic-derm\ntable: {table.name}\nid_column: sample_id\nlabel_column: diagnosis\n"
                        "split_column: split\nmodalities:\n  derm: {type: image, column: image}\n")
    return manifest


def subset(out: Path, n: int) -> Path:
    """A manifest of the first ``n`` rows of the set in ``out`` (for the bench)."""
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    if len(rows) < n:
        sys.exit(f"{out} has only {len(rows)} images; make more with scripts/make_synthetic_images.py --n {n}")
    return write_manifest(out, rows, f"subset-{n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: the CPUs climd may use)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from stages.runtime import threads

    rows = plan(args.n, sources(args.source), args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = [(rows[i:i + 250], args.out) for i in range(0, len(rows), 250)]
    done = 0
    with ProcessPoolExecutor(max_workers=args.workers or threads.allowed_cpus()) as pool:
        for count in pool.map(_make_chunk, chunks):
            done += count
            print(f"\r{done}/{len(rows)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(write_manifest(args.out, rows))


if __name__ == "__main__":
    main()
