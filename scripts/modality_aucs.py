"""Per-modality probe AUCs of an encode artifact: how much class signal each modality's features carry.

    python scripts/modality_aucs.py CACHE/RUN/encode/features.h5 [--folds 5] [--repeats 3]

For each modality alone and for all modalities concatenated: a class-balanced logistic regression on
standardised features (scikit-learn; C=1), scored by the macro one-vs-rest ROC AUC of held-out
predictions over repeated stratified k-fold cross-validation on ALL samples (the encode split is not
used: with ~100 samples one test split of 30 % gives a noisy number). Mean and SD over the repeats.
A probe for the demo sets; not one of climd's stages.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def modality_aucs(path: Path, folds: int = 5, repeats: int = 3) -> dict[str, tuple[float, float]]:
    sys.path.insert(0, str(ROOT))
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from stages.data import features

    feats = features.read(path)
    y = feats.labels
    sets = {**feats.modalities, "all": np.hstack(list(feats.modalities.values()))}
    out = {}
    for name, x in sets.items():
        aucs = []
        for r in range(repeats):
            proba = np.zeros((len(y), feats.n_classes))
            for train, test in StratifiedKFold(folds, shuffle=True, random_state=r).split(x, y):
                model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000))
                model.fit(x[train], y[train])
                proba[test] = model.predict_proba(x[test])
            aucs.append(roc_auc_score(y, proba, multi_class="ovr", average="macro") if feats.n_classes > 2
                        else roc_auc_score(y, proba[:, 1]))
        out[name] = (float(np.mean(aucs)), float(np.std(aucs)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("features", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print("| modality | probe macro AUC (mean +- SD over repeats) |\n|---|---|")
    for name, (mean, sd) in modality_aucs(args.features, args.folds, args.repeats).items():
        print(f"| {name} | {mean:.3f} +- {sd:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
