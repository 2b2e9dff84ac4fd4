"""report and select: tables, paired statistics and validation choices over evaluated models."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, JsonOpt, command, info, quiet


REPORT_EPILOG = """
Examples:

  climd report --run brca-s0 --reference baseline

  climd report --run 'brca-s*' --reference baseline --reference climd --out results/brca

Writes report.md, report.csv (mean and std per variant), runs.csv (every replicate) and
paired_vs_<reference>.csv (mean difference and Wilcoxon signed-rank p over shared replicates).
"""


@command
def report(
    run: Annotated[list[str], typer.Option("--run", "-r", help="Run(s) to aggregate; repeatable; wildcards allowed (quote them).")] = [DEFAULT_RUN],
    reference: Annotated[Optional[list[str]], typer.Option(help="Variant(s) to compare every other variant with (paired by run and seed).")] = None,
    split: Annotated[str, typer.Option(help="test | valid.")] = "test",
    variants: Annotated[Optional[str], typer.Option(help="Comma-separated variants to show, in this order.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default <cache-dir>/<first run>/report[-valid]).")] = None,
    title: Annotated[Optional[str], typer.Option(help="Title of the Markdown table.")] = None,
    plot_recall: Annotated[Optional[Path], typer.Option(help="Also draw per-class recall of the shown variants to this PNG.")] = None,
    selections: Annotated[Optional[Path], typer.Option(help="JSON of `climd select --record`: list the validation choices behind the shown variants.")] = None,
    cache_dir: CacheOpt = None,
    json: JsonOpt = False,
):
    """Aggregate evaluations into mean +- std tables with paired tests (stage 7)."""
    import json as jsonlib

    from rich.console import Console
    from rich.table import Table

    from stages import report as lib
    from stages.store import _command_line, default_cache_dir

    root = cache_dir or default_cache_dir()
    stores = lib.expand_runs(root, run)
    rows = lib.collect(stores, split)
    order = variants.split(",") if variants else None
    comparisons = [lib.paired(rows, ref) for ref in (reference or [])]   # pairs over every variant
    if order:
        rows = rows[rows.variant.isin(order)]
        comparisons = [c[c.variant.isin(order)].set_index("variant").reindex([v for v in order if v in set(c.variant)]).reset_index()
                       for c in comparisons]
    table = lib.summarise(rows, order)
    target = out or stores[0].path("report" if split == "test" else f"report-{split}")
    name = title or f"{', '.join(sorted(set(s.run for s in stores)))}"
    extra = lib.selections_markdown(selections, table.variant.tolist()) if selections else ""
    lib.write(target, rows, table, comparisons, name, _command_line(), split, extra)
    if plot_recall is not None:
        from stages import plots

        plots.recall_by_class(rows, table.variant.tolist(), plot_recall, f"{name}: per-class recall ({split})")
    if json:
        typer.echo(jsonlib.dumps({"out": str(target), "table": table.to_dict(orient="records"),
                                  "paired": [c.to_dict(orient="records") for c in comparisons]}, default=str))
        return
    view = Table(title=f"{name} ({split})", title_justify="left")
    for col in ["variant", "n"] + [lib.SHORT[m] for m in lib.METRICS]:
        view.add_column(col)
    for _, r in table.iterrows():
        view.add_row(r.variant, str(r.n), *[lib._pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in lib.METRICS])
    if not quiet():
        Console(stderr=True).print(view)
    typer.echo(str(target))


SELECT_EPILOG = """
Examples:

  climd select --run 'brca-val-s*' --candidates 'baseline,baseline+lr*' --param lr
      -> prints the learning rate of the candidate with the best mean validation macro-F1

  climd select --run 'brca-val-s*' --candidates 'climd,climd+lr*' --record results/brca/selection.json --name climd

Choices are made on the validation split (climd encode --val-fraction), never on the test set.
"""


@command
def select(
    run: Annotated[list[str], typer.Option("--run", "-r", help="Validation run(s); wildcards allowed.")],
    candidates: Annotated[list[str], typer.Option(help="Comma-separated variant names or patterns, in priority order (ties go to the earlier). Repeat for several independent choices: one winner per line.")],
    metric: Annotated[str, typer.Option(help="Mean of this metric over replicates decides.")] = "f1_macro",
    split: Annotated[str, typer.Option(help="Split the candidates were evaluated on.")] = "valid",
    param: Annotated[Optional[str], typer.Option(help="Print this training parameter of the winner (e.g. lr) instead of its name.")] = None,
    record: Annotated[Optional[Path], typer.Option(help="JSON file collecting every choice (for the report).")] = None,
    name: Annotated[Optional[list[str]], typer.Option(help="Key of each choice in --record (default: its first candidate).")] = None,
    cache_dir: CacheOpt = None,
):
    """Choose among variants on the validation split; prints the winner (for scripts)."""
    from stages import report as lib
    from stages import train as train_stage
    from stages.errors import UsageError
    from stages.store import default_cache_dir

    if name and len(name) != len(candidates):
        raise UsageError("give one --name per --candidates")
    stores = lib.expand_runs(cache_dir or default_cache_dir(), run)
    rows = lib.collect(stores, split)
    for i, group in enumerate(candidates):
        best, table = lib.select(rows, group.split(","), metric)
        value = best
        if param is not None:
            store, seed = next((s, int(sd)) for s in stores for v, sd in rows[rows.run == s.run][["variant", "seed"]].to_numpy() if v == best)
            value = store.read(train_stage.artifact_name(best, seed)).params.get(param)
        for _, r in table.iterrows():
            info(f"  {'*' if r.variant == best else ' '} {r.variant}: {metric} {r['mean']:.4f} ± {r['std']:.4f} (n={int(r['count'])})")
        if record is not None:
            lib.record_selection(record, name[i] if name else group.split(",")[0], {
                "chosen": best, "metric": metric, "split": split, "runs": sorted({s.run for s in stores}),
                "candidates": {r.variant: {"mean": r["mean"], "std": r["std"], "n": int(r["count"])} for _, r in table.iterrows()}})
        typer.echo(str(value))
