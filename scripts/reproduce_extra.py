"""The CFCML and Table 3 sections of scripts/reproduce.py (same protocol: replicate runs, every
choice per replicate on validation, tables on test)."""
from __future__ import annotations

import os
import time

from reproduce import RESULTS, SHARED, Config, climd, say

# Table 3 data sets, in the order they run (TABLE3_SETS="rosmap derm3" runs a subset). derm3 is Derm7pt
# with the paper's three modalities (image, metadata as a MiniLM-encoded sentence, 7-point table);
# derm3oh is the same with the metadata as one-hot columns instead of text.
TABLE3_SETS = os.environ.get("TABLE3_SETS", "rosmap derm3 derm3oh brca lgg kipan").split()
TABLE3_QUICK = os.environ.get("TABLE3_SETS", "rosmap").split()
DERM3 = {"derm3": "image,text,tabular", "derm3oh": "image,meta-onehot,tabular"}


def cfcml(_: str, cfg: Config) -> None:
    """CFCML against early fusion, each with and without the CLIMD curriculum, on both Derm7pt tasks.
    As the authors: 50 epochs, weight decay 1e-4, batch 64, the epoch with the best validation AUC kept;
    lr in {1e-4, 1e-3} chosen per replicate on validation AUC."""
    T = 4 if cfg.quick else 50
    model_opts = ["--model-option", "dim=16", "--model-option", "tokens=4"] if cfg.quick else []
    common = ["--seeds", cfg.seeds, "--lr", "1e-4,1e-3", "--weight-decay", "1e-4", "--batch-size", "64",
              "--select", "best-valid", "--select-metric", "auc_macro", "--epochs", str(T)]
    for name, task in (("dermnm", "nev-vs-mel"),) + ((("derm5", "diag5"),) if not cfg.quick else ()):
        t0 = time.time()
        say(name, f"CFCML ({task})")
        for k in cfg.seed_list():
            climd("encode", "--run", f"{name}-r{k}", "--data", str(SHARED / "Derm7pt_plus"), "--task", task,
                  "--resplit", str(k), "--image-stages", *cfg.img)
        runs, template = f"{name}-r*", f"{name}-r{{seed}}"
        climd("score", "--run", runs, *cfg.probe)
        climd("fit-dist", "--run", runs)
        climd("schedule", "--run", runs, "--epochs", str(T), "--tag", f"t{T}")
        for cur in ("none", "climd"):
            how = ["--curriculum", cur] + (["--schedule-tag", f"t{T}"] if cur == "climd" else [])
            climd("train", "--run", template, *common, *how, "--variant-prefix", f"early-fusion:{cur}")
            climd("train", "--run", template, *common, *how, "--model", "cfcml", *model_opts,
                  "--variant-prefix", f"cfcml:{cur}")
        for part, off in (("coarse", "fine"), ("fine", "coarse")):
            climd("train", "--run", template, *common, "--curriculum", "none", "--model", "cfcml", *model_opts,
                  "--model-option", f"{off}=false", "--variant-prefix", f"cfcml-{part}-only")
        climd("evaluate", "--run", runs, "--split", "valid")
        climd("evaluate", "--run", runs, "--split", "test")
        pick = lambda v: f"{v}@tuned={v}@lr*"   # noqa: E731
        models = ["early-fusion:none", "early-fusion:climd", "cfcml:none", "cfcml:climd"]
        climd("report", "--run", runs, "--variants", ",".join(f"{m}@tuned" for m in models),
              *[a for m in models for a in ("--choose", pick(m))], "--choose-metric", "auc_macro",
              "--reference", "early-fusion:none@tuned", "--reference", "cfcml:none@tuned",
              "--out", str(RESULTS / "cfcml" / name / "models"),
              "--title", f"{name} ({task}): early fusion vs CFCML, with and without CLIMD ({T} epochs)")
        parts = ["cfcml-coarse-only", "cfcml-fine-only", "cfcml:none"]
        climd("report", "--run", runs, "--variants", ",".join(f"{m}@tuned" for m in parts),
              *[a for m in parts for a in ("--choose", pick(m))], "--choose-metric", "auc_macro",
              "--reference", "cfcml:none@tuned", "--out", str(RESULTS / "cfcml" / name / "ablation"),
              "--title", f"{name} ({task}): CFCML ablation, no curriculum: coarse stage only, fine stage only, both")
        say(name, f"done in {(time.time() - t0) / 60:.1f} min")


def table3(_: str, cfg: Config) -> None:
    """Paper Table 3: Baseline (early fusion), Multi-D and DMIB, each without and with the CLIMD
    curriculum and with its random-order control, on the replicate runs of BRCA, KIPAN, LGG and
    ROSMAP (run `reproduce.py DATASET` first: it encodes and schedules them). Our recipe (batch 32,
    the schedule's epochs); lr in {1e-4 (the authors'), 1e-3} chosen per replicate on validation."""
    from reproduce import replicates

    sets = TABLE3_QUICK if cfg.quick else TABLE3_SETS
    small = (["--model-option", "hidden=16"] if cfg.quick else [])
    models = {"early-fusion": [], "multid": ["--model", "multid", *small],
              "dmib": ["--model", "dmib", *small, *(["--model-option", "bottleneck=8"] if cfg.quick else [])]}
    curricula = {"none": ["--curriculum", "none"], "climd": ["--curriculum", "climd"],
                 "random": ["--curriculum", "climd", "--schedule-tag", "random"]}
    for ds in sets:
        t0 = time.time()
        say(ds, "Table 3 (Multi-D, DMIB)")
        if ds in DERM3:
            for k in cfg.seed_list():
                climd("encode", "--run", f"{ds}-r{k}", "--data", str(SHARED / "Derm7pt_plus"), "--resplit", str(k),
                      "--derm-modalities", DERM3[ds], *cfg.img)
            runs = f"{ds}-r*"
            climd("score", "--run", runs, *cfg.probe)
            climd("fit-dist", "--run", runs)
            climd("schedule", "--run", runs, "--epochs", str(cfg.epochs))
            climd("schedule", "--run", runs, "--epochs", str(cfg.epochs), "--order", "random", "--tag", "random")
        else:
            runs = replicates(ds, cfg)               # reused when the data set's `climd compare` ran
        names = []
        for model, opts in models.items():
            for cur, how in curricula.items():
                name = f"{model}:{cur}"
                names.append(name)
                climd("train", "--run", f"{ds}-r{{seed}}", "--seeds", cfg.seeds, "--lr", "1e-4,1e-3",
                      "--epochs", str(cfg.epochs), *opts, *how, "--variant-prefix", name)
        climd("evaluate", "--run", runs, "--split", "valid")
        climd("evaluate", "--run", runs, "--split", "test")
        climd("report", "--run", runs, "--variants", ",".join(f"{n}@tuned" for n in names),
              *[a for n in names for a in ("--choose", f"{n}@tuned={n}@lr*")],
              *[a for m in models for a in ("--reference", f"{m}:none@tuned")],
              "--out", str(RESULTS / "table3" / ds),
              "--title", f"{ds}: Table 3 analog: early fusion, Multi-D and DMIB without and with CLIMD "
                         f"(and the random-order control), lr chosen per replicate on validation")
        say(ds, f"Table 3 done in {(time.time() - t0) / 60:.1f} min")


EXTRA = {"cfcml": cfcml, "table3": table3}
