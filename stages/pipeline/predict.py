"""``climd predict``: class probabilities for new, unlabelled samples from a trained (run, variant, seed).

The new samples are encoded with the run's *fitted* preprocessing, never refitted: each tabular
modality is standardised with the training split's mean and std stored in ``features.h5``
(``preprocessing/<modality>``; missing values filled from the training split only if the run was
encoded with ``--impute``), images and texts go through the same encoder, weights and options the
encode artifact records (and the weights must still hash as recorded). The modalities and feature
names must be the run's; columns in another order are put in the run's order by name.

The models are loaded exactly as ``evaluate`` loads them (:func:`stages.pipeline.evaluate.load_trained` and
:func:`stages.pipeline.evaluate.predict`: hash-checked safetensors or skops with a trusted-type list, no
pickle), so the probabilities of a sample equal ``evaluate``'s for the same sample.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.pipeline import evaluate
from stages.data import features
from stages.core import tables
from stages.data.adapters import DataOptions
from stages.data.adapters.unlabelled import NewSamples
from stages.errors import DataError, MissingArtifactError, StaleArtifactError, UsageError
from stages.store import layout
from stages.store.artifacts import Artifact, RunStore


@dataclass
class Fitted:
    """What the run's encode stage learned and used, read back from its artifact."""

    class_names: list[str]
    kinds: dict[str, str]                       # modality -> tabular | image | text | volume
    dims: dict[str, int]
    stats: dict[str, dict]                      # tabular modality -> mean, std, fill, names
    encoders: dict[str, dict]                   # modality -> the encoder record of encode
    params: dict                                # the encode artifact's params


@dataclass
class Prediction:
    run: str
    variant: str
    seeds: list[int]
    ids: np.ndarray
    class_names: list[str]
    proba: np.ndarray                           # [N, C] float64, mean over ``seeds``
    data: str
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> list[str]:
        return [self.class_names[c] for c in self.proba.argmax(1)]

    def to_csv(self) -> str:
        """id, pred, p_<class>... (the columns of evaluate's predictions.csv, less ``true``)."""
        return tables.to_csv({"id": self.ids, "pred": self.predicted,
                              **{f"p_{name}": self.proba[:, c] for c, name in enumerate(self.class_names)}},
                             "%.10g")

    def to_json(self) -> str:
        rows = [{"id": str(i), "pred": pred, "probabilities": dict(zip(self.class_names, map(float, p)))}
                for i, pred, p in zip(self.ids, self.predicted, self.proba)]
        return json.dumps({"run": self.run, "variant": self.variant, "seeds": self.seeds,
                           "ensemble": len(self.seeds) > 1, "data": self.data, "class_names": self.class_names,
                           "n": len(self.ids), "notes": self.notes, "predictions": rows})


def run(store: RunStore, variant: str, data: Path, fmt: str | None = None, seed: int | None = None,
        ensemble: bool = False, device: str = "cpu", batch_size: int = 32) -> Prediction:
    from stages.data.adapters import unlabelled
    from stages.engine.replicas import needs_stages

    if ensemble and seed is not None:
        raise UsageError("--seed and --ensemble both choose the models", fix="give one of them")
    enc = store.load("encode")
    trained, notes = trainings(store, variant, 0 if seed is None and not ensemble else seed)
    fitted = read_fitted(enc)
    run_modalities = list(enc.summary.get("modalities") or {}) or None   # a stray truth.csv is no input
    new = unlabelled.load(Path(data), fmt, recorded_data_options(enc), run_modalities)
    notes = new.notes + notes
    stages = any(needs_stages(t.params["model"]) for t in trained)
    feats = encode_new(new, fitted, Path(data), store.run, stages, device, batch_size, notes)
    rows = np.arange(new.n)
    proba = np.mean([evaluate.predict(t, feats, rows) for t in trained], axis=0)
    seeds = [layout.parse(t.name).seed for t in trained]
    return Prediction(store.run, variant, seeds, new.ids, fitted.class_names, proba, str(data), notes)


def trainings(store: RunStore, variant: str, seed: int | None) -> tuple[list[Artifact], list[str]]:
    """The trained models: seed ``seed``, or (None) every complete seed of ``variant``. Each passes
    evaluate's checks (complete, outputs unchanged, fresh against the encode artifact)."""
    trained = evaluate.trained_variants(store)
    if trained and variant not in {v for v, _ in trained}:
        import difflib

        known = sorted({v for v, _ in trained})
        close = difflib.get_close_matches(variant, known, 1, 0.6)
        raise MissingArtifactError(f"run {store.run!r} has no trained variant {variant!r}"
                                   + (f"; did you mean {close[0]!r}?" if close else ""),
                                   fix=f"choose --variant from the run's trained variants {known}")
    if seed is not None:
        return [evaluate.load_trained(store, variant, seed)], []
    seeds = sorted(s for v, s in trained if v == variant)
    broken = [e for e in evaluate.incomplete_trainings(store) if layout.parse(e.name).variant == variant]
    if not seeds:
        if broken:
            raise StaleArtifactError(f"no complete training of variant {variant!r} in run {store.run}: "
                                     + "; ".join(f"{e.name}: {e.message}" for e in broken),
                                     fix=broken[0].fix or "finish or retrain them")
        known = sorted({v for v, _ in evaluate.trained_variants(store)})
        raise MissingArtifactError(f"run {store.run!r} has no trained variant {variant!r}",
                                   fix=f"choose from {known}" if known else f"run `climd train --run {store.run}` first")
    notes = [f"ensemble of seeds {seeds} (the mean of their probabilities)"]
    notes += [f"{e.name} left out: {e.message}" for e in broken]
    return [evaluate.load_trained(store, variant, s) for s in seeds], notes


def recorded_data_options(enc: Artifact) -> DataOptions:
    """The data options the run was encoded with that decide modalities and their columns."""
    data = enc.params.get("data", {})
    keep = ("modalities", "task", "derm_tabular", "impute")
    return DataOptions(**{k: data[k] for k in keep if data.get(k) is not None})


def read_fitted(enc: Artifact) -> Fitted:
    from stages.encoders.tabular import TabularScaler

    path = enc.file(features.FILE)
    with features.open_h5(path) as h5:
        kinds, dims, stats, encoders = {}, {}, {}, {}
        for name in h5["modalities"]:
            dset = h5["modalities"][name]
            kinds[name], dims[name] = str(dset.attrs["kind"]), int(dset.shape[1])
            encoders[name] = json.loads(dset.attrs.get("encoder", "{}"))
            if kinds[name] == "tabular":
                pre = h5.get(f"preprocessing/{name}")
                if pre is None:
                    raise StaleArtifactError(f"{path} has no preprocessing/{name} (the training statistics)",
                                             fix=f"rerun `climd encode --run {enc.path.parent.name} --force`")
                stats[name] = {"scaler": TabularScaler.load(pre),
                               "names": pre["feature_names"].asstr()[...].tolist() if "feature_names" in pre else None}
        class_names = json.loads(h5.attrs["class_names"])
    return Fitted(class_names, kinds, dims, stats, encoders, enc.params)


def encode_new(new: NewSamples, fitted: Fitted, data: Path, run: str, stages: bool, device: str,
               batch_size: int, notes: list[str]) -> features.Features:
    """The new samples as the run's features (the run's modalities, in its order)."""
    check_modalities(new, fitted, data, run)
    mods, maps = {}, {}
    for name, kind in fitted.kinds.items():
        mod = new.modalities[name]
        if kind == "tabular":
            mods[name] = tabular(mod, fitted.stats[name], fitted.dims[name], new.ids, notes)
        elif kind == "image":
            mods[name], maps[name] = _image(mod, fitted, device, batch_size, stages, notes)
        elif kind == "volume":
            from stages.pipeline.encode_volume import encode_new as volume_features

            mods[name], maps[name] = volume_features(mod, fitted, _device(device, fitted, notes), batch_size, stages)
        else:
            mods[name] = _text(mod, fitted, device, batch_size, notes)
        if mods[name].shape[1] != fitted.dims[name]:
            raise DataError(f"{mod.source}: modality {name!r} encodes to {mods[name].shape[1]} features, but "
                            f"the run's have {fitted.dims[name]}", fix="use the data layout the run was encoded from")
    n = new.n
    return features.Features(ids=new.ids, labels=np.zeros(n, dtype=np.int64), split=np.full(n, "test", dtype=object),
                             class_names=fitted.class_names, modalities=mods, kinds=dict(fitted.kinds),
                             stages={k: v for k, v in maps.items() if v})


def check_modalities(new: NewSamples, fitted: Fitted, data: Path, run: str) -> None:
    missing = [m for m in fitted.kinds if m not in new.modalities]
    extra = [m for m in new.modalities if m not in fitted.kinds]
    kinds = [f"{m!r} is {new.modalities[m].kind} here but {fitted.kinds[m]} in the run"
             for m in fitted.kinds if m in new.modalities and new.modalities[m].kind != fitted.kinds[m]]
    problems = ([f"missing modality {missing}"] if missing else []) + \
               ([f"extra modality {extra}"] if extra else []) + kinds
    if problems:
        want = ", ".join(f"{m} ({k})" for m, k in fitted.kinds.items())
        raise DataError(f"{data}: the modalities do not match run {run!r}: {'; '.join(problems)}",
                        fix=f"give exactly the run's modalities, with the same names: {want}")


def tabular(mod, stats: dict, dim: int, ids: np.ndarray, notes: list[str]) -> np.ndarray:
    """Standardised with the run's training statistics (columns matched by feature name)."""
    x = np.array(mod.values, dtype=np.float64)
    want, have, name = stats["names"], mod.feature_names, mod.name
    if want is not None and have is not None and list(have) != list(want):
        have = [str(h) for h in have]
        dup = sorted({h for h in have if have.count(h) > 1})
        missing = [f for f in want if f not in set(have)]
        extra = [f for f in have if f not in set(want)]
        if dup or missing or extra:
            parts = ([f"{len(missing)} missing feature(s) {_few(missing)}"] if missing else []) + \
                    ([f"{len(extra)} extra feature(s) {_few(extra)}"] if extra else []) + \
                    ([f"duplicate feature names {_few(dup)}"] if dup else [])
            raise DataError(f"{mod.source}: modality {name!r} does not have the run's features: {'; '.join(parts)}",
                            fix=f"give the {len(want)} features the run was trained on, named as in its data "
                                "(order does not matter)")
        position = {h: i for i, h in enumerate(have)}
        x = x[:, [position[f] for f in want]]
        notes.append(f"modality {name!r}: columns reordered by name to the run's order")
    elif x.shape[1] != dim:
        raise DataError(f"{mod.source}: modality {name!r} has {x.shape[1]} features, but the run's has {dim}",
                        fix="give the features the run was trained on, in its order")
    elif (want is None) != (have is None):
        notes.append(f"modality {name!r}: no feature names on one side; columns matched by position")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v[0]) for v in np.nonzero(bad))
        column = want[c] if want is not None else f"column {c + 1}"
        scaler = stats["scaler"]
        if np.isinf(x).any() or scaler.fill_ is None:
            raise DataError(f"{mod.source}: modality {name!r} has {int(bad.sum())} missing or infinite value(s), "
                            f"first at sample {ids[r]!r}, feature {column!r}",
                            fix="fill them (the run was encoded without --impute, so it has no fill values)"
                            if scaler.fill_ is None else "replace the infinite values")
        notes.append(f"modality {name!r}: {int(bad.sum())} missing value(s) filled with the training split's "
                     "values, as the run's --impute did")
    return stats["scaler"].transform(x, where=lambda r, c: (str(mod.source), f"sample {ids[r]!r}, column {c + 1}"))


def _few(items: list[str], k: int = 5) -> str:
    return str(items[:k])[:-1] + (", ...]" if len(items) > k else "]")


def _device(device: str, fitted: Fitted, notes: list[str]) -> str:
    from stages.runtime import device as devices

    dev = devices.resolve(device)
    compute = "cuda-amp" if dev.startswith("cuda") else "cpu-fp32"
    if fitted.params.get("compute") not in (None, compute):
        notes.append(f"the run's features were computed with {fitted.params['compute']}, these with {compute}: "
                     "image/text features (and so probabilities) may differ slightly")
    return dev


def _image(mod, fitted: Fitted, device: str, batch_size: int, stages: bool, notes: list[str]):
    from stages.encoders import image

    p, info = fitted.params["image"], fitted.encoders[mod.name]
    weights = None if p["random_init"] or info.get("weights") in (None, "random") else Path(info["weights"])
    # runs encoded before EXIF orientation was applied record no flag: they used images as stored
    enc = image.build(p["encoder"], weights, p["size"], p["allow_random"], p["random_init"],
                      p.get("exif_orientation", False))
    if enc.weights_sha256 != p["weights_sha256"]:
        raise StaleArtifactError(f"the image weights {weights} are not the ones the run was encoded with "
                                 "(their SHA-256 differs)", fix="restore the weights file, or re-encode and retrain the run")
    dev = _device(device, fitted, notes)
    want_maps = bool(stages and p.get("stages"))
    pooled_all, maps = [], []
    for _, pooled, tokens in image.encode_batches(list(mod.values), enc, batch_size, dev, want_maps, p.get("grid") or 7):
        pooled_all.append(pooled)
        maps.append(tokens)
    stage_maps = [np.concatenate([t[k] for t in maps]) for k in range(len(maps[0]))] if want_maps and maps else []
    return np.concatenate(pooled_all).astype(np.float32), stage_maps


def _text(mod, fitted: Fitted, device: str, batch_size: int, notes: list[str]) -> np.ndarray:
    from stages.encoders import text

    p, info = fitted.params["text"], fitted.encoders[mod.name]
    path = Path(info["model"])
    if not path.is_dir() or text.fingerprint(path) != p["model"]:
        raise StaleArtifactError(f"the text model {path} is missing or not the one the run was encoded with",
                                 fix="restore that model directory, or re-encode and retrain the run")
    _, tokenizer, model = text.load(path)
    dev = _device(device, fitted, notes)
    out = [pooled for _, pooled in text.encode_batches(list(mod.values), tokenizer, model, p["pool"], batch_size, dev)]
    return np.concatenate(out).astype(np.float32)
