"""Stage ``evaluate``: the final-epoch model of a (variant, seed) on a held-out split.

There is no model selection on the test set: the model evaluated is the one training ended with.
``--split valid`` evaluates on a validation split (carved from training data by ``encode``) for
choosing hyper-parameters."""
from __future__ import annotations

import numpy as np

from . import features, metrics, reference, train
from .atomic import atomic_write_json
from .errors import DataError, UsageError
from .store import Artifact, RunStore

STAGE, VERSION = "evaluate", 1
SPLITS = ("test", "valid")


def artifact_name(split: str, variant: str, seed: int) -> str:
    return f"eval-{split}/{variant}/seed{seed}"


def run(store: RunStore, variant: str, seed: int, split: str = "test", force: bool = False) -> tuple[Artifact, bool]:
    if split not in SPLITS:
        raise UsageError(f"unknown --split {split!r}", fix="use test or valid")
    trained = store.load(train.artifact_name(variant, seed))
    enc = store.load("encode")
    return store.build(artifact_name(split, variant, seed), STAGE, VERSION, {"split": split},
                       {"train": trained.ref(), "encode": enc.ref()},
                       lambda out: _write(out, trained, enc, split), force=force)


def trained_variants(store: RunStore) -> list[tuple[str, int]]:
    """(variant, seed) of every complete train artifact of the run."""
    out = []
    for a in store.list("train"):
        _, variant, seed = a.name.split("/")
        out.append((variant, int(seed.removeprefix("seed"))))
    return out


def _write(out, trained: Artifact, enc: Artifact, split: str) -> dict:
    feats = features.read(enc.file(features.FILE), stages=bool(_needs_stages(trained)))
    rows = feats.indices(split)
    if len(rows) == 0:
        raise DataError(f"the data of this run has no {split!r} split",
                        fix="rerun `climd encode` with --val-fraction" if split == "valid" else None)
    import pandas as pd

    proba = predict(trained, feats, rows)
    y = feats.labels[rows]
    result = metrics.compute(y, proba, feats.class_names)
    table = pd.DataFrame({"id": feats.ids[rows], "true": [feats.class_names[c] for c in y],
                          "pred": [feats.class_names[c] for c in proba.argmax(1)]})
    for c, name in enumerate(feats.class_names):
        table[f"p_{name}"] = proba[:, c]
    table.to_csv(out / "predictions.csv", index=False, float_format="%.8g")
    atomic_write_json(out / "metrics.json", result)
    return {k: result[k] for k in metrics.HEADLINE} | {"split": split, "n": result["n"]}


def _needs_stages(trained: Artifact) -> bool:
    from . import models

    model = models.registry().get(trained.params["model"])
    return bool(model and model.needs_stages)


def predict(trained: Artifact, feats: features.Features, rows: np.ndarray, batch: int = 256) -> np.ndarray:
    import torch

    if trained.params["model"] in reference.MODELS:
        return reference.predict(trained.file(reference.FILE), feats, rows)
    model, state = train.load_model(trained)
    arrays = train.model_inputs(feats)
    names = list(state["input_shapes"])
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            idx = rows[start:start + batch]
            inputs = {k: torch.as_tensor(arrays[k][idx], dtype=torch.float32) for k in names}
            out.append(torch.softmax(model(inputs).logits, dim=1).numpy())
    return np.vstack(out).astype(np.float64)


def load_metrics(artifact: Artifact) -> dict:
    import json

    return json.loads(artifact.file("metrics.json").read_text())
