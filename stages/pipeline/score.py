"""Stage ``score``: the difficulty r(x_i) of every *training* sample (paper Eq. 1-4).

``folds=1`` scores each sample with probes trained on it (the paper's literal reading);
``folds=K`` cross-fits: each sample is scored by probes that never saw it. Test samples are never
read beyond their split label.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from stages.data import features
from stages.method import measures
from stages.core import tables
from stages.store.atomic import atomic_write_text
from stages.errors import DataError, UsageError, check_choices
from stages.method.probes import HEADS, ProbeOptions, fit_predict
from stages.store.artifacts import Artifact, RunStore
from stages.core.names import check_name

STAGE, VERSION = "score", 1
FILE = "scores.csv"
EASY = ("high", "low")
log = logging.getLogger("climd")


@dataclass
class ScoreOptions:
    folds: int = 1
    measure: str = "both"
    combine: str = "sum"
    easy: str = "high"
    seed: int = 0
    probe: ProbeOptions = field(default_factory=ProbeOptions)

    def check(self) -> None:
        check_choices((self.measure, measures.MEASURE, "--measure"), (self.combine, measures.COMBINE, "--combine"),
                      (self.easy, EASY, "--easy"), (self.probe.head, HEADS, "--probe-head"))
        if self.folds < 1:
            raise UsageError("--folds must be >= 1")


def artifact_name(tag: str | None) -> str:
    return STAGE + (f".{check_name(tag, 'tag')}" if tag else "")


def run(store: RunStore, opts: ScoreOptions, tag: str | None = None, force: bool = False) -> tuple[Artifact, bool]:
    opts.check()
    enc = store.load("encode")
    params = asdict(opts)
    return store.build(artifact_name(tag), STAGE, VERSION, params, {"encode": enc.ref()},
                       lambda out: _write(out, enc, opts), force=force)


def _write(out, enc: Artifact, opts: ScoreOptions) -> dict:
    feats = features.read(enc.file(features.FILE))
    table, summary = compute(feats, opts)
    atomic_write_text(out / FILE, tables.to_csv(table, "%.8g"))
    return summary


def compute(feats: features.Features, opts: ScoreOptions) -> tuple[dict, dict]:
    """The scores table (columns as arrays) and the summary of the score artifact."""
    train = feats.indices("train")
    y = feats.labels[train]
    xs = {m: x[train].astype(np.float64) for m, x in feats.modalities.items()}
    logp, F, fold = _probe_outputs(xs, y, feats.n_classes, opts, feats.class_names)
    mods = list(xs)
    psi = {m: measures.intra_confidence(logp[m], y) for m in mods}
    psi_mean = np.mean([psi[m] for m in mods], axis=0)
    if len(mods) < 2 and opts.measure != "intra":
        log.warning("one modality only: the inter-modal term phi is 0 for every sample")
    phi = measures.inter_complementarity([F[m] for m in mods])
    r = measures.combine(phi, psi_mean, opts.measure, opts.combine)
    order = measures.easy_to_hard(r, y, opts.easy)
    table = {"id": feats.ids[train], "label": y,
             "class": np.array([feats.class_names[c] for c in y], dtype=object), "fold": fold,
             **{f"psi_{m}": psi[m] for m in mods}, "psi_mean": psi_mean, "phi": phi,
             "r": r, "order_in_class": order}
    accuracy = {m: round(float((logp[m].argmax(1) == y).mean()), 4) for m in mods}
    return table, _summary(table, opts, accuracy, feats.class_names)


def _probe_outputs(xs, y, n_classes, opts: ScoreOptions, class_names):
    if opts.folds == 1:
        logp, F = fit_predict(xs, y, xs, n_classes, opts.probe, opts.seed)
        return logp, F, np.zeros(len(y), dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < opts.folds:
        c = int(counts.argmin())
        raise DataError(f"class {class_names[c]!r} has {counts[c]} training samples; --folds {opts.folds} "
                        f"needs at least {opts.folds} per class", fix=f"use --folds {max(2, counts.min())} or fewer")
    from sklearn.model_selection import StratifiedKFold

    logp = {m: np.zeros((len(y), n_classes)) for m in xs}
    F = {m: np.zeros((len(y), opts.probe.hidden)) for m in xs}
    fold = np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedKFold(opts.folds, shuffle=True, random_state=opts.seed)
    for k, (fit_idx, held) in enumerate(splitter.split(np.zeros(len(y)), y)):
        lp, f = fit_predict({m: x[fit_idx] for m, x in xs.items()}, y[fit_idx],
                            {m: x[held] for m, x in xs.items()}, n_classes, opts.probe, opts.seed + k)
        for m in xs:
            logp[m][held], F[m][held] = lp[m], f[m]
        fold[held] = k
    return logp, F, fold


def _summary(table: dict, opts: ScoreOptions, accuracy: dict, class_names: list[str]) -> dict:
    def rho(a, b):
        value = tables.spearman(table[a], table[b])
        return None if np.isnan(value) else round(value, 4)

    stats = {col: {"min": float(table[col].min()), "max": float(table[col].max()),
                   "std": float(np.std(table[col], ddof=1)) if len(table[col]) > 1 else float("nan")}
             for col in ("psi_mean", "phi", "r")}
    by_class = {name: round(float(table["r"][table["class"] == name].mean()), 4)
                for name in dict.fromkeys(table["class"].tolist())}
    return {"n_train": len(table["id"]), "class_names": class_names, "folds": opts.folds, "measure": opts.measure,
            "combine": opts.combine, "easy": opts.easy, "spearman_r_phi": rho("r", "phi"),
            "spearman_r_psi": rho("r", "psi_mean"), "stats": stats, "probe_accuracy": accuracy,
            "probe_accuracy_is": "in-sample" if opts.folds == 1 else "out-of-fold",
            "mean_r_by_class": by_class}


def load_order(artifact: Artifact) -> dict:
    """scores.csv of a score artifact (columns as arrays), with the easy->hard position per class."""
    return tables.read_csv(artifact.file(FILE), {"id": str, "label": int, "fold": int, "order_in_class": int,
                                                 "r": float, "phi": float, "psi_mean": float})
