"""report and select: tables, paired statistics and validation choices over evaluated models."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, JsonOpt, command, err, info, quiet

REPORT_EPILOG = """
Examples:

  climd report --run brca-s0 --reference baseline

  climd report --run 'brca-s*' --reference baseline --reference climd --out results/brca

  climd report --run 'brca-s*' --choose 'climd-chosen=climd*' --choose 'baseline-chosen=baseline,baseline+lr*' --reference baseline-chosen

Writes report.md, report.csv (mean and std per variant), runs.csv (every replicate), chosen.csv (the
--choose picks per replicate, with the selection optimism), differences.csv (the per-replicate
differences each decision used) and paired_vs_<reference>.csv: the decision against +-delta
(better / equivalent / worse / inconclusive, with P(worse), P(equivalent), P(better); TOST), and per
metric the mean difference with its
95 % CI, the t-test p (Nadeau–Bengio corrected when the replicates span several runs, i.e. resplits
of the data; the ordinary paired t-test for seeds of one split), the Wilcoxon signed-rank p, and the
Holm-adjusted t p over the rows of that table. Evaluations are re-hashed: an edited metrics.json is
refused (exit 5). A train folder without meta.json (a killed seed) stops the report (exit 5) unless
--allow-incomplete.
"""


def _console():
    """Tables on stderr; off a terminal they are never wrapped at 80 columns (logs, pipes, CI)."""
    import sys

    from rich.console import Console

    wide = not sys.stderr.isatty()
    return Console(stderr=True, width=100_000 if wide else None, soft_wrap=wide, highlight=False)


def _warn(message: str) -> None:
    from rich.markup import escape

    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


@command
def report(
    run: Annotated[list[str], typer.Option("--run", "-r", help="Run(s) to aggregate; repeatable; wildcards allowed (quote them).")] = [DEFAULT_RUN],
    reference: Annotated[Optional[list[str]], typer.Option(help="Variant(s) to compare every other variant with (paired by run and seed); a --choose NAME works too.")] = None,
    split: Annotated[str, typer.Option(help="test | valid.")] = "test",
    variants: Annotated[Optional[str], typer.Option(help="Comma-separated variants to show, in this order.")] = None,
    choose: Annotated[Optional[list[str]], typer.Option("--choose", help="NAME=PATTERN[,PATTERN...]: per replicate, the candidate (fnmatch patterns, in priority order; ties go to the earlier) with the best VALIDATION score; its TEST metrics become the variant NAME. Repeatable.")] = None,
    choose_metric: Annotated[str, typer.Option(help="Validation metric --choose maximises.")] = "f1_macro",
    delta: Annotated[Optional[float], typer.Option(help="Margin in metric points (macro-F1), fixed before running: each comparison is decided better / equivalent / worse (posterior probability >= 0.95) or inconclusive against ±delta. Default: stages.report.decision.DEFAULT_DELTA_POINTS (2; why: docs/statistics.md).")] = None,
    positive_class: Annotated[Optional[str], typer.Option(help="Two classes: the class whose recall is sensitivity (default: the training minority).")] = None,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Report without incomplete replicates (killed or unfinished seeds) instead of stopping; they are named.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default <cache-dir>/<first run>/report[-valid]).")] = None,
    title: Annotated[Optional[str], typer.Option(help="Title of the Markdown table.")] = None,
    plot_recall: Annotated[Optional[Path], typer.Option(help="Also draw per-class recall of the shown variants to this PNG.")] = None,
    selections: Annotated[Optional[Path], typer.Option(help="JSON of `climd select --record`: list the validation choices behind the shown variants.")] = None,
    cache_dir: CacheOpt = None,
    json: Annotated[bool, typer.Option("--json", help="Print every table, test and choice as JSON on stdout.", rich_help_panel="Output")] = False,
):
    """Aggregate evaluations into mean +- std tables with paired tests and CIs (stage 7)."""
    import json as jsonlib

    from stages.report import build as reports
    from stages.report import choose as chooser
    from stages.report import collect as lib
    from stages.report.decision import DEFAULT_DELTA_POINTS
    from stages.store.artifacts import default_cache_dir

    from climd_cli.common import current_command

    req = reports.Request(split=split, references=list(reference or []), order=variants.split(",") if variants else None,
                          choose=[chooser.parse(s) for s in choose or []], choose_metric=choose_metric,
                          delta=DEFAULT_DELTA_POINTS if delta is None else delta, positive_class=positive_class,
                          allow_incomplete=allow_incomplete)
    stores = lib.expand_runs(cache_dir or default_cache_dir(), run)
    rep = reports.build(stores, req)
    for w in rep.warnings:
        _warn(w)
    target = out or reports.default_target(stores, split)
    name = title or f"{', '.join(sorted(set(s.run for s in stores)))}"
    extra = lib.selections_markdown(selections, rep.table.variant.tolist()) if selections else ""
    reports.save(rep, target, name, current_command(), split, extra)
    if plot_recall is not None:
        from stages.report import plots

        plots.recall_by_class(rep.rows, rep.table.variant.tolist(), plot_recall, f"{name}: per-class recall ({split})")
    if json:
        typer.echo(jsonlib.dumps(lib.json_ready({
            "out": str(target), "table": rep.table.to_dict(orient="records"),
            "paired": [c.to_dict(orient="records") for c in rep.comparisons],
            "chosen": [] if rep.chosen is None else rep.chosen.to_dict(orient="records"), **rep.run_info})))
        return
    if not quiet():
        _print_tables(name, split, rep.table, rep.comparisons, rep.chosen)
    typer.echo(str(target))


def _print_tables(name, split, table, comparisons, chosen) -> None:
    from rich.table import Table

    from stages.report import markdown as md

    console = _console()
    cols = md.metric_columns(table)
    view = Table(title=f"{name} ({split})", title_justify="left")
    for col in ["variant", "n"] + [md.SHORT[m] for m in cols]:
        view.add_column(col, no_wrap=True)
    for _, r in table.iterrows():
        view.add_row(r.variant, str(r.n), *[md.pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in cols])
    console.print(view)
    if chosen is not None and len(chosen):
        view = Table(title="chosen on validation, per replicate", title_justify="left")
        for col in ("name", "replicate", "chosen", "validation score (%)"):
            view.add_column(col, no_wrap=True)
        for r in chosen.itertuples(index=False):
            view.add_row(r.name, f"{r.run}/seed{r.seed}", r.chosen or "–", md.pm(r.valid_score, None))
        console.print(view)
    m = md.PRIMARY
    for comp in comparisons:
        if comp.empty:
            continue
        view = Table(title=f"vs {comp.reference.iloc[0]}: {md.test_sentence(comp)}", title_justify="left")
        tests = set(comp.test)
        tname = "corrected-t p" if tests == {"nadeau-bengio"} else "paired-t p" if tests == {"paired-t"} else "t p"
        decided = "decision" in comp
        for col in ("variant", "pairs", f"Δ{md.SHORT[m]} [95% CI]", tname, "Wilcoxon p", "Holm p", "test") + (
                (f"decision (±{comp.delta.iloc[0] * 100:g})", "P(worse/equiv./better)") if decided else ()):
            view.add_column(col, no_wrap=True)
        for _, r in comp.iterrows():
            view.add_row(r.variant, str(r.n_pairs), md.delta_ci(r, m), md.p(r[f"p_t_{m}"]),
                         md.p(r[f"p_wilcoxon_{m}"]), md.p(r[f"p_holm_{m}"]), r.test,
                         *((r.decision, f"{md.p(r.p_worse)}/{md.p(r.p_equivalent)}/{md.p(r.p_better)}") if decided else ()))
        console.print(view)


SELECT_EPILOG = """
Examples:

  climd select --run 'brca-val-s*' --candidates 'baseline,baseline+lr*' --param lr
      -> prints the learning rate of the candidate with the best MEAN validation macro-F1 over replicates

  climd select --run 'brca-s*' --candidates 'climd*' --per-replicate
      -> one line per replicate: RUN<TAB>SEED<TAB>the candidate with the best validation macro-F1 there

  climd select --run 'brca-val-s*' --candidates 'climd,climd+lr*' --record results/brca/selection.json --name climd

Without --per-replicate, ONE candidate is chosen for all replicates by its mean over replicates. To
report the test metrics of a per-replicate choice, use `climd report --choose`. Choices are made on
the validation split (climd encode --val-fraction), never on the test set.
"""


@command
def select(
    run: Annotated[list[str], typer.Option("--run", "-r", help="Validation run(s); wildcards allowed.")],
    candidates: Annotated[list[str], typer.Option(help="Comma-separated variant names or patterns, in priority order (ties go to the earlier). Repeat for several independent choices: one winner per line.")],
    metric: Annotated[str, typer.Option(help="This validation metric decides: its mean over replicates, or per replicate with --per-replicate.")] = "f1_macro",
    split: Annotated[str, typer.Option(help="Split the candidates were evaluated on (valid; choosing on test is not honest).")] = "valid",
    per_replicate: Annotated[bool, typer.Option("--per-replicate", help="One choice per replicate (run, seed) instead of one by the mean over replicates.")] = False,
    param: Annotated[Optional[str], typer.Option(help="Print this training parameter of the winner (e.g. lr) instead of its name.")] = None,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Choose without incomplete replicates (named) instead of stopping.")] = False,
    record: Annotated[Optional[Path], typer.Option(help="JSON file collecting every choice (for the report).")] = None,
    name: Annotated[Optional[list[str]], typer.Option(help="Key of each choice in --record (default: its first candidate).")] = None,
    cache_dir: CacheOpt = None,
):
    """Choose among variants on the validation split, by the mean over replicates (or --per-replicate); prints the winner."""
    from stages.report.build import problems as build_problems
    from stages.report import choose as chooser
    from stages.report import collect as lib
    from stages.errors import UsageError
    from stages.store.artifacts import default_cache_dir

    if name and len(name) != len(candidates):
        raise UsageError("give one --name per --candidates")
    if split == "test":
        err.print("[bold red]WARNING: choosing on the test split is not honest[/]: the winner's test score is then "
                  "biased upward and no longer estimates performance on new data. Choose on --split valid.",
                  highlight=False)
    stores = lib.expand_runs(cache_dir or default_cache_dir(), run)
    col = lib.collect(stores, split, allow_incomplete)
    for w in build_problems(col, split, unevaluated=False):
        _warn(w)
    rows = col.rows
    for i, group in enumerate(candidates):
        patterns = group.split(",")
        key = name[i] if name else patterns[0]
        entry = {"metric": metric, "split": split, "runs": sorted({s.run for s in stores})}
        if per_replicate:
            picks, warnings = chooser.per_replicate(rows, rows.iloc[0:0], key, patterns, metric)
            for w in warnings:
                if "no test evaluation" not in w:
                    _warn(w)
            for r in picks.itertuples(index=False):
                info(f"  {r.run}/seed{r.seed}: {r.chosen} ({metric} {r.valid_score:.4f} on {split})")
                value = r.chosen if param is None or r.chosen is None else _param(stores, r.run, r.chosen, r.seed, param)
                typer.echo(f"{r.run}\t{r.seed}\t{value}")
            entry["per_replicate"] = picks.drop(columns=["has_test"]).to_dict(orient="records")
        else:
            best, table = chooser.by_mean(rows, patterns, metric)
            for _, r in table.iterrows():
                info(f"  {'*' if r.variant == best else ' '} {r.variant}: mean {metric} over replicates "
                     f"{r['mean']:.4f} ± {r['std']:.4f} (n={int(r['count'])})")
            seed_run = rows[rows.variant == best][["run", "seed"]].iloc[0]
            typer.echo(str(best if param is None else _param(stores, seed_run.run, best, int(seed_run.seed), param)))
            entry.update(chosen=best, candidates={r.variant: {"mean": r["mean"], "std": r["std"], "n": int(r["count"])}
                                                  for _, r in table.iterrows()})
        if record is not None:
            lib.record_selection(record, key, lib.json_ready(entry))


def _param(stores, run: str, variant: str, seed: int, param: str):
    from stages.pipeline import train as train_stage

    store = next(s for s in stores if s.run == run)
    return store.read(train_stage.artifact_name(variant, seed)).params.get(param)
