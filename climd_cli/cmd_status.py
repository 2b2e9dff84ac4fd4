"""status: the state of every artifact of some runs, or of every cell of a sweep."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CacheOpt, JsonOpt, command, err, quiet

EPILOG = """
Examples:

  climd status --run 'brca-s*'                   # every artifact: fresh/stale/incomplete/corrupt/missing

  climd status --run 'brca-s*' --json | jq '.artifacts[] | select(.state != "fresh")'

  climd status --sweep brca-table2               # which cells of a sweep are done (and their SLURM jobs)

  climd status --grid examples/grids/brca-table2.yaml

  climd status --run 'brca-s*' --summary         # per variant: done / missing / failed counts

  climd -q status --run brca-s0 || make brca     # in a Makefile: non-zero when something is not fresh

States: fresh | stale (an ancestor changed) | incomplete (no meta.json: interrupted, or a training in
progress or killed at epoch N) | corrupt (an output changed) | missing | leftover (a .tmp-* folder of
an interrupted write, listed only). Cells: done | missing | incomplete | stale | corrupt.

Exit code: 0 everything fresh (done), 5 something stale, incomplete or corrupt, 4 something missing
(and nothing stale). stdout: the paths that are not fresh, one per line (or --json); the table goes
to stderr.
"""

COLOURS = {"fresh": "green", "done": "green", "stale": "yellow", "incomplete": "yellow", "corrupt": "red",
           "missing": "red", "leftover": "dim"}


@command
def status(
    run: Annotated[Optional[str], typer.Option("--run", "-r", help="Run name or wildcard pattern ('brca-s*'); default: every run. With --sweep: where to look for it.", rich_help_panel="Cache")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Report the cells of this sweep (its sweep.json).")] = None,
    grid: Annotated[Optional[Path], typer.Option(help="Report the cells of this grid file (with its sweep's jobs, if submitted).")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="One row per variant (and per stage before training): done / missing / failed / other counts, instead of one row per artifact or cell.", rich_help_panel="Output")] = False,
    cache_dir: CacheOpt = None,
    json: JsonOpt = False,
):
    """Show every artifact's state (fresh, stale, incomplete, corrupt, missing) or a sweep's cells; exit non-zero unless all fresh."""
    import json as jsonlib

    from stages.store import status as lib
    from stages.errors import UsageError

    if sweep and grid:
        raise UsageError("--sweep and --grid both name the sweep", fix="give one of them")
    if sweep or grid:
        from stages.sweep import run as sweeps
        from stages.sweep import status as cells

        if grid:
            from stages.sweep.grid import load_grid

            g = load_grid(grid)
            path = sweeps.record_path(g, cache_dir)
            record = sweeps.read_record(path) if path.exists() else {}
            rows, kind = cells.sweep_status(path.parents[3], record, g), "cells"
        else:
            path = sweeps.find_record(cache_dir, sweep, run)       # <cache>/<run>/sweeps/<name>/sweep.json
            rows, kind = cells.sweep_status(path.parents[3], sweeps.read_record(path)), "cells"
    else:
        rows, kind = lib.runs_status(cache_dir, run or "*"), "artifacts"
    code = lib.exit_code(r["state"] for r in rows)
    if json:
        out = {kind: rows, "counts": lib.counts(rows), "exit_code": code}
        if summary:
            out = {"summary": lib.summary(rows), "counts": out["counts"], "exit_code": code}
        typer.echo(jsonlib.dumps(out, default=str))
    else:
        if not quiet():
            _summary_table(lib.summary(rows), rows) if summary else _table(rows, kind)
        for row in rows:
            if row["state"] not in ("fresh", "done"):
                typer.echo(row["path"])
    if code:
        raise typer.Exit(code)


def _table(rows: list[dict], kind: str) -> None:
    from rich.table import Table

    table = Table(title_justify="left", title=_title(rows))
    if kind == "cells":
        for col in ("cell", "state", "job", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            job = r.get("job")
            shown = f"{job['id']} {job['state'] or ''}".strip() if job else ""
            if job and job.get("exit_code") is not None and job.get("state") != "COMPLETED":
                shown += f" (exit {job['exit_code']})"
            table.add_row(r["cell"], _state(r["state"]), shown, r["detail"])
    else:
        for col in ("run", "stage", "name", "state", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(r["run"], r["stage"], r["name"], _state(r["state"]), r["detail"])
    err.print(table)


def _summary_table(groups: list[dict], rows: list[dict]) -> None:
    from rich.table import Table

    others = sorted({k for g in groups for k in g} - {"stage", "variant", "total", "done", "missing", "failed"})
    table = Table(title_justify="left", title=_title(rows))
    for col in ("stage", "variant", "total", "done", "missing", "failed", *others):
        table.add_column(col, justify="left" if col in ("stage", "variant") else "right")
    for g in groups:
        table.add_row(g["stage"], g["variant"] or "-", *[str(g.get(c, 0)) for c in ("total", "done", "missing", "failed", *others)])
    err.print(table)


def _state(state: str) -> str:
    return f"[{COLOURS.get(state, 'white')}]{state}[/]"


def _title(rows: list[dict]) -> str:
    from stages.store.status import counts

    return ", ".join(f"{n} {s}" for s, n in counts(rows).items()) or "nothing found"
