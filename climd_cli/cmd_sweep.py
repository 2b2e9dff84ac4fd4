"""sweep: a grid of runs x train option sets x seeds, here or as SLURM job arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CacheOpt, ForceOpt, JsonOpt, ThreadsOpt, command, info

SLURM, PERF, RUN = "SLURM (--executor slurm)", "Performance", "Executor"

EPILOG = """
Examples:

  climd sweep examples/grids/rosmap-table2-lr.yaml               # train every cell that is not fresh, here

  climd sweep examples/grids/rosmap-table2-lr.yaml --jobs 2      # ... in 2 worker processes

  climd sweep examples/grids/brca-table2.yaml --executor slurm --slurm-partition gpu \\
      --slurm-time 2:00:00 --slurm-cpus 4 --slurm-gpus 1 --dry-run   # print the job arrays

  climd sweep examples/grids/brca-table2.yaml --executor slurm --slurm-partition gpu

  climd status --sweep brca-table2                             # which cells are done

Grid (YAML): runs (a name, a template with {seed}, or a list), seeds (0-9, 0,3,7 or a list), train (an
option set of `climd train` options, or a list of them; a list value expands as a product), and
optionally encode / score / fit-dist / schedule (their options; run before training, reused when
fresh) and evaluate ({splits: [test]}):

  runs: brca-s{seed}
  seeds: 0-4
  train:
    - {curriculum: none, lr: [5e-5, 3e-3]}
    - {curriculum: none, loss: [wce, focal]}

A cell (run, option set, seed) is one train artifact; fresh cells are skipped, so a rerun (or a
resubmission) redoes only what is missing. The sweep is recorded in
<cache>/<first run>/sweeps/<name>/sweep.json; SLURM logs go to .../sweeps/<name>/logs/.
"""


@command
def sweep(
    grid: Annotated[Path, typer.Argument(help="The grid file (YAML).", show_default=False)],
    executor: Annotated[str, typer.Option(help="local: train here (batched engine, --jobs processes) | slurm: submit job arrays with submitit.", rich_help_panel=RUN)] = "local",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run (the job arrays, their sbatch parameters and cells per task) and exit.", rich_help_panel=RUN)] = False,
    jobs: Annotated[str, typer.Option(help="--executor local: worker processes sharing the replicas: auto (as climd train) | N.", rich_help_panel=PERF)] = "auto",
    threads: ThreadsOpt = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N epochs (0: only by time).", rich_help_panel=PERF)] = 0,
    checkpoint_seconds: Annotated[float, typer.Option(help="Checkpoint when this many seconds passed since the last one.", rich_help_panel=PERF)] = 60.0,
    cells_per_task: Annotated[Optional[int], typer.Option(help="Cells per array task (default: one task per option set, holding its seeds and learning rates, which train as one program).", rich_help_panel=SLURM)] = None,
    slurm_partition: Annotated[Optional[str], typer.Option(help="Partition (sbatch --partition).", rich_help_panel=SLURM)] = None,
    slurm_time: Annotated[Optional[str], typer.Option(help="Time limit per task: minutes or [D-]HH:MM:SS (default 60).", rich_help_panel=SLURM, show_default=False)] = None,
    slurm_cpus: Annotated[Optional[int], typer.Option(help="CPUs per task (sbatch --cpus-per-task).", rich_help_panel=SLURM)] = None,
    slurm_gpus: Annotated[Optional[int], typer.Option(help="GPUs per task (sbatch --gpus-per-node).", rich_help_panel=SLURM)] = None,
    slurm_array_parallelism: Annotated[Optional[int], typer.Option(help="At most this many tasks of an array run at once (--array=...%N).", rich_help_panel=SLURM)] = None,
    slurm_option: Annotated[Optional[list[str]], typer.Option(help="Any other sbatch option KEY=VALUE (repeatable), e.g. mem=16G, account=proj.", rich_help_panel=SLURM)] = None,
    log_dir: Annotated[Optional[Path], typer.Option(help="Where submitit writes the task logs (default: <cache>/<first run>/sweeps/<name>/logs/).", rich_help_panel=SLURM)] = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Run a grid of runs x train option sets x seeds, here or as SLURM job arrays; fresh cells are skipped."""
    import json as jsonlib

    from stages.engine.loop import Cadence
    from stages.errors import UsageError, check_choices
    from stages.store.artifacts import default_cache_dir
    from stages.sweep.grid import load_grid

    check_choices((executor, ("local", "slurm"), "--executor"))
    n_jobs = None if jobs == "auto" else (int(jobs) if jobs.isdigit() and int(jobs) >= 1 else 0)
    if n_jobs == 0 or checkpoint_every < 0 or checkpoint_seconds <= 0:
        raise UsageError("--jobs must be auto or >= 1, --checkpoint-every >= 0 and --checkpoint-seconds > 0")
    slurm_given = [flag for flag, value in (("--slurm-partition", slurm_partition), ("--slurm-time", slurm_time),
                                            ("--slurm-cpus", slurm_cpus), ("--slurm-gpus", slurm_gpus),
                                            ("--slurm-array-parallelism", slurm_array_parallelism),
                                            ("--slurm-option", slurm_option), ("--cells-per-task", cells_per_task),
                                            ("--log-dir", log_dir)) if value]
    if executor == "local" and slurm_given:
        raise UsageError(f"{slurm_given[0]} applies to --executor slurm", fix="add --executor slurm, or drop it")
    if executor == "slurm" and jobs != "auto":
        raise UsageError("--jobs applies to --executor local", fix="use --slurm-cpus for the CPUs of a task")
    cache = (cache_dir or default_cache_dir()).resolve()
    g = load_grid(grid)
    cadence = Cadence(checkpoint_every, checkpoint_seconds)
    if executor == "local":
        if dry_run:
            return _dry_run_local(g, cache, force, json)
        from stages.runtime import progress
        from stages.sweep.run import run_local

        entry = run_local(g, cache, force, n_jobs, cadence, progress.task if progress.enabled() else None)
        info(f"[green]sweep[/] {g.name}: trained {len(entry['trained'])}, reused {len(entry['reused'])}"
             + (f", evaluated {len(entry['evaluated'])}" if g.evaluate else "") + f" ({len(g.cells)} cells)")
        if json:
            typer.echo(jsonlib.dumps(entry, default=str))
        else:
            for path in entry["paths"].values():
                typer.echo(path)
        return
    from stages.sweep import slurm

    opts = slurm.SlurmOptions(partition=slurm_partition, time=slurm_time or "60", cpus=slurm_cpus, gpus=slurm_gpus,
                              array_parallelism=slurm_array_parallelism, extra=_key_values(slurm_option))
    params = opts.parameters()
    if dry_run:
        plan, arrays, busy = slurm.prepare_submission(g, cache, cells_per_task, force, cadence=cadence)
        described = slurm.describe(arrays, params, f"climd-{g.name}")
        if json:
            typer.echo(jsonlib.dumps({"sweep": g.name, "plan": plan.summary(), "still_queued": busy,
                                      "arrays": described}, default=str))
            return
        typer.echo(f"sweep {g.name}: {plan.summary()}" + (f"; {len(busy)} still queued" if busy else ""))
        for i, array in enumerate(described, 1):
            typer.echo(f"array {i}/{len(described)}: {array['stage']}, {len(array['tasks'])} task(s)")
            typer.echo("  submitit: " + " ".join(f"{k}={v}" for k, v in array["parameters"].items()))
            for task in array["tasks"]:
                typer.echo(f"  task {task['task']} ({len(task['does'])}): {' '.join(task['does'])}")
        if not described:
            typer.echo("nothing to submit: " + (f"{len(busy)} cell(s) still queued or running from an earlier "
                                                "submission, the others fresh" if busy else "every cell is fresh"))
        return
    entry, submitted = slurm.submit_sweep(g, cache, opts, cells_per_task, log_dir=log_dir, force=force, cadence=cadence)
    # each "submitted STAGE: job N" line is logged once, by submit_arrays, as it is submitted
    info(f"sweep {g.name}: {entry['plan']}; logs in {entry['log_dir']}; `climd status --sweep {g.name}` follows it"
         if submitted else f"sweep {g.name}: nothing to submit ({entry['plan']})")
    if json:
        typer.echo(jsonlib.dumps(entry, default=str))
    else:
        for s in submitted:
            typer.echo(s.job_id)


def _dry_run_local(g, cache: Path, force: bool, as_json: bool) -> None:
    import json as jsonlib

    from stages.sweep.run import plan

    p = plan(g, cache, force)
    upstream = {stage: runs for stage, runs in p.upstream.items() if runs}
    if as_json:
        typer.echo(jsonlib.dumps({"sweep": g.name, "plan": p.summary(), "upstream": upstream,
                                  "train": [c.key for c in p.todo]}))
        return
    typer.echo(f"sweep {g.name}: {p.summary()}")
    for stage, runs in upstream.items():
        typer.echo(f"{stage}: {' '.join(runs)}")
    for cell in p.todo:
        typer.echo(f"train: {cell.key}")


def _key_values(items: Optional[list[str]]) -> dict:
    from stages.errors import UsageError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-option {item!r} is not KEY=VALUE", fix="e.g. --slurm-option mem=16G")
        out[key.strip()] = value.strip()
    return out
