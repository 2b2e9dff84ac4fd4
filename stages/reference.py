"""What a user would pick instead of a deep multimodal model: logistic regression on the
concatenated, standardised modality features (plain, class-balanced, and SMOTE + LR as an
imbalanced-learn pipeline). They run through ``climd train --model`` so they appear in every report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .features import Features

MODELS = ("logreg", "logreg-balanced", "smote-logreg")
FILE = "model.joblib"


def design_matrix(feats: Features, rows: np.ndarray) -> np.ndarray:
    """Every modality's features side by side (stage tokens are not used)."""
    return np.hstack([feats.modalities[m][rows].reshape(len(rows), -1) for m in sorted(feats.modalities)])


def make(name: str, seed: int, counts: np.ndarray):
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(max_iter=5000, class_weight="balanced" if name == "logreg-balanced" else None)
    steps = [("scale", StandardScaler())]
    if name == "smote-logreg":
        steps.append(("smote", SMOTE(random_state=seed, k_neighbors=min(5, int(counts.min()) - 1))))
    return Pipeline(steps + [("lr", lr)])


def fit(feats: Features, name: str, seed: int, out: Path) -> dict:
    import joblib

    train = feats.indices("train")
    y = feats.labels[train]
    model = make(name, seed, np.bincount(y)).fit(design_matrix(feats, train), y)
    joblib.dump({"model": model, "class_names": feats.class_names, "modalities": sorted(feats.modalities)}, out / FILE)
    n_iter = int(np.max(model.named_steps["lr"].n_iter_))
    return {"epochs": 0, "finish_epochs": 0, "final_loss": float("nan"), "samples_seen": int(len(y)),
            "optimizer_steps": n_iter, "train_class_counts": np.bincount(y, minlength=feats.n_classes).tolist(),
            "seconds": 0.0, "device": "cpu", "class_names": feats.class_names, "selected_epoch": None}


def predict(path: Path, feats: Features, rows: np.ndarray) -> np.ndarray:
    import joblib

    state = joblib.load(path)
    return state["model"].predict_proba(design_matrix(feats, rows))
