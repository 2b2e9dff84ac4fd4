"""pool: one answer across data sets from their `climd report` folders."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import command, quiet

EPILOG = """
Examples:

  climd pool results/brca/verdict results/kipan/verdict results/lgg/verdict results/rosmap/verdict results/derm7pt/verdict --out results/pooled

Reads runs.csv and paired_vs_*.csv of each report folder; for every comparison present in all of
them, writes pooled.csv / pooled.md (random-effects meta-analysis, Hartung–Knapp interval, tau^2,
decision against +-delta), inputs.csv (each data set's effect and variance), means.csv, forest.png
and cd.png (critical-difference diagram; it needs 5 data sets). See docs/statistics.md.
"""


@command
def pool(
    folders: Annotated[list[Path], typer.Argument(help="Report folders of `climd report`, one per data set.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/pooled"),
    name: Annotated[Optional[list[str]], typer.Option(help="Data-set name per folder, in order (default: the folder's parent name for .../verdict).")] = None,
    metric: Annotated[str, typer.Option(help="Metric column of runs.csv.")] = "f1_macro",
    delta: Annotated[Optional[float], typer.Option(help="Margin in metric points (default: stages.report.decision.DEFAULT_DELTA_POINTS, 2).")] = None,
):
    """Pool the verdicts of several data sets: random-effects meta-analysis, forest plot, CD diagram."""
    from stages.errors import UsageError
    from stages.report import pool as lib
    from stages.report.decision import DEFAULT_DELTA_POINTS
    from stages.store.artifacts import package_versions

    from .common import current_command

    delta = DEFAULT_DELTA_POINTS if delta is None else delta
    if name and len(name) != len(folders):
        raise UsageError("give one --name per folder")
    if not (0 <= delta < 100):
        raise UsageError(f"--delta {delta} is not a margin in metric points", fix="e.g. --delta 2")
    result = lib.pool(folders, name, metric, delta / 100)
    target = lib.write(result, out, folders, current_command(), package_versions())
    if not quiet():
        for _, p in result["pooled"].iterrows():
            typer.echo(f"{p.variant} vs {p.reference}: {p['mean'] * 100:+.1f} [{p.ci_low * 100:+.1f}, "
                       f"{p.ci_high * 100:+.1f}] -> {p.decision}", err=True)
    typer.echo(str(target))
