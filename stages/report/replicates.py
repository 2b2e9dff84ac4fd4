"""Which replicates a report would leave out: incomplete ones (killed, or being written now by a live
holder) and missing ones (a seed other variants of the run have), each with its fix."""
from __future__ import annotations

import json

from stages.core import safefs
from stages.store import layout
from stages.store.artifacts import META, RunStore


def replicate_dirs(store: RunStore, prefix: str):
    """(variant, seed, folder) of every ``<prefix>/<variant>/seed<k>/`` folder, complete or not."""
    return layout.replica_dirs(store.path(prefix))


def _finish_fix(store: RunStore, variant: str, seed: int) -> str:
    """The command that finishes an interrupted training: the one recorded for a sibling seed, if any."""
    for _, other, sdir in replicate_dirs(store, layout.TRAIN):
        meta = sdir / META
        if sdir.parent.name == variant and other != seed and meta.is_file():
            try:   # bounded, never through a link or from a FIFO
                command = json.loads(safefs.read_text(meta, "meta")).get("command")
            except (OSError, ValueError, AttributeError):
                command = None
            if command:
                return (f"rerun the train command of variant {variant} for seed {seed} in run {store.run} "
                        f"(it resumes from its checkpoint); seed {other} was trained by `{command}`")
    return (f"rerun `climd train --run {store.run} --seed {seed} ...` with the options of variant {variant} "
            "(it resumes from its checkpoint)")


def find_incomplete(stores: list[RunStore], split: str, relevant=None) -> list[dict]:
    """Train folders without meta.json (killed or still running), and evaluation folders without it.
    A folder with a live lease is being written now: its fix is to wait, not to rerun."""
    from stages.store.lease import LEASE_FILE, holder_text, read_record, record_status

    found = []
    for store in stores:
        for stage, prefix in (("train", layout.TRAIN), ("evaluate", layout.eval_dir(split))):
            for variant, seed, sdir in replicate_dirs(store, prefix):
                if (sdir / META).is_file() or (relevant is not None and not relevant(variant)):
                    continue
                rec, st = read_record(sdir / LEASE_FILE)
                if rec is not None and record_status(rec, st) == "live":
                    found.append({"run": store.run, "variant": variant, "seed": seed, "stage": stage,
                                  "path": str(sdir), "live": holder_text(rec),
                                  "fix": f"wait for {holder_text(rec)} to finish it, then rerun the report"})
                    continue
                fix = (_finish_fix(store, variant, seed) if stage == "train"
                       else f"rerun `climd evaluate --run {store.run} --split {split}`")
                found.append({"run": store.run, "variant": variant, "seed": seed, "stage": stage,
                              "path": str(sdir), "fix": fix})
    return found


def find_missing(stores: list[RunStore], split: str, relevant=None) -> list[dict]:
    """Replicates with no folder at all: a seed that some variant of a run has (trained or evaluated)
    and another variant of that run has neither trained nor evaluated, so its n is silently smaller."""
    found = []
    for store in stores:
        seeds: dict[str, set] = {}
        for prefix in ("train", f"eval-{split}"):
            for variant, seed, _ in replicate_dirs(store, prefix):
                seeds.setdefault(variant, set()).add(seed)
        every = set().union(*seeds.values()) if seeds else set()
        for variant in sorted(seeds):
            if relevant is None or relevant(variant):
                found += [{"run": store.run, "variant": variant, "seed": s} for s in sorted(every - seeds[variant])]
    return found
