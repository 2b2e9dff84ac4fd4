from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table as RichTable

from .common import CacheOpt, JsonOpt, command, info, stdout_console, store

EPILOG = """
Examples:

  climd inspect cache/brca-s0/fit-dist            # an artifact directory

  climd inspect schedule --run brca-s0           # a stage of a run

  climd inspect train --run brca-s0              # every train artifact of a run (final loss, steps)

  climd inspect evaluate --run brca-s0           # every evaluation of a run (accuracy, F1, AUC)

  climd inspect schedule --run brca-s0 --plot fig2.png

  climd inspect cache/brca-s0/encode/features.h5 --json | jq .tables
"""


@command
def inspect(
    target: Annotated[str, typer.Argument(help="Artifact directory, a file inside it, or a stage name with --run.")],
    run: Annotated[Optional[str], typer.Option("--run", "-r", help="Run to look the stage name up in.", rich_help_panel="Cache")] = None,
    cache_dir: CacheOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Schedule: draw the class mix over epochs (like the paper's Fig. 2) to this PNG.")] = None,
    json: JsonOpt = False,
):
    """Show any artifact's provenance and a summary of its content."""
    from stages.report import inspect as lib

    v = lib.view(target, store(run, cache_dir) if run else None)
    if plot is not None:
        from stages.report import plots

        plots.class_mix(v.artifact, plot)
        info(f"[green]inspect[/]: wrote {plot}")
    if json:
        typer.echo(jsonlib.dumps({"path": str(v.artifact.path), "stage": v.artifact.stage,
                                  "status": v.fresh, "meta": v.artifact.meta,
                                  "tables": [t.as_dict() for t in v.tables]}, default=str))
        return
    out = stdout_console()
    if getattr(v.artifact, "listing", False):
        out.print(f"[bold]{v.artifact.stage}[/] artifacts in {v.artifact.path}", highlight=False)
    else:
        out.print(f"[bold]{v.artifact.stage}[/] artifact {v.artifact.path}: "
                  + ("[green]fresh[/]" if v.fresh == "fresh" else f"[red]{v.fresh}[/]"), highlight=False)
    for t in v.tables:
        table = RichTable(title=t.title, title_justify="left")
        for col in t.columns:
            table.add_column(str(col))
        for row in t.rows:
            table.add_row(*[_fmt(x) for x in row])
        out.print(table)
        if t.text:
            out.print(t.text, highlight=False, markup=False)


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)
