"""train and evaluate."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, ForceOpt, JsonOpt, ThreadsOpt, command, command_line, info, runs

CUR, OPT, IMB, SEEDS, MOD, PERF = "Curriculum", "Optimisation", "Imbalance losses", "Seeds", "Model", "Performance"

TRAIN_EPILOG = """
Examples:

  climd train --run brca-s0 --curriculum climd --seed 0            # CLIMD (needs `climd schedule`)

  climd train --run brca-s0 --curriculum none --seeds 0-4 --jobs 2 # the paper's Baseline, 5 seeds

  climd train --run 'brca-s{seed}' --seeds 0-4 --jobs 2             # split k with training seed k

  climd train --run brca-s0 --curriculum none --loss focal         # Table 2 baselines
  climd train --run brca-s0 --curriculum none --resample smote

  climd train --run brca-s0 --curriculum climd --budget steps --finish-epochs 20

  climd train --run brca-s0 --curriculum dsrmc --seeds 0-4        # DSRMC (Zhu et al. 2025), no schedule

  # SLURM array: sbatch --array=0-4 --wrap "climd -q train --run brca --seed-from-env SLURM_ARRAY_TASK_ID"

The variant name (artifact folder train/<variant>/seed<k>/) is made from the options unless
--variant is given: baseline, climd, baseline+wce, climd+steps+finish20, cfcml-climd, ...
"""


def _floats(text: str, flag: str) -> list[float]:
    from stages.errors import UsageError

    try:
        return list(dict.fromkeys(float(v) for v in text.split(",") if v.strip()))   # unique, in order
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a number or a comma-separated list")


def _model_options(items: list[str]) -> dict:
    from stages.errors import UsageError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--model-option {item!r} is not KEY=VALUE")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


@command
def train(
    run: Annotated[str, typer.Option("--run", "-r", help="Run name; may contain {seed} to pair split k with seed k ('brca-s{seed}').", rich_help_panel="Cache")] = DEFAULT_RUN,
    curriculum: Annotated[str, typer.Option(help="climd | none (whole training split every epoch) | a --pacing of `climd schedule` | dsrmc (batches ordered easy->hard by the loss of the model at the epoch's start; needs no schedule).", rich_help_panel=CUR)] = "climd",
    schedule_tag: Annotated[Optional[str], typer.Option(help="Use schedule.<TAG> (default: schedule for climd, schedule.<pacing> otherwise).", rich_help_panel=CUR)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 100; with a curriculum: the schedule's T).", rich_help_panel=CUR)] = None,
    budget: Annotated[str, typer.Option(help="epochs: one pass over D_t per epoch (paper) | steps: as many optimizer steps per epoch as a full-data epoch.", rich_help_panel=CUR)] = "epochs",
    finish_epochs: Annotated[int, typer.Option(help="Extra full-data epochs after the curriculum.", rich_help_panel=CUR)] = 0,
    dsrmc_pace: Annotated[float, typer.Option(help="--curriculum dsrmc: epoch t trains on the ceil(t N_b / (PACE T)) + 1 easiest of N_b batches, so every batch from epoch PACE T on (the authors': 85 of 100 epochs).", rich_help_panel=CUR)] = 0.85,
    model: Annotated[str, typer.Option(help="early-fusion (the paper's Baseline) | multid (Multi-D) | dmib (DMIB) | cfcml | scikit-learn references: logreg | logreg-balanced | smote-logreg | hgb-balanced | brf.", rich_help_panel=MOD)] = "early-fusion",
    model_option: Annotated[Optional[list[str]], typer.Option(help="Model option KEY=VALUE (repeatable), e.g. hidden=128.", rich_help_panel=MOD)] = None,
    lr: Annotated[str, typer.Option(help="Adam learning rate (paper: 5e-5); a comma-separated list trains one variant per value, all in one program.", rich_help_panel=OPT)] = "5e-5",
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay (L2, added to the gradient).", rich_help_panel=OPT)] = 0.0,
    batch_size: Annotated[str, typer.Option(help="Mini-batch size, or 'full' (the whole epoch pool in one step).", rich_help_panel=OPT)] = "32",
    lr_step: Annotated[int, typer.Option(help="Multiply the lr by --lr-gamma every LR_STEP epochs (0: constant; Multi-D's recipe: 500).", rich_help_panel=OPT)] = 0,
    lr_gamma: Annotated[float, typer.Option(help="Factor of the step learning-rate schedule.", rich_help_panel=OPT)] = 0.1,
    loss: Annotated[str, typer.Option(help="ce | wce (w_c = N/(C n_c)) | focal | logit-adjusted | balanced-softmax | ldam-drw | cb (class-balanced, effective number).", rich_help_panel=IMB)] = "ce",
    focal_gamma: Annotated[float, typer.Option(help="Focal loss gamma.", rich_help_panel=IMB)] = 2.0,
    la_tau: Annotated[float, typer.Option(help="Logit adjustment strength tau (logit-adjusted).", rich_help_panel=IMB)] = 1.0,
    la_prior: Annotated[str, typer.Option(help="Logit adjustment prior: train (the training split's class mix) | epoch (each epoch's mix: for curricula).", rich_help_panel=IMB)] = "train",
    ldam_max_margin: Annotated[float, typer.Option(help="LDAM: the largest class margin.", rich_help_panel=IMB)] = 0.5,
    ldam_scale: Annotated[float, typer.Option(help="LDAM: logit scale s (the authors' 30 assumes a cosine classifier).", rich_help_panel=IMB)] = 1.0,
    drw_start: Annotated[float, typer.Option(help="LDAM-DRW: re-weighting starts after this fraction of the epochs.", rich_help_panel=IMB)] = 0.8,
    drw_beta: Annotated[float, typer.Option(help="LDAM-DRW: beta of the deferred class-balanced weights.", rich_help_panel=IMB)] = 0.9999,
    cb_beta: Annotated[float, typer.Option(help="Class-balanced loss beta (effective number of samples).", rich_help_panel=IMB)] = 0.9999,
    resample: Annotated[str, typer.Option(help="none | undersample | smote | vae (training split, before training; needs --curriculum none).", rich_help_panel=IMB)] = "none",
    select: Annotated[str, typer.Option(help="Which weights to keep: last (the final epoch) | best-valid (best epoch on the validation split; never the test split).", rich_help_panel=OPT)] = "last",
    select_metric: Annotated[str, typer.Option(help="Metric for --select best-valid: accuracy | f1_weighted | f1_macro | balanced_accuracy | auc_macro.", rich_help_panel=OPT)] = "f1_macro",
    seed: Annotated[int, typer.Option(help="Training seed.", rich_help_panel=SEEDS)] = 0,
    seeds: Annotated[Optional[str], typer.Option(help="Several seeds, e.g. 0-9 (trained together; overrides --seed).", rich_help_panel=SEEDS)] = None,
    seed_from_env: Annotated[Optional[str], typer.Option(help="Read the seed from this variable (e.g. SLURM_ARRAY_TASK_ID).", rich_help_panel=SEEDS)] = None,
    jobs: Annotated[str, typer.Option(help="Worker processes sharing the replicas, each with an equal share of the CPUs: auto (one per 4 replicas, at most one per CPU) | N | 1 (all in this process).", rich_help_panel=PERF)] = "auto",
    threads: ThreadsOpt = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N epochs (0: only by time).", rich_help_panel=PERF)] = 0,
    checkpoint_seconds: Annotated[float, typer.Option(help="Checkpoint when this many seconds passed since the last one (and on SIGTERM/Ctrl-C).", rich_help_panel=PERF)] = 60.0,
    variant: Annotated[Optional[str], typer.Option(help="Name of the variant (default: made from the options).")] = None,
    variant_prefix: Annotated[Optional[str], typer.Option(help="With several --lr values: variants named PREFIX@lr<value>.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.", rich_help_panel=PERF)] = "auto",
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Train a multimodal model on the curriculum (stage 5); one artifact per variant and seed."""
    import json as jsonlib

    from stages.pipeline import train as stage
    from stages.engine.loop import Cadence
    from stages.errors import UsageError
    from stages.store.artifacts import default_cache_dir

    if variant and variant_prefix:
        raise UsageError("--variant and --variant-prefix both name the variants", fix="give one of them")
    if seeds and seed_from_env:
        raise UsageError("--seeds and --seed-from-env both choose the seeds", fix="give one of them")
    if checkpoint_every < 0 or checkpoint_seconds <= 0:
        raise UsageError("--checkpoint-every must be >= 0 and --checkpoint-seconds > 0")
    n_jobs = None if jobs == "auto" else (int(jobs) if jobs.isdigit() and int(jobs) >= 1 else None)
    if jobs != "auto" and n_jobs is None:
        raise UsageError(f"--jobs {jobs!r}", fix="use auto or a number >= 1")
    size = _batch_size(batch_size)
    configs = [stage.TrainOptions(model=model, model_options=_model_options(model_option), curriculum=curriculum,
                                  schedule_tag=schedule_tag, epochs=epochs, lr=value, weight_decay=weight_decay,
                                  batch_size=size, lr_step=lr_step, lr_gamma=lr_gamma, loss=loss,
                                  focal_gamma=focal_gamma, la_tau=la_tau, la_prior=la_prior, ldam_max_margin=ldam_max_margin,
                                  ldam_scale=ldam_scale, drw_start=drw_start, drw_beta=drw_beta, cb_beta=cb_beta, resample=resample,
                                  budget=budget, finish_epochs=finish_epochs, select=select,
                                  select_metric=select_metric, dsrmc_pace=dsrmc_pace, device=device)
               for value in _floats(lr, "--lr")]
    chosen = stage.parse_seeds(seeds) if seeds else [stage.seed_from_env(seed_from_env) if seed_from_env else seed]

    def command_for(run_name: str, opts, s: int) -> str:
        return command_line({"run": run_name, "lr": f"{opts.lr:g}", "seed": s, "seeds": None, "seed_from_env": None,
                             "jobs": "auto"})

    from stages.runtime import progress

    if variant_prefix:
        variant = {id(o): f"{variant_prefix}@lr{o.lr:g}" for o in configs}
    results = stage.run_seeds(cache_dir or default_cache_dir(), run, configs, chosen, variant, force, n_jobs,
                              Cadence(checkpoint_every, checkpoint_seconds), command_for,
                              progress.task if progress.enabled() else None)
    for r in results:
        s = r["summary"]
        verb = "reused" if r["reused"] else f"trained in {s['seconds']:.1f} s"
        info(f"[green]train[/]: {r['run']} {r['variant']} seed {r['seed']} {verb} -> {r['path']} "
             + (f"(final loss {s['final_loss']:.4f}, {s['samples_seen']} samples, {s['optimizer_steps']} steps)"
                if s.get("final_loss") == s.get("final_loss") and s.get("final_loss") is not None
                else "(a fitted scikit-learn reference: no training loss)"))
        if not json:
            typer.echo(r["path"])
    if json:
        typer.echo(jsonlib.dumps(results, default=str))


def _batch_size(text: str) -> int:
    from stages.errors import UsageError

    if text.strip().lower() == "full":
        return 0
    if text.strip().isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--batch-size {text!r}", fix="give a positive integer or 'full'")


EVAL_EPILOG = """
Examples:

  climd evaluate --run brca-s0                      # every trained (variant, seed) of the run

  climd evaluate --run brca-s0 --variant climd --seed 0

  climd evaluate --run 'brca-s*'                    # every run matching the wildcard

  climd evaluate --run brca-val --split valid       # for choosing hyper-parameters, never the test set

Output: eval-<split>/<variant>/seed<k>/metrics.json and predictions.csv (id, true, pred, p_<class>...).
"""


@command
def evaluate(
    run: Annotated[str, typer.Option("--run", "-r", help="Run name, or a wildcard pattern ('brca-s*').", rich_help_panel="Cache")] = DEFAULT_RUN,
    variant: Annotated[Optional[str], typer.Option(help="Only this variant (default: all trained).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Only this seed.")] = None,
    split: Annotated[str, typer.Option(help="test | valid.")] = "test",
    allow_incomplete: Annotated[bool, typer.Option(help="Exit 0 even when some trainings are incomplete (they are still named).")] = False,
    threads: ThreadsOpt = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Evaluate final-epoch models on the held-out split (stage 6)."""
    import json as jsonlib

    from stages.pipeline import evaluate as stage
    from stages.errors import MissingArtifactError, StaleArtifactError
    from stages.store import layout

    def wanted(name: str) -> bool:                  # a train artifact's name
        parsed = layout.parse(name)
        return (variant is None or parsed.variant == variant) and (seed is None or parsed.seed == seed)

    stores = runs(run, cache_dir)
    todo = [(st, v, s) for st in stores for v, s in stage.trained_variants(st) if wanted(layout.train_name(v, s))]
    broken = [(st, e) for st in stores for e in stage.incomplete_trainings(st) if wanted(e.name)]
    if not todo and not broken:
        raise MissingArtifactError(f"no trained model in run {run!r}" + (f" for variant {variant!r}" if variant else ""),
                                   fix=f"run `climd train --run {run}` first")
    results = []
    for st, v, s in todo:
        artifact, reused = stage.run(st, v, s, split, force)
        m = artifact.summary
        info(f"[green]evaluate[/]: {st.run} {v} seed {s} ({'reused' if reused else 'computed'}): "
             + ", ".join(f"{k} {m[k]:.3f}" for k in ("accuracy", "f1_weighted", "f1_macro") if m[k] is not None))
        results.append({"variant": v, "seed": s, "path": str(artifact.path), "metrics": m})
        if not json:
            typer.echo(str(artifact.path))
    if json:
        typer.echo(jsonlib.dumps(results, default=str))
    if broken:
        names = "; ".join(f"{st.run}/{e.name}: {e.message}" for st, e in broken)
        if not allow_incomplete:
            raise StaleArtifactError(f"{len(broken)} training(s) are incomplete and were not evaluated: {names}",
                                     fix=(broken[0][1].fix or "finish or retrain them") + " (or --allow-incomplete)")
        from .common import err

        err.print(f"[yellow]warning:[/] {len(broken)} training(s) not evaluated: {names}", highlight=False)
