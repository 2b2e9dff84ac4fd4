"""Stage ``fit-dist``: the training class counts and the power-law fit alpha(T) (paper Eq. 5-6)."""
from __future__ import annotations

from stages.store.atomic import atomic_write_json
from stages.data.features import Features
from stages.data.features import read as read_features
from stages.method.powerlaw import PowerLawFit
from stages.store.artifacts import Artifact, RunStore
from stages.core.names import check_name

STAGE, VERSION = "fit-dist", 1
FILE = "dist.json"


def artifact_name(tag: str | None) -> str:
    return STAGE + (f".{check_name(tag, 'tag')}" if tag else "")


def run(store: RunStore, gamma: float = 0.3, tag: str | None = None, force: bool = False) -> tuple[Artifact, bool]:
    enc = store.load("encode")
    return store.build(artifact_name(tag), STAGE, VERSION, {"gamma": gamma}, {"encode": enc.ref()},
                       lambda out: _write(out, enc, gamma), force=force)


def _write(out, enc: Artifact, gamma: float) -> dict:
    dist = describe(read_features(enc.file("features.h5")), gamma)
    atomic_write_json(out / FILE, dist)
    return {k: dist[k] for k in ("status", "alpha_T", "gamma", "n_min", "counts")} | {"message": dist["message"]}


def describe(feats: Features, gamma: float) -> dict:
    fit = PowerLawFit(gamma).fit(feats.counts("train"))
    n = int(fit.counts_.sum())
    fitted = fit.probabilities() if fit.status_ == "ok" else None
    by_rank = sorted(range(fit.n_classes_), key=lambda c: fit.ranks_[c])
    return {
        "classes": feats.class_names, "counts": fit.counts_.tolist(), "ranks": fit.ranks_.tolist(),
        "gamma": gamma, "alpha_T": fit.alpha_, "gamma_alpha_T": None if fit.alpha_ is None else gamma * fit.alpha_,
        "n_min": fit.n_min_, "n_train": n, "status": fit.status_, "message": fit.message_,
        "fit_by_rank": [{"rank": r + 1, "class": feats.class_names[c], "count": int(fit.counts_[c]),
                         "observed_share": fit.counts_[c] / n,
                         "power_law_share": None if fitted is None else float(fitted[r])}
                        for r, c in enumerate(by_rank)],
    }


def load(artifact: Artifact) -> dict:
    import json

    return json.loads(artifact.file(FILE).read_text())
