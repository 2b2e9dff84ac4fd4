"""Sharded encode: ``climd encode --shard i/N`` encodes one block of rows into its own artifact
``encode.shard-i-of-N``; ``climd encode --merge --shards N`` checks the shards and writes the normal
``encode`` artifact from them.

What a shard holds: the image and text features (the expensive modalities) of its rows. Tabular
modalities are standardised in the merge, from the full table (training-split statistics over all
training rows, exactly as an unsharded encode; tables are small).

Which rows: shard i of N takes batches ``[floor(i*B/N), floor((i+1)*B/N))`` of the B batches of
``--batch-size`` rows, in the data set's row order (the order of the features file). Every batch a
shard runs is then exactly a batch of the unsharded encode, so the merged features are bitwise the
same as an unsharded encode on the same kind of device with the same batch size.

The merge refuses shards that do not fit together, naming the shard: a missing or incomplete one,
one made with other encoder or preprocessing options, from other data or another split file, on
another kind of device (``compute``), or rows covered twice or not at all.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from stages.data import features
from stages.pipeline import encode
from stages.errors import DataError, MissingArtifactError, StaleArtifactError, UsageError
from stages.pipeline.encode_guard import check_same_data
from stages.store.artifacts import Artifact, RunStore

FILE = "shard.h5"
SHARD_VERSION = 1
SHARDED = ("image", "text", "volume")
log = logging.getLogger("climd")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @property
    def name(self) -> str:
        return artifact_name(self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def artifact_name(index: int, count: int) -> str:
    return f"encode.shard-{index}-of-{count}"


def parse(text: str) -> Shard:
    """``"i/N"`` -> Shard(i, N) with 0 <= i < N (UsageError otherwise)."""
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--shard {text!r} is not of the form i/N", fix="e.g. --shard 0/4 ... --shard 3/4")
    index, count = int(parts[0]), int(parts[1])
    check_count(count)
    if index >= count:
        raise UsageError(f"--shard {text}: the index must be 0 ... {count - 1}",
                         fix=f"shards are numbered from 0 (SLURM: --array=0-{count - 1})")
    return Shard(index, count)


def check_count(count: int) -> None:
    if count < 1:
        raise UsageError(f"--shards {count}: need at least 1 shard")


def rows(n: int, batch_size: int, shard: Shard) -> tuple[int, int]:
    """The rows [start, stop) of ``shard``: whole batches, spread evenly over the shards."""
    batches = -(-n // batch_size)
    first = shard.index * batches // shard.count
    last = (shard.index + 1) * batches // shard.count
    return min(n, first * batch_size), min(n, last * batch_size)


# -- one shard ------------------------------------------------------------------------------------------
def run_shard(store: RunStore, data: Path | None, data_opts, opts, shard: Shard,
              force: bool = False) -> tuple[Artifact, bool]:
    ds, params, inputs, key_params = encode.prepare(data, data_opts, opts)
    start, stop = rows(ds.n, opts.batch_size, shard)
    tag = {"index": shard.index, "count": shard.count, "rows": [start, stop], "batch_size": opts.batch_size}
    return store.build(shard.name, encode.STAGE, SHARD_VERSION, {**params, "shard": tag}, inputs,
                       lambda out: write_shard(out / FILE, ds, opts, start, stop, shard),
                       force=force, key_params={**key_params, "shard": tag})


def write_shard(path: Path, ds, opts, start: int, stop: int, shard: Shard) -> dict:
    import h5py

    summary = {"dataset": ds.name, "shard": shard.index, "shards": shard.count, "rows": [start, stop],
               "n": stop - start, "modalities": {}}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", locking=False) as h5:
        h5.create_dataset("ids", data=ds.ids[start:stop].astype(str).tolist(), dtype=h5py.string_dtype())
        h5.attrs["rows"] = [start, stop]
        group = h5.create_group("modalities")
        for name, mod in ds.modalities.items():
            if mod.kind not in SHARDED:
                continue
            values = list(mod.values)[start:stop]
            info = encode.encoder_of(mod.kind)(h5, group, name, values, opts)
            group[name].attrs["encoder"] = json.dumps(info, default=str)
            summary["modalities"][name] = {"kind": mod.kind, "shape": list(group[name].shape), **info}
    with open(path, "wb") as fh:
        fh.write(buffer.getbuffer())
    log.info("shard %s: rows %d-%d of %d", shard, start, stop, ds.n)
    return summary


# -- the merge ----------------------------------------------------------------------------------------
def run_merge(store: RunStore, data: Path | None, data_opts, opts, count: int,
              force: bool = False) -> tuple[Artifact, bool]:
    """Check the N shards against the data and options, then write the ``encode`` artifact."""
    check_count(count)
    ds, params, inputs, key_params = encode.prepare(data, data_opts, opts)
    shards = [_load(store, Shard(i, count), opts) for i in range(count)]
    compute = _check_params(shards, params)
    if compute is not None:
        params, key_params = {**params, "compute": compute}, {**key_params, "compute": compute}
    _check_inputs(shards, inputs)
    check_same_data(store, encode.STAGE, inputs, store.key_for(encode.STAGE, encode.VERSION, key_params, inputs), force)
    merge = Merge(shards, ds)
    try:
        return store.build(encode.STAGE, encode.STAGE, encode.VERSION, params, inputs,
                           lambda out: _merged(out, ds, opts, params, data_opts.impute, merge),
                           force=force, key_params=key_params)
    finally:
        merge.close()


def run_sharded(store: RunStore, data, data_opts, opts, count: int, index: int | None = None,
                force: bool = False) -> tuple[Artifact, bool]:
    """What a sweep runs: shard ``index`` alone, or (index None) every shard not yet fresh, then the merge."""
    if index is not None:
        return run_shard(store, data, data_opts, opts, Shard(index, count), force)
    for i in range(count):
        run_shard(store, data, data_opts, opts, Shard(i, count), force)
    return run_merge(store, data, data_opts, opts, count, force)


def _merged(out: Path, ds, opts, params, impute, merge: "Merge") -> dict:
    summary = encode.write_features(out / encode.FILE, ds, opts, params, impute, shards=merge)
    summary["merged_from"] = [{"shard": a.name, "key": a.key} for a in merge.shards]
    return summary


def _load(store: RunStore, shard: Shard, opts) -> Artifact:
    hint = f"run `climd encode --run {store.run} --shard {shard} ...` with the merge's data and encoder options"
    try:
        return store.load(shard.name)
    except MissingArtifactError:
        raise MissingArtifactError(f"shard {shard} ({shard.name}) is missing in run {store.run}",
                                   fix=hint) from None
    except StaleArtifactError as exc:
        raise StaleArtifactError(f"shard {shard} ({shard.name}) cannot be used: {exc.message}",
                                 fix=f"{hint}, with --force") from None


def _check_params(shards: list[Artifact], want: dict) -> str | None:
    """One encoder, one preprocessing, one kind of device; returns the shards' ``compute``."""
    strip = ("shard", "compute")
    base = {k: v for k, v in want.items() if k not in strip}
    for art in shards:
        have = {k: v for k, v in art.params.items() if k not in strip}
        if have != base:
            flat_have, flat_base = _flat(have), _flat(base)
            diff = sorted(k for k in set(flat_have) | set(flat_base) if flat_have.get(k) != flat_base.get(k))
            detail = "; ".join(f"{k}: shard {_short(flat_have.get(k))}, merge {_short(flat_base.get(k))}"
                               for k in diff[:4])
            raise DataError(f"shard {_label(art)} was encoded with other options than this merge asks for ({detail})",
                            fix="give --merge the same data, split and encoder options as the shards, or rebuild "
                                "that shard with --force")
    computes = {art.params.get("compute") for art in shards}
    if len(computes) > 1:
        by = {art.name: art.params.get("compute") for art in shards}
        odd = next(name for name, c in by.items() if c != by[shards[0].name])
        raise DataError(f"the shards were encoded on different kinds of device: {odd} is {by[odd]}, "
                        f"{shards[0].name} is {by[shards[0].name]} (GPU features use mixed precision)",
                        fix="rebuild the odd shards with the same --device")
    return computes.pop() if computes else None


def _check_inputs(shards: list[Artifact], inputs: dict) -> None:
    for art in shards:
        have = art.meta.get("inputs", {})
        for role, rec in inputs.items():
            if have.get(role, {}).get("fingerprint") != rec.get("fingerprint"):
                raise DataError(f"shard {_label(art)} was encoded from other {role.replace('_', ' ')} "
                                f"({have.get(role, {}).get('path')}) than {rec.get('path')} holds now",
                                fix=f"rebuild that shard: climd encode ... --shard {_label(art).split()[0]} --force")
        extra = set(have) - set(inputs)
        if extra:
            raise DataError(f"shard {_label(art)} was encoded with a {sorted(extra)[0].replace('_', ' ')} this merge "
                            "does not have", fix="give --merge the same --split-file as the shards")


def _label(art: Artifact) -> str:
    tag = art.params.get("shard", {})
    return f"{tag.get('index')}/{tag.get('count')} ({art.name})"


def _flat(d: dict, prefix: str = "") -> dict:
    """{"image": {"size": 40}} -> {"image.size": 40}: a mismatch is named down to the setting."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


class Merge:
    """The shards' files, checked to cover the data set's rows exactly once, in order."""

    def __init__(self, shards: list[Artifact], ds):
        import h5py

        self.shards, self.n = shards, ds.n
        self.files, spans = [], []
        try:
            spans = self._open(ds)
        except BaseException:
            self.close()
            raise
        _check_cover(spans, ds.n)

    def _open(self, ds) -> list:
        spans = []
        for art in self.shards:
            try:
                h5 = features.open_h5(art.file(FILE))
                self.files.append(h5)
                start, stop = (int(v) for v in h5.attrs["rows"])
                ids = [i.decode() if isinstance(i, bytes) else str(i) for i in h5["ids"][...]]
            except (OSError, KeyError, ValueError) as exc:
                raise StaleArtifactError(f"shard {_label(art)}: {art.file(FILE)} is unreadable ({exc})",
                                         fix="rebuild that shard with --force") from None
            want = [str(i) for i in ds.ids[start:stop]]
            if ids != want:
                raise DataError(f"shard {_label(art)} holds other sample ids than rows {start}-{stop - 1} of the data "
                                "set (was it made from another version of the table?)",
                                fix="rebuild that shard with --force")
            spans.append((start, stop, art))
        return spans

    def copy_into(self, h5, group, name: str) -> dict:
        """Write modality ``name`` (and its stage maps) from the shards; the encoder record of the
        first shard, with the time and rate of all of them."""
        first = self.files[0]["modalities"][name]
        dset = encode.matrix(group, name, shape=(self.n,) + first.shape[1:])
        stage_sets = []
        if f"stages/{name}" in self.files[0]:
            sg = h5.create_group(f"stages/{name}")
            for key, maps in self.files[0][f"stages/{name}"].items():
                stage_sets.append((key, encode.matrix(sg, key, shape=(self.n,) + maps.shape[1:])))
        for f in self.files:
            start, stop = (int(v) for v in f.attrs["rows"])
            if stop > start:
                dset[start:stop] = f["modalities"][name][...]
                for key, target in stage_sets:
                    target[start:stop] = f[f"stages/{name}/{key}"][...]
        infos = [json.loads(f["modalities"][name].attrs["encoder"]) for f in self.files]
        info = dict(infos[0])
        if "seconds" in info:
            seconds = sum(i.get("seconds") or 0 for i in infos)
            info.update(seconds=round(seconds, 2), images_per_s=round(self.n / seconds, 1) if seconds else None,
                        gpu_peak_mb=max((i.get("gpu_peak_mb") or 0 for i in infos), default=0) or None)
        info["shards"] = len(self.files)
        return info

    def close(self) -> None:
        for f in self.files:
            f.close()


def _check_cover(spans: list[tuple[int, int, Artifact]], n: int) -> None:
    at = 0
    for start, stop, art in sorted(spans, key=lambda s: (s[0], s[1])):
        if stop <= start:
            continue
        if start > at:
            raise DataError(f"rows {at}-{start - 1} are in no shard (the next one, {_label(art)}, starts at row {start})",
                            fix="build every shard with the same --batch-size and shard count")
        if start < at:
            raise DataError(f"rows {start}-{min(stop, at) - 1} are in two shards ({_label(art)} and one before it)",
                            fix="build every shard with the same --batch-size and shard count")
        at = stop
    if at != n:
        raise DataError(f"rows {at}-{n - 1} are in no shard", fix="build every shard with the same --batch-size")
