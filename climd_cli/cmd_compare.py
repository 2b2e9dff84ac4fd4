"""compare: from a data set to the verdict (does the curriculum help here, and if not, what does?)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CacheOpt, ForceOpt, JsonOpt, ThreadsOpt, command, info

SLURM, PERF, PROTO = "SLURM (--executor slurm)", "Performance", "Protocol"

EPILOG = """
Examples:

  climd compare --panel quick                                  # the embedded ROSMAP, a first look

  climd compare --data my-study/manifest.yaml --out verdict/   # your own data: 10 replicates, the default panel

  climd compare --data my-study/manifest.yaml --dry-run        # the plan and its estimated cost

  climd compare --write-panel panel.yaml                       # the default panel, to edit; then --panel panel.yaml

Replicate k is run NAME-r<k> (NAME: --run, default the data's folder name): k = 0 is the data set's own
split, k >= 1 a stratified resplit with the same sizes; validation is the data's own or 20 % of
training. Every panel row is trained at every lr of its grid with --seeds training seeds per
replicate, evaluated on valid and test; per replicate, choices are made on validation; the verdict
(report.md, chosen.csv, paired_vs_*.csv) goes to --out. A rerun reuses everything that is fresh.
"""


@command
def compare(
    data: Annotated[Optional[Path], typer.Option(help="The data set: a manifest (YAML) or a supported folder (default: the embedded ROSMAP).", rich_help_panel=PROTO, show_default=False)] = None,
    run: Annotated[Optional[str], typer.Option("--run", "-r", help="Name of the replicates' runs: NAME-r0, NAME-r1, ... (default: from the data path).", rich_help_panel=PROTO, show_default=False)] = None,
    replicates: Annotated[int, typer.Option(help="Replicates (splits) of the data set.", rich_help_panel=PROTO)] = 10,
    seeds: Annotated[int, typer.Option(help="Training seeds per replicate (0 ... K-1).", rich_help_panel=PROTO)] = 1,
    panel: Annotated[str, typer.Option(help="default | quick | a panel file (YAML; see --write-panel).", rich_help_panel=PROTO)] = "default",
    write_panel: Annotated[Optional[Path], typer.Option("--write-panel", help="Write the --panel (default or quick) as YAML to this file ('-': stdout) and exit.", rich_help_panel=PROTO, show_default=False)] = None,
    split_files: Annotated[Optional[str], typer.Option(help="One split file per replicate, a path with {k} (splits/seed{k}.csv) instead of resplits.", rich_help_panel=PROTO, show_default=False)] = None,
    format: Annotated[Optional[str], typer.Option(help="Data layout (default: detected): mogonet | tcga | derm7pt | manifest.", rich_help_panel=PROTO, show_default=False)] = None,
    encode_option: Annotated[Optional[list[str]], typer.Option(help="Another `climd encode` option KEY=VALUE (repeatable), e.g. image-size=224, impute=mean.", rich_help_panel=PROTO)] = None,
    delta: Annotated[Optional[float], typer.Option(help="Decision margin in macro-F1 points, fixed before running (as `climd report --delta`; default 2).", rich_help_panel=PROTO, show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder of the verdict (default <cache-dir>/NAME-r0/compare).", show_default=False)] = None,
    executor: Annotated[str, typer.Option(help="local: here | slurm: job arrays through `climd sweep`'s submitter.", rich_help_panel=SLURM)] = "local",
    slurm_partition: Annotated[Optional[str], typer.Option(help="Partition.", rich_help_panel=SLURM)] = None,
    slurm_time: Annotated[Optional[str], typer.Option(help="Time limit per task: minutes or [D-]HH:MM:SS [default: 60].", rich_help_panel=SLURM, show_default=False)] = None,
    slurm_cpus: Annotated[Optional[int], typer.Option(help="CPUs per task.", rich_help_panel=SLURM)] = None,
    slurm_gpus: Annotated[Optional[int], typer.Option(help="GPUs per task.", rich_help_panel=SLURM)] = None,
    slurm_array_parallelism: Annotated[Optional[int], typer.Option(help="At most this many tasks of an array at once.", rich_help_panel=SLURM)] = None,
    slurm_option: Annotated[Optional[list[str]], typer.Option(help="Any other sbatch option KEY=VALUE (repeatable).", rich_help_panel=SLURM)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (every task, fresh or not) and its estimated cost; run nothing.")] = False,
    jobs: Annotated[str, typer.Option(help="Worker processes sharing the replicas: auto | N.", rich_help_panel=PERF)] = "auto",
    threads: ThreadsOpt = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Run the whole protocol on a data set (encode, score, schedules, the panel over its lr grid, evaluation) and write the verdict."""
    import json as jsonlib

    from stages.compare import panel as panels
    from stages.compare import protocol as lib
    from stages.errors import UsageError, check_choices

    if write_panel is not None:
        if panel not in ("default", "quick"):
            raise UsageError("--write-panel writes a built-in panel", fix="use --panel default or --panel quick")
        text = panels.write(None if str(write_panel) == "-" else write_panel, panel)
        if str(write_panel) == "-":
            typer.echo(text, nl=False)
        else:
            info(f"[green]panel[/] {panel} -> {write_panel}")
            typer.echo(str(write_panel))
        return
    check_choices((executor, ("local", "slurm"), "--executor"))
    n_jobs = None if jobs == "auto" else (int(jobs) if jobs.isdigit() and int(jobs) >= 1 else 0)
    if n_jobs == 0:
        raise UsageError("--jobs must be auto or >= 1")
    setup = lib.setup(data, run, replicates, seeds, panels.resolve(panel), cache_dir, out,
                      _encode_options(encode_option), format, split_files, delta)
    if executor == "slurm":
        from stages.compare import slurm as compare_slurm
        from stages.sweep.slurm import SlurmOptions

        from .cmd_sweep import _key_values

        opts = SlurmOptions(partition=slurm_partition, time=slurm_time or "60", cpus=slurm_cpus, gpus=slurm_gpus,
                            array_parallelism=slurm_array_parallelism, extra=_key_values(slurm_option))
        result = compare_slurm.submit(setup, opts, dry_run=dry_run, force=force)
        typer.echo(jsonlib.dumps(result, default=str) if json else result["summary"])
        return
    if dry_run:
        tasks, _ = lib.plan(setup)
        if json:
            typer.echo(jsonlib.dumps({"summary": lib.summary(tasks), "out": str(setup.out),
                                      "tasks": [t.as_dict() for t in tasks]}))
            return
        typer.echo(f"compare {setup.name}: {lib.summary(tasks)}")
        for t in tasks:
            runs = t.runs[0] if len(t.runs) == 1 else f"{len(t.runs)} replicates"
            typer.echo(f"  {'fresh' if t.fresh else 'to do':5}  {t.stage:8} {runs:14} {t.what}"
                       + ("" if t.fresh else f"  (~{t.seconds:.0f} s)"))
        return
    from stages.runtime import progress

    from .common import current_command

    result = lib.run(setup, force, n_jobs, progress.task if progress.enabled() else None, current_command())
    info(f"[green]compare[/] {setup.name}: trained {result['trained']}, reused {result['reused']} "
         f"in {result['seconds']:.0f} s; verdict -> {result['out']}/report.md")
    typer.echo(jsonlib.dumps(result) if json else result["out"])


def _encode_options(items: Optional[list[str]]) -> dict:
    from stages.errors import UsageError
    from stages.sweep.upstream import OPTIONS, coerce

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or key not in OPTIONS["encode"]:
            import difflib

            close = difflib.get_close_matches(key, list(OPTIONS["encode"]), n=1)
            raise UsageError(f"--encode-option {item!r}: not KEY=VALUE with a `climd encode` option",
                             fix=(f"did you mean {close[0]!r}? " if close else "") + "e.g. --encode-option image-size=224")
        kind = OPTIONS["encode"][key]
        try:
            out[key] = coerce(kind, {"true": True, "false": False}.get(value.strip().lower(), value.strip())
                              if kind == "bool" else value.strip())
        except ValueError as exc:
            raise UsageError(f"--encode-option {item!r}: {exc}") from None
    return out
