"""Test-set metrics, all from scikit-learn: the paper's three (accuracy, weighted F1, macro F1)
plus balanced accuracy, macro one-vs-rest AUC, per-class recall, the confusion matrix and, for two
classes, sensitivity and specificity: the recall of the positive class and of the other one. The
positive class is ``positive`` (an index), class 1 when not given; ``positive_class`` names it.
``climd report`` recomputes both from the per-class recalls with its own positive class (default:
the training minority)."""
from __future__ import annotations

import numpy as np

HEADLINE = ["accuracy", "f1_weighted", "f1_macro", "balanced_accuracy", "auc_macro"]


def compute(y_true: np.ndarray, proba: np.ndarray, class_names: list[str], positive: int | None = None) -> dict:
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                                 recall_score)

    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", labels=labels, zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "auc_macro": auc(y_true, proba),
        "recall": dict(zip(class_names, recall_score(y_true, y_pred, labels=labels, average=None,
                                                     zero_division=0).astype(float).tolist())),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": class_names,
    }
    if len(class_names) == 2:
        cm = np.array(out["confusion_matrix"])
        pos = 1 if positive is None else int(positive)
        out["positive_class"] = class_names[pos]
        out["sensitivity"] = float(cm[pos, pos] / max(cm[pos].sum(), 1))
        out["specificity"] = float(cm[1 - pos, 1 - pos] / max(cm[1 - pos].sum(), 1))
    return out


def auc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary AUC of class 1, or macro one-vs-rest AUC; None when a class is absent from y_true."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y_true)
    if len(present) < proba.shape[1]:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                               labels=list(range(proba.shape[1]))))
