"""Stage ``schedule``: per-epoch training subsets (one id file per epoch) from the difficulty order
and, for CLIMD, the fitted class distribution (paper Eq. 7).

``climd`` takes, from each class, the first s_t(c) samples of its easy->hard order. The pacing
baselines order the whole training set easy->hard (ignoring classes) and take a growing prefix
(linear/root/geom), a growing union of buckets (baby-step) or one bucket at a time (one-pass).
``order=random`` replaces the easy->hard order by a seeded random one (a chance control).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import numpy as np

from stages.pipeline import fit_dist
from stages.method import pacing
from stages.pipeline import score
from stages.store.atomic import atomic_write_json
from stages.errors import UsageError, check_choices
from stages.store.artifacts import Artifact, RunStore
from stages.core.names import check_name
from stages.store import layout
from stages.store.layout import epoch_file  # noqa: F401  (re-exported: the schedule's files)


STAGE, VERSION = "schedule", 1
FILE = "schedule.json"
ORDERS = ("score", "random")


@dataclass
class ScheduleOptions:
    epochs: int = 100
    pacing: str = "climd"
    overflow: str = "redistribute"
    order: str = "score"
    order_seed: int = 0
    buckets: int = 10
    c0: float = 0.01

    def check(self) -> None:
        check_choices((self.pacing, pacing.PACINGS, "--pacing"), (self.overflow, pacing.OVERFLOW, "--overflow"),
                      (self.order, ORDERS, "--order"))
        if self.epochs < 1:
            raise UsageError("--epochs must be >= 1")
        if not 0 < self.c0 <= 1:
            raise UsageError("--c0 must be in (0, 1]")
        if self.pacing in ("baby-step", "one-pass") and not 1 <= self.buckets <= self.epochs:
            raise UsageError("--buckets must be between 1 and --epochs")


def artifact_name(pacing_name: str, tag: str | None = None) -> str:
    """``schedule`` for CLIMD, ``schedule.<pacing>`` for a baseline pacing, unless tagged."""
    tag = tag if tag is not None else (None if pacing_name == "climd" else pacing_name)
    return layout.tagged(STAGE, check_name(tag, "tag") if tag else None)


def run(store: RunStore, opts: ScheduleOptions, tag: str | None = None, score_tag: str | None = None,
        dist_tag: str | None = None, force: bool = False) -> tuple[Artifact, bool]:
    opts.check()
    scored = store.load(score.artifact_name(score_tag))
    inputs = {"score": scored.ref()}
    dist = None
    if opts.pacing == "climd":
        dist_artifact = store.load(fit_dist.artifact_name(dist_tag))
        inputs["dist"] = dist_artifact.ref()
        dist = fit_dist.load(dist_artifact)
    params = asdict(opts)
    return store.build(artifact_name(opts.pacing, tag), STAGE, VERSION, params, inputs,
                       lambda out: _write(out, scored, dist, opts), force=force)


def _write(out, scored: Artifact, dist: dict | None, opts: ScheduleOptions) -> dict:
    table = score.load_order(scored)
    names = scored.summary["class_names"]
    plan = build_plan(table, names, scored.params["easy"], dist, opts)
    for t, ids in enumerate(plan["ids"], start=1):
        layout.write_epoch_ids(out / epoch_file(t), ids)
    atomic_write_json(out / FILE, plan["json"])
    return plan["summary"]


def class_order(table: dict, n_classes: int, order: str, seed: int) -> list[np.ndarray]:
    """Ids of each class, easy->hard (or a seeded random order)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        rows = np.flatnonzero(table["label"] == c)
        rows = rows[np.argsort(table["order_in_class"][rows], kind="stable")]
        ids = table["id"][rows]
        out.append(rng.permutation(ids) if order == "random" else ids)
    return out


def global_order(table: dict, easy: str, order: str, seed: int) -> np.ndarray:
    if order == "random":
        return np.random.default_rng(seed).permutation(table["id"])
    key = -table["r"] if easy == "high" else table["r"]
    return table["id"][np.argsort(key, kind="stable")]


def build_plan(table: dict, names: list[str], easy: str, dist: dict | None, opts: ScheduleOptions) -> dict:
    counts = np.bincount(table["label"], minlength=len(names))
    if opts.pacing == "climd":
        ids, epochs = _climd(table, names, counts, dist, opts)
    else:
        ids, epochs = _global(table, names, easy, opts)
    label_of = dict(zip(table["id"], table["label"]))
    per_class = [np.bincount([label_of[i] for i in e], minlength=len(names)) for e in ids]
    for rec, c in zip(epochs, per_class):
        rec["counts"] = dict(zip(names, c.tolist()))
        rec["size"] = int(c.sum())
    used = set().union(*map(set, ids)) if ids else set()
    summary = {
        "pacing": opts.pacing, "epochs": opts.epochs, "n_train": int(counts.sum()),
        "classes": names, "class_counts": counts.tolist(),
        "first_epoch": epochs[0]["counts"], "last_epoch": epochs[-1]["counts"],
        "last_epoch_is_full_set": len(ids[-1]) == len(table["id"]) and set(ids[-1]) == set(table["id"]),
        "samples_over_all_epochs": int(sum(len(e) for e in ids)),
        "never_scheduled": int(len(table["id"]) - len(used)),
        "epochs_with_an_empty_class": [r["t"] for r, c in zip(epochs, per_class) if (c == 0).any()],
        "alpha_T": None if dist is None else dist["alpha_T"],
    }
    meta = {**asdict(opts), "classes": names, "class_counts": counts.tolist(), "easy": easy,
            "alpha_T": summary["alpha_T"], "gamma": None if dist is None else dist["gamma"],
            "ranks": None if dist is None else dist["ranks"], "status": None if dist is None else dist["status"],
            "per_epoch": epochs}
    return {"ids": ids, "json": meta, "summary": summary}


def _climd(table, names, counts, dist, opts):
    if dist["classes"] != names or dist["counts"] != counts.tolist():
        raise UsageError("the fit-dist and score artifacts disagree on the training classes",
                         fix="rerun `climd fit-dist` and `climd score` for this run")
    orders = class_order(table, len(names), opts.order, opts.order_seed)
    plans = pacing.climd(counts, dist["ranks"], dist["alpha_T"], dist["gamma"], opts.epochs, opts.overflow)
    ids, epochs = [], []
    for p in plans:
        ids.append([i for c in range(len(names)) for i in orders[c][:p.counts[c]]])
        epochs.append({"t": p.t, "S_t": p.size_target, "alpha_t": p.alpha,
                       "q": dict(zip(names, p.q.round(8).tolist())),
                       "target": dict(zip(names, p.target.round(6).tolist()))})
    return ids, epochs


def _global(table, names, easy, opts):
    ordered = global_order(table, easy, opts.order, opts.order_seed)
    N, T = len(ordered), opts.epochs
    ids, epochs = [], []
    if opts.pacing in ("baby-step", "one-pass"):
        buckets = np.array_split(ordered, opts.buckets)
        for t in range(1, T + 1):
            k = pacing.bucket_of_epoch(t, T, opts.buckets)
            used = list(range(1, k + 1)) if opts.pacing == "baby-step" else [k]
            ids.append([i for b in used for i in buckets[b - 1]])
            epochs.append({"t": t, "buckets": used})
    else:
        for t in range(1, T + 1):
            c = pacing.competence(opts.pacing, t, T, opts.c0)
            size = max(1, min(N, int(np.ceil(c * N - 1e-9))))
            ids.append(list(ordered[:size]))
            epochs.append({"t": t, "competence": round(c, 6)})
    return ids, epochs


def load(artifact: Artifact) -> dict:
    import json

    return json.loads(artifact.file(FILE).read_text())


def epoch_ids(artifact: Artifact, t: int) -> list[str]:
    """The ids of epoch ``t``: one per line (ids may contain spaces, so never split on whitespace)."""
    return layout.read_epoch_ids(artifact.file(epoch_file(t)))
