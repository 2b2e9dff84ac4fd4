"""Stage ``evaluate``: the final-epoch model of a (variant, seed) on a held-out split.

There is no model selection on the test set: the model evaluated is the one training ended with.
``--split valid`` evaluates on a validation split (carved from training data by ``encode``) for
choosing hyper-parameters."""
from __future__ import annotations

import numpy as np

from stages.data import features
from stages.core import metrics
from stages.method import reference
from stages.core import tables
from stages.pipeline import train
from stages.store.atomic import atomic_write_json, atomic_write_text
from stages.errors import DataError, UsageError
from stages.store import layout
from stages.store.artifacts import Artifact, RunStore

STAGE, VERSION = "evaluate", 1
SPLITS = ("test", "valid")


def artifact_name(split: str, variant: str, seed: int) -> str:
    return layout.eval_name(split, variant, seed)


def run(store: RunStore, variant: str, seed: int, split: str = "test", force: bool = False) -> tuple[Artifact, bool]:
    if split not in SPLITS:
        raise UsageError(f"unknown --split {split!r}", fix="use test or valid")
    trained = load_trained(store, variant, seed)
    enc = store.load("encode")
    return store.build(artifact_name(split, variant, seed), STAGE, VERSION, {"split": split},
                       {"train": trained.ref(), "encode": enc.ref()},
                       lambda out: _write(out, trained, enc, split), force=force)


def load_trained(store: RunStore, variant: str, seed: int) -> Artifact:
    """The train artifact of (variant, seed), complete, with its files unchanged (hashes in meta.json)
    and fresh against its encode (and schedule) artifact; else Missing/StaleArtifactError."""
    return store.load(train.artifact_name(variant, seed))


def incomplete_trainings(store: RunStore) -> list:
    """Train folders that are not complete artifacts (killed, still running, or with a damaged
    meta.json): the StaleArtifactError explaining each, its ``.name`` the artifact name."""
    return [item for item in store.scan("train") if not isinstance(item, Artifact)]


def trained_variants(store: RunStore) -> list[tuple[str, int]]:
    """(variant, seed) of every complete train artifact of the run."""
    out = []
    for a in store.list("train"):
        name = layout.parse(a.name)
        out.append((name.variant, name.seed))
    return out


def _write(out, trained: Artifact, enc: Artifact, split: str) -> dict:
    feats = features.read(enc.file(features.FILE), stages=bool(_needs_stages(trained)))
    rows = feats.indices(split)
    if len(rows) == 0:
        raise DataError(f"the data of this run has no {split!r} split",
                        fix="rerun `climd encode` with --val-fraction" if split == "valid" else None)
    proba = predict(trained, feats, rows)
    y = feats.labels[rows]
    counts = np.asarray(enc.summary.get("train_class_counts") or feats.counts("train"))
    # two classes: the training split's minority is "positive" (as in `climd report`; a tie: class 1)
    positive = (0 if counts[0] < counts[1] else 1) if len(feats.class_names) == 2 else None
    result = metrics.compute(y, proba, feats.class_names, positive=positive)
    table = {"id": feats.ids[rows], "true": [feats.class_names[c] for c in y],
             "pred": [feats.class_names[c] for c in proba.argmax(1)],
             **{f"p_{name}": proba[:, c] for c, name in enumerate(feats.class_names)}}
    atomic_write_text(out / "predictions.csv", tables.to_csv(table, "%.8g"))
    atomic_write_json(out / "metrics.json", result)
    return {k: result[k] for k in metrics.HEADLINE} | {"split": split, "n": result["n"]}


def _needs_stages(trained: Artifact) -> bool:
    from stages.engine.replicas import needs_stages

    return needs_stages(trained.params["model"])


def predict(trained: Artifact, feats: features.Features, rows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Class probabilities of ``rows`` (float64), from the model file (hash-checked, no pickle)."""
    if trained.params["model"] in reference.MODELS:
        return reference.predict(trained.file(reference.FILE), feats, rows)
    import torch

    from stages.runtime import threads
    from stages.engine.replicas import load_model, model_inputs

    threads.apply_to_torch()
    model, flat, meta = load_model(trained)
    params = model.bind(flat)
    model.train_mode(False)
    arrays = model_inputs(feats)
    used = meta.get("inputs_used") or list(meta["input_shapes"])
    for name in used:
        shape = meta["input_shapes"][name]
        have = arrays.get(name)
        if have is None or list(have.shape[1:]) != list(shape):
            raise DataError(f"{trained.path}: the model was trained on input {name!r} of shape {shape}, but the "
                            f"features hold {None if have is None else list(have.shape[1:])}",
                            fix="evaluate with the encode artifact the model was trained on")
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            idx = rows[start:start + batch]
            inputs = {k: torch.as_tensor(arrays[k][idx], dtype=torch.float32).unsqueeze(0) for k in used}
            logits = model.forward(params, inputs, None).logits[0]
            out.append(torch.softmax(logits.double(), dim=1).numpy())
    return np.vstack(out)
