"""Stage ``encode``: every modality of a data set becomes a float32 feature matrix in one HDF5 file.

Tabular: standardised with training-split statistics. Image: a pretrained CNN without its head
(optionally also its four stage maps pooled to a token grid, for CFCML). Text: a local transformers
model. The data fingerprint (a hash of every file read) and the parameters form the cache key.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.data.adapters import DataOptions, finish_dataset, read_dataset
from stages.data.dataset import Dataset
from stages.pipeline.encode_guard import EMBEDDED, check_folder, check_same_data, resolved
from stages.data.features import FILE
from stages.encoders.volume import VolumeOptions
from stages.core.hashing import file_sha256, files_fingerprint
from stages.store.artifacts import Artifact, RunStore

STAGE, VERSION = "encode", 1
log = logging.getLogger("climd")


@dataclass
class EncodeOptions:
    image_encoder: str = "efficientnet-lite0"
    image_weights: Path | None = None
    image_size: int = 224
    allow_random_weights: bool = False
    random_init: bool = False
    exif_orientation: bool = True
    image_stages: bool = False
    stage_grid: int = 7
    text_model: Path | None = None
    text_pool: str = "mean"
    batch_size: int = 32
    device: str = "auto"
    volume: VolumeOptions = field(default_factory=VolumeOptions)   # CT/MRI volumes (--volume-*)


def run(store: RunStore, data: Path | None, data_opts: DataOptions, opts: EncodeOptions,
        force: bool = False) -> tuple[Artifact, bool]:
    raw, params, inputs, key_params = prepare(data, data_opts, opts, finish=False)
    ticket = store.begin(STAGE, STAGE, VERSION, params, inputs, force, key_params)
    if ticket.reused:   # the key needs the files and options only: no resplit, carve-out or checks
        _log_notes(raw)
        return ticket.artifact, True
    check_same_data(store, STAGE, inputs, ticket.key, force)
    ds = finish_dataset(raw, data_opts)   # bad data fails here, before anything is written
    _log_notes(ds)
    return store.make(ticket, lambda out: write_features(out / FILE, ds, opts, params, data_opts.impute), force=force,
                      guard=lambda existing: check_folder(store.run, existing, inputs, ticket.key))


def prepare(data: Path | None, data_opts: DataOptions, opts: EncodeOptions,
            finish: bool = True) -> tuple[Dataset, dict, dict, dict]:
    """(data set, parameters, inputs, key parameters) of an encode: shared by the shards and the merge.

    ``finish=False``: the data set as read (:func:`stages.data.adapters.read_dataset`), which is all the
    key needs; :func:`stages.data.adapters.finish_dataset` splits and checks it."""
    from stages.store.artifacts import without_defaults

    ds = read_dataset(data, data_opts)
    if finish:
        ds = finish_dataset(ds, data_opts)
        _log_notes(ds)
    kinds = {m.kind for m in ds.modalities.values()}
    params = {"data": data_opts.as_params(), "modalities": {k: m.kind for k, m in ds.modalities.items()},
              **_model_params(opts, kinds)}
    data_path = Path(data) if data else None
    split = Path(data_opts.split_file).resolve() if data_opts.split_file else None
    inputs = {"data": {"path": str(data_path or "embedded:rosmap"), "resolved": resolved(str(data_path or EMBEDDED)),
                       "fingerprint": files_fingerprint([f for f in ds.files if Path(f).resolve() != split])}}
    if split:
        inputs["split_file"] = {"path": str(data_opts.split_file), "fingerprint": file_sha256(split)}
    key_params = {**params, "data": without_defaults(data_opts.as_params(), DataOptions().as_params())}
    return ds, params, inputs, key_params


def _log_notes(ds: Dataset) -> None:
    for note in ds.notes:
        log.info("%s: %s", ds.name, note)


def _model_params(opts: EncodeOptions, kinds: set[str]) -> dict:
    """Only the options that change the features of the modalities present enter the key."""
    from stages.runtime import device as devices

    params = {}
    needs_device = bool(kinds & {"image", "text", "volume"})
    if needs_device:
        params["compute"] = "cuda-amp" if devices.resolve(opts.device).startswith("cuda") else "cpu-fp32"
    if kinds & {"image", "volume"}:
        from stages.encoders import image

        weights = None if opts.random_init else (
            Path(opts.image_weights) if opts.image_weights else image.default_weights(opts.image_encoder))
    if "volume" in kinds:
        from stages.pipeline import encode_volume

        params["volume"] = encode_volume.params(opts, _sha(weights))
    if "image" in kinds:
        params["image"] = {"encoder": opts.image_encoder, "size": opts.image_size, "random_init": opts.random_init,
                           "weights_sha256": _sha(weights), "allow_random": opts.allow_random_weights,
                           "stages": opts.image_stages, "grid": opts.stage_grid if opts.image_stages else None,
                           "exif_orientation": opts.exif_orientation}
    if "text" in kinds:
        from stages.encoders import text

        model_dir = opts.text_model or text.default_model()
        params["text"] = {"model": text.fingerprint(model_dir) if model_dir else None, "pool": opts.text_pool}
    return params


def _sha(path: Path | None) -> str | None:
    from stages.core.hashing import file_sha256

    return file_sha256(path) if path and Path(path).is_file() else None


def write_features(path: Path, ds: Dataset, opts: EncodeOptions, params: dict, impute: str | None,
           shards=None) -> dict:
    """``shards`` (a :class:`stages.pipeline.shards.Merge`): image and text features come from the shards."""
    import h5py

    summary = {"dataset": ds.name, "n": ds.n, "class_names": ds.class_names,
               "split_counts": {s: int((ds.split == s).sum()) for s in np.unique(ds.split)},
               "train_class_counts": ds.counts("train").tolist(), "modalities": {}, "notes": ds.notes}
    # Built in memory, then written with one ordinary write: h5py aborts the process on a full disk
    # (ENOSPC inside HDF5's own I/O), where a plain write raises OSError (exit 6, no leftover).
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", locking=False) as h5:
        strings = h5py.string_dtype()
        h5.create_dataset("ids", data=ds.ids.astype(str).tolist(), dtype=strings)
        h5.create_dataset("labels", data=ds.labels)
        h5.create_dataset("split", data=ds.split.astype(str).tolist(), dtype=strings)
        h5.attrs["class_names"] = json.dumps(ds.class_names)
        h5.attrs["dataset"] = ds.name
        h5.attrs["params"] = json.dumps(params, default=str)
        group = h5.create_group("modalities")
        for name, mod in ds.modalities.items():
            if mod.kind == "tabular":
                info = _tabular(h5, group, name, mod, ds, impute)
            elif shards is not None:
                info = shards.copy_into(h5, group, name)
            else:
                info = encoder_of(mod.kind)(h5, group, name, list(mod.values), opts)
            group[name].attrs["kind"] = mod.kind
            group[name].attrs["encoder"] = json.dumps(_stable(info), default=str)
            summary["modalities"][name] = {"kind": mod.kind, "shape": list(group[name].shape), **info}
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())
    return summary


def encoder_of(kind: str):
    """The writer of an image, text or volume modality: (h5, group, name, values, opts) -> record."""
    if kind == "volume":
        from functools import partial

        from stages.pipeline.encode_volume import write

        return partial(write, matrix=matrix, gpu_peak=(_reset_gpu_peak, _gpu_peak))
    return encode_image if kind == "image" else encode_text


# Facts about one particular execution: kept in meta.json (the summary), never in features.h5, so two
# encodes of the same data give byte-identical files.
RUN_FACTS = ("device", "seconds", "images_per_s", "gpu_peak_mb", "volumes_per_s", "timing_s")


def _stable(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in RUN_FACTS}


def matrix(group, name: str, data=None, shape=None):
    shape = data.shape if data is not None else shape
    if not shape[0]:                     # an empty shard: HDF5 refuses zero-sized chunks
        return group.create_dataset(name, data=data, shape=None if data is not None else shape, dtype="float32")
    chunks = (min(shape[0], 256),) + tuple(shape[1:])
    return group.create_dataset(name, data=data, shape=None if data is not None else shape,
                                dtype="float32", chunks=chunks, compression="gzip", shuffle=True,
                                track_times=False)


def _tabular(h5, group, name, mod, ds: Dataset, impute: str | None) -> dict:
    import h5py

    from stages.encoders.tabular import TabularScaler

    scaler = TabularScaler(impute).fit(mod.values, ds.split == "train")
    z = scaler.transform(mod.values, where=lambda r, c: mod.where(r, c, None if mod.row_files else ds.ids))
    matrix(group, name, z)
    pre = h5.require_group(f"preprocessing/{name}")
    scaler.save(pre)
    if mod.feature_names:
        pre.create_dataset("feature_names", data=mod.feature_names, dtype=h5py.string_dtype())
    return {"encoder": "standardize(train)", "source": str(mod.source),
            "n_imputed": scaler.n_imputed_, "impute": impute}


def encode_image(h5, group, name, paths: list, opts: EncodeOptions) -> dict:
    import time

    from stages.runtime import device as devices
    from stages.runtime import progress
    from stages.encoders import image

    dev = devices.resolve(opts.device)
    enc = image.build(opts.image_encoder, opts.image_weights, opts.image_size, opts.allow_random_weights,
                      opts.random_init, opts.exif_orientation)
    n = len(paths)
    feats = matrix(group, name, shape=(n, enc.feature_dim))
    maps = []
    if opts.image_stages:
        sg = h5.create_group(f"stages/{name}")
        maps = [matrix(sg, f"s{k}", shape=(n, opts.stage_grid ** 2, c))
                for k, c in enumerate(enc.stage_channels)]
    t0 = time.perf_counter()
    _reset_gpu_peak(dev)
    with progress.task(f"encode {name}", total=n, unit="img") as advance:
        for start, pooled, tokens in image.encode_batches(paths, enc, opts.batch_size, dev,
                                                          opts.image_stages, opts.stage_grid):
            stop = start + len(pooled)
            feats[start:stop] = pooled
            for dset, tok in zip(maps, tokens):
                dset[start:stop] = tok
            advance(len(pooled))
    seconds = time.perf_counter() - t0
    rate = n / seconds if seconds > 0 else float("nan")
    log.info("encoded %d images with %s on %s: %.1f s, %.1f images/s", n, enc.name, dev, seconds, rate)
    return {**enc.info(), "device": dev, "seconds": round(seconds, 2), "images_per_s": round(rate, 1),
            "stages": list(enc.stage_channels) if opts.image_stages else None,
            "stage_grid": opts.stage_grid if opts.image_stages else None, "gpu_peak_mb": _gpu_peak(dev)}


def _reset_gpu_peak(dev: str) -> None:
    if dev.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def _gpu_peak(dev: str) -> float | None:
    if not dev.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def encode_text(h5, group, name, texts: list, opts: EncodeOptions) -> dict:
    from stages.runtime import device as devices
    from stages.encoders import text

    dev = devices.resolve(opts.device)
    path, tokenizer, model = text.load(opts.text_model)
    dim = model.config.hidden_size
    dset = matrix(group, name, shape=(len(texts), dim))
    for start, pooled in text.encode_batches(list(texts), tokenizer, model, opts.text_pool,
                                             opts.batch_size, dev):
        dset[start:start + len(pooled)] = pooled
    return {"encoder": "transformers", "model": str(path), "pool": opts.text_pool, "dim": dim}
