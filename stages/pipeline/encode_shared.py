"""The expensive part of ``encode`` once per data set: image and text features of every sample do not
depend on the split, so ``climd compare`` computes them once, into ``encode.shared`` of the data
set's run ``NAME-data``, and each replicate's ``encode`` (its split, its tabular standardisation fitted
on its own training split, ...) copies them from there instead of running the networks again.

``encode.shared`` is a one-shard :mod:`stages.pipeline.shards` artifact over all rows, keyed by the data files
and the encoder settings only (no split option): the copied features are bitwise those an encode of
the replicate would compute on the same kind of device with the same batch size (whole batches, in
the data set's row order), so a replicate's ``encode`` keeps its usual key, and a replicate encoded
either way is reused by the other.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from stages.pipeline import encode, shards
from stages.errors import DataError
from stages.store.artifacts import Artifact, RunStore

NAME = "encode.shared"
log = logging.getLogger("climd")


def split_free(data_opts):
    """The data options with every split option at its default: what the shared features depend on."""
    from stages.data.adapters import DataOptions

    d = DataOptions()
    return replace(data_opts, split_file=None, test_size=d.test_size, split_seed=d.split_seed,
                   val_fraction=d.val_fraction, resplit=d.resplit, impute=None)


def needed(data: Path | None, data_opts) -> bool:
    """Whether the data set has image or text modalities (else there is nothing worth sharing)."""
    from stages.data.adapters import read_dataset

    ds = read_dataset(data, split_free(data_opts))
    return any(m.kind in shards.SHARDED for m in ds.modalities.values())


def run(store: RunStore, data: Path | None, data_opts, opts, force: bool = False) -> tuple[Artifact, bool]:
    """Build (or reuse) ``encode.shared`` of ``store``'s run: the image/text features of every row."""
    base = split_free(data_opts)
    ds, params, inputs, key_params = encode.prepare(data, base, opts)
    shard = shards.Shard(0, 1)
    tag = {"index": 0, "count": 1, "rows": [0, ds.n], "batch_size": opts.batch_size}
    return store.build(NAME, encode.STAGE, shards.SHARD_VERSION, {**params, "shard": tag}, inputs,
                       lambda out: shards.write_shard(out / shards.FILE, ds, opts, 0, ds.n, shard),
                       force=force, key_params={**key_params, "shard": tag})


def is_done(store: RunStore, data: Path | None, data_opts, opts) -> bool:
    from stages.errors import ClimdError

    try:
        artifact = store.load(NAME)
        _, params, inputs, _ = encode.prepare(data, split_free(data_opts), opts, finish=False)
    except ClimdError:
        return False
    fresh = {k: v for k, v in artifact.params.items() if k != "shard"} == params
    return fresh and artifact.meta.get("inputs", {}).get("data", {}).get("fingerprint") == \
        inputs["data"]["fingerprint"]


def run_replicate(store: RunStore, data: Path | None, data_opts, opts, shared: RunStore,
                  force: bool = False) -> tuple[Artifact, bool]:
    """A replicate's ``encode`` whose image/text features come from ``shared``'s ``encode.shared``
    (built there first if needed); its key is that of a plain encode of the replicate."""
    from stages.pipeline.encode_guard import check_same_data

    raw, params, inputs, key_params = encode.prepare(data, data_opts, opts, finish=False)
    ticket = store.begin(encode.STAGE, encode.STAGE, encode.VERSION, params, inputs, force, key_params)
    if ticket.reused:
        return ticket.artifact, True
    source, _ = run(shared, data, data_opts, opts)
    _check(source, params, inputs)
    check_same_data(store, encode.STAGE, inputs, ticket.key, force)
    from stages.data.adapters import finish_dataset

    ds = finish_dataset(raw, data_opts)
    merge = shards.Merge([source], ds)
    try:
        return store.make(ticket, lambda out: _write(out, ds, opts, params, data_opts.impute, merge, source),
                          force=force)
    finally:
        merge.close()


def _write(out: Path, ds, opts, params: dict, impute, merge, source: Artifact) -> dict:
    summary = encode.write_features(out / encode.FILE, ds, opts, params, impute, shards=merge)
    summary["features_from"] = {"artifact": str(source.path), "key": source.key}
    return summary


def _check(source: Artifact, params: dict, inputs: dict) -> None:
    """The shared features were made by the encoder settings and from the files this encode names."""
    want = {k: v for k, v in params.items() if k != "data"}
    have = {k: v for k, v in source.params.items() if k not in ("data", "shard")}
    if have != want:
        raise DataError(f"{source.path} was encoded with other settings than this replicate asks for",
                        fix=f"rebuild it: remove {source.path} and rerun")
    if source.meta.get("inputs", {}).get("data", {}).get("fingerprint") != inputs["data"]["fingerprint"]:
        raise DataError(f"{source.path} was encoded from other data files than {inputs['data']['path']} holds now",
                        fix=f"rebuild it: remove {source.path} and rerun")
