"""The CLIMD core stages: score (Eq. 1-4), fit-dist (Eq. 5-6), schedule (Eq. 7)."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, ForceOpt, JsonOpt, RunsOpt, command, err, info, report, runs

M, P, V = "Measurer", "Probes", "Variants"
TagOpt = Annotated[Optional[str], typer.Option(help="Keep this variant side by side: writes <stage>.<TAG>/.", rich_help_panel=V)]

SCORE_EPILOG = """
Examples:

  climd score --run brca-s0                          # the paper: in-sample probes, r = phi + mean psi

  climd score --run brca-s0 --folds 5 --tag oof       # cross-fitted: each sample scored by unseen probes

  climd score --run brca-s0 --measure intra --tag intra    # Table 4 ablation (1)

Output: <run>/score[.TAG]/scores.csv, one row per training sample (id, label, psi per modality, phi,
r, order_in_class: 1 = easiest).
"""


@command
def score(
    run: RunsOpt = DEFAULT_RUN,
    folds: Annotated[int, typer.Option(help="1 = in-sample probes (the paper's literal reading); K > 1 = K-fold out-of-fold scoring.", rich_help_panel=M)] = 1,
    measure: Annotated[str, typer.Option(help="both | intra (psi only) | inter (phi only): Table 4 ablations.", rich_help_panel=M)] = "both",
    combine: Annotated[str, typer.Option(help="sum (paper Eq. 4) | zscore | rank: how phi and mean psi are put together.", rich_help_panel=M)] = "sum",
    easy: Annotated[str, typer.Option(help="Which end of r is easy: high (default; see docs/method.md) or low.", rich_help_panel=M)] = "high",
    seed: Annotated[int, typer.Option(help="Seed of the probes and folds.", rich_help_panel=M)] = 0,
    probe_hidden: Annotated[int, typer.Option(help="Shared hidden size of the modality encoders (dim of F(x^m)).", rich_help_panel=P)] = 64,
    probe_epochs: Annotated[int, typer.Option(help="Full-batch Adam steps per probe.", rich_help_panel=P)] = 200,
    probe_lr: Annotated[float, typer.Option(help="Probe learning rate.", rich_help_panel=P)] = 1e-3,
    probe_weight_decay: Annotated[float, typer.Option(help="Probe weight decay.", rich_help_panel=P)] = 1e-4,
    probe_head: Annotated[str, typer.Option(help="shared (one classifier for all modalities: aligned F spaces) | separate.", rich_help_panel=P)] = "shared",
    tag: TagOpt = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Score every training sample's difficulty r(x_i) (stage 2, Eq. 1-4)."""
    from stages.pipeline import score as stage
    from stages.method.probes import ProbeOptions

    opts = stage.ScoreOptions(folds=folds, measure=measure, combine=combine, easy=easy, seed=seed,
                              probe=ProbeOptions(hidden=probe_hidden, epochs=probe_epochs, lr=probe_lr,
                                                 weight_decay=probe_weight_decay, head=probe_head))
    for st in runs(run, cache_dir):
        artifact, reused = stage.run(st, opts, tag, force)
        s = artifact.summary
        report("score", artifact, reused, json,
               f"\n  {s['n_train']} training samples; spearman(r, phi) = {s['spearman_r_phi']}, "
               f"spearman(r, mean psi) = {s['spearman_r_psi']}; probe accuracy ({s['probe_accuracy_is']}) {s['probe_accuracy']}")


FIT_EPILOG = """
Examples:

  climd fit-dist --run brca-s0                 # gamma = 0.3 (the paper)

  climd fit-dist --run brca-s0 --gamma 0.5 --tag g05

Output: <run>/fit-dist[.TAG]/dist.json: counts, ranks, alpha(T), and the fitted power-law share per
rank next to the observed share (`climd inspect fit-dist --run RUN` shows them side by side).
"""


@command
def fit_dist(
    run: RunsOpt = DEFAULT_RUN,
    gamma: Annotated[float, typer.Option(help="Smoothing hyper-parameter gamma > 0 of Eq. 5-7 (paper: 0.3).")] = 0.3,
    tag: TagOpt = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Fit the training class distribution to the power law: alpha(T) (stage 3, Eq. 5-6)."""
    from stages.pipeline import fit_dist as stage

    for st in runs(run, cache_dir):
        artifact, reused = stage.run(st, gamma, tag, force)
        s = artifact.summary
        if s["message"]:
            info(f"[yellow]note:[/] {s['message']}")
        alpha = "undefined" if s["alpha_T"] is None else f"{s['alpha_T']:.4g}"
        report("fit-dist", artifact, reused, json, f"\n  counts {s['counts']}, n_min {s['n_min']}, alpha(T) = {alpha}")


SCHEDULE_EPILOG = """
Examples:

  climd schedule --run brca-s0 --epochs 100                 # CLIMD (Eq. 7) -> <run>/schedule/

  climd schedule --run brca-s0 --pacing root                # Table 4 baseline -> <run>/schedule.root/

  climd schedule --run brca-s0 --order random --tag random  # chance control for the measurer

  climd schedule --run brca-s0 --score-tag oof --tag oof    # schedule from out-of-fold scores

Output: epoch_0001.txt ... (one sample id per line) and schedule.json (per epoch: S_t, alpha(t),
q_t and counts per class). `climd inspect schedule --run RUN --plot mix.png` draws Fig. 2.
"""


@command
def schedule(
    run: RunsOpt = DEFAULT_RUN,
    epochs: Annotated[int, typer.Option(help="T, the number of curriculum epochs (paper: 100).")] = 100,
    pacing: Annotated[str, typer.Option(help="climd (Eq. 7) | baby-step | one-pass | linear | root | geom.")] = "climd",
    overflow: Annotated[str, typer.Option(help="When a class has fewer samples than s_t(c): redistribute the surplus to the other classes (default) or drop it.")] = "redistribute",
    order: Annotated[str, typer.Option(help="score (easy->hard from `climd score`) | random (seeded chance control).")] = "score",
    order_seed: Annotated[int, typer.Option(help="Seed of --order random.")] = 0,
    buckets: Annotated[int, typer.Option(help="Difficulty buckets of baby-step/one-pass.")] = 10,
    c0: Annotated[float, typer.Option(help="Initial competence of linear/root/geom.")] = 0.01,
    score_tag: Annotated[Optional[str], typer.Option(help="Use score.<TAG> instead of score.", rich_help_panel=V)] = None,
    dist_tag: Annotated[Optional[str], typer.Option(help="Use fit-dist.<TAG> instead of fit-dist.", rich_help_panel=V)] = None,
    tag: TagOpt = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Write the per-epoch training subsets (stage 4, Eq. 7 or a pacing baseline)."""
    from stages.pipeline import schedule as stage

    opts = stage.ScheduleOptions(epochs=epochs, pacing=pacing, overflow=overflow, order=order,
                                 order_seed=order_seed, buckets=buckets, c0=c0)
    for st in runs(run, cache_dir):
        artifact, reused = stage.run(st, opts, tag, score_tag, dist_tag, force)
        s = artifact.summary
        empty = s["epochs_with_an_empty_class"]
        if empty and pacing == "climd":
            err.print(f"[yellow]warning:[/] {st.run}: {len(empty)} epochs have a class with no samples (first: {empty[0]})")
        report("schedule", artifact, reused, json,
               f"\n  epoch 1 {s['first_epoch']}, epoch {s['epochs']} {s['last_epoch']}; "
               f"{s['samples_over_all_epochs']} samples over all epochs; never scheduled: {s['never_scheduled']}")
