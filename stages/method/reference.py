"""What a user would pick instead of a deep multimodal model, on the same encoded features: logistic
regression on the concatenated, standardised modality features (plain, class-balanced, and SMOTE +
LR as an imbalanced-learn pipeline), class-balanced histogram gradient boosting, and a balanced
random forest. They run through ``climd train --model`` so they appear in every report.

Storage never executes code: the fitted model is written with ``skops`` and loaded with an explicit
list of trusted types (:func:`trusted_types`, on top of skops' own defaults: numpy, builtins and scikit-learn
estimators). A file holding any other type, or no skops file at all (a pickle planted in its place),
is refused before anything in it is instantiated. No joblib or pickle, since caches are shared.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from stages.errors import StaleArtifactError, check_choices
from stages.data.features import Features

MODELS = ("logreg", "logreg-balanced", "smote-logreg", "hgb-balanced", "brf")
FILE = "model.skops"
LEGACY_FILE = "model.joblib"


@functools.lru_cache(maxsize=1)
def trusted_types() -> tuple[str, ...]:
    """Types a stored reference may hold beyond skops' defaults (nothing else is ever loaded), named
    from the public classes, so a library that moves a class keeps working. The two fitted-tree
    types have no public import; their names are taken from the instances themselves.
    ``tests/method/test_reference.py`` checks that this list covers what every reference model stores."""
    from imblearn.ensemble import BalancedRandomForestClassifier
    from imblearn.pipeline import Pipeline
    from imblearn.under_sampling import RandomUnderSampler
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    x, y = np.array([[0.0], [1.0], [0.0], [1.0]]), np.array([0, 1, 0, 1])
    tree = type(DecisionTreeClassifier(random_state=0).fit(x, y).tree_)
    predictor = type(HistGradientBoostingClassifier(max_iter=1, random_state=0).fit(x, y)._predictors[0][0])
    return tuple(f"{cls.__module__}.{cls.__qualname__}"       # derived once per process (two tiny fits)
                 for cls in (predictor, tree, BalancedRandomForestClassifier, Pipeline, RandomUnderSampler))


def design_matrix(feats: Features, rows: np.ndarray) -> np.ndarray:
    """Every modality's features side by side (stage tokens are not used)."""
    return np.hstack([feats.modalities[m][rows].reshape(len(rows), -1) for m in sorted(feats.modalities)])


def make(name: str, seed: int, counts: np.ndarray):
    """An unfitted estimator (every parameter explicit, so library default changes cannot move results)."""
    check_choices((name, MODELS, "--model"))
    if name == "hgb-balanced":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(class_weight="balanced", random_state=seed)
    if name == "brf":
        from imblearn.ensemble import BalancedRandomForestClassifier

        return BalancedRandomForestClassifier(n_estimators=100, sampling_strategy="all", replacement=True,
                                              bootstrap=False, random_state=seed, n_jobs=1)
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(max_iter=5000, class_weight="balanced" if name == "logreg-balanced" else None)
    steps = [("scale", StandardScaler())]
    if name == "smote-logreg":
        steps.append(("smote", SMOTE(random_state=seed, k_neighbors=min(5, int(counts.min()) - 1))))
    return Pipeline(steps + [("lr", lr)])


def predictor(model):
    """What predicts: a resampling pipeline without its samplers (they act only in ``fit``), so the
    stored file holds no SMOTE neighbour tree."""
    steps = getattr(model, "steps", None)
    if not steps or not any(hasattr(step, "fit_resample") for _, step in steps):
        return model
    from sklearn.pipeline import Pipeline

    return Pipeline([(n, s) for n, s in steps if not hasattr(s, "fit_resample")])


def iterations(model) -> int:
    """Solver iterations (LR), boosting iterations (HGB) or trees (BRF): the 'optimizer steps' column."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    if hasattr(est, "estimators_"):
        return len(est.estimators_)
    return int(np.max(est.n_iter_))


def fit(feats: Features, name: str, seed: int, out: Path) -> dict:
    train = feats.indices("train")
    y = feats.labels[train]
    model = make(name, seed, np.bincount(y)).fit(design_matrix(feats, train), y)
    save(Path(out) / FILE, model, feats)
    return {"epochs": 0, "finish_epochs": 0, "final_loss": float("nan"), "samples_seen": int(len(y)),
            "optimizer_steps": iterations(model), "train_class_counts": np.bincount(y, minlength=feats.n_classes).tolist(),
            "seconds": 0.0, "device": "cpu", "class_names": feats.class_names, "selected_epoch": None}


def save(path: Path, model, feats: Features) -> None:
    import skops.io as sio

    sio.dump({"model": predictor(model), "class_names": list(feats.class_names),
              "modalities": sorted(feats.modalities)}, Path(path))


def load(path: Path) -> dict:
    """The stored state, or StaleArtifactError naming the file (nothing untrusted is instantiated)."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    fix = (f"rebuild it: rerun the `climd train --model ...` command that wrote {path.parent} with --force "
           "(the file cannot be trusted)")
    if not path.is_file():
        legacy = path.with_name(LEGACY_FILE)
        if legacy.is_file():
            raise StaleArtifactError(f"{legacy} is a joblib pickle from an older climd; it is never loaded "
                                     "(a pickle can execute code)", fix=fix)
        raise StaleArtifactError(f"{path} is missing", fix=fix)
    try:
        state = sio.load(path, trusted=list(trusted_types()))
    except UntrustedTypesFoundException as exc:
        raise StaleArtifactError(f"{path} holds types outside climd's trusted list; refused without loading "
                                 f"them ({exc})", fix=fix) from None
    except Exception as exc:  # noqa: BLE001 - the trust boundary: any unreadable content is one named error
        raise StaleArtifactError(f"{path} is not a readable skops model file ({type(exc).__name__}: {exc})",
                                 fix=fix) from None
    if not isinstance(state, dict) or not hasattr(state.get("model"), "predict_proba"):
        raise StaleArtifactError(f"{path} does not hold a climd reference model", fix=fix)
    return state


def predict(path: Path, feats: Features, rows: np.ndarray) -> np.ndarray:
    state = load(path)
    if state.get("modalities") != sorted(feats.modalities):
        raise StaleArtifactError(f"{path} was fitted on modalities {state.get('modalities')}, not "
                                 f"{sorted(feats.modalities)}", fix="rerun `climd train --model ... --force`")
    return np.asarray(state["model"].predict_proba(design_matrix(feats, rows)), dtype=np.float64)
