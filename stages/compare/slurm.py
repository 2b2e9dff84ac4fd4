"""``climd compare --executor slurm``: the protocol as the job arrays of a sweep (encode, score,
fit-dist, schedule, then train + evaluate), through :mod:`stages.sweep.slurm`. The verdict needs every
cell: once the arrays have finished, the same ``climd compare`` with ``--executor local`` reuses them
all and writes it (``climd status --sweep NAME-compare`` follows the cells meanwhile)."""
from __future__ import annotations

from stages.compare.protocol import Setup, cells, dataset_facts, encode_options
from stages.sweep.grid import Grid


def grid(s: Setup) -> Grid:
    """The compare protocol as a sweep grid: run template NAME-r{seed} over the replicates ({seed} is
    the replicate here: encode's resplit and seed), with the panel's cells on every replicate."""
    enc = {**encode_options(s, 0, dataset_facts(s)), "seed": "{seed}"}
    enc.update({"split-file": s.split_files.replace("{k}", "{seed}")} if s.split_files else {"resplit": "{seed}"})
    upstream: dict[str, list[dict]] = {"encode": [enc]}
    for stage, opts in s.panel.upstream():
        upstream.setdefault(stage, []).append(opts)
    all_cells = [c for _, row_cells in cells(s) for c in row_cells]
    name = f"{s.name}-compare"
    return Grid(path=s.out / f"{name}.yaml", name=name, runs=[f"{s.name}-r{{seed}}"],
                seeds=list(range(s.replicates)), upstream=upstream, evaluate=["valid", "test"],
                cells=all_cells, raw={"compare": s.name, "panel": s.panel.source, "replicates": s.replicates,
                                      "seeds": len(s.seeds)})


def submit(s: Setup, options, dry_run: bool = False, force: bool = False) -> dict:
    from stages.sweep import slurm

    g = grid(s)
    then = (f"when the arrays have finished, rerun this command with --executor local: it reuses every "
            f"cell and writes the verdict to {s.out}")
    if dry_run:
        p, arrays, busy = slurm.prepare_submission(g, s.cache_dir, None, force)
        described = slurm.describe(arrays, options.parameters(), f"climd-{g.name}")
        tasks = [{"stage": a["stage"], "task": t["task"], "does": t["does"]} for a in described for t in a["tasks"]]
        return {"summary": f"compare {s.name} on SLURM: {p.summary()}; {len(described)} array(s); {then}",
                "arrays": described, "tasks": tasks, "still_queued": busy}
    entry, submitted = slurm.submit_sweep(g, s.cache_dir, options, None, force=force)
    return {"summary": f"compare {s.name}: submitted {', '.join(f'{x.stage} job {x.job_id}' for x in submitted) or 'nothing'}"
                       f"; {then}", **entry}
