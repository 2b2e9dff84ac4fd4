"""The stages a sweep runs before training (encode, score, fit-dist, schedule): the options a grid may
give each of them (the ``climd <stage>`` option names), how those become library calls, and, for
planning a SLURM submission, whether a run's artifact of a stage is already what the grid asks for.

Options are checked here with plain ``ValueError`` messages; :mod:`stages.sweep.grid` adds the file,
line and key.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from stages.core import cmdline
from stages.errors import ClimdError
from stages.store.artifacts import Artifact, RunStore

UPSTREAM = ("encode", "score", "fit-dist", "schedule")
SHARD_INDEX = "shard-index"    # set by the SLURM planner on the encode tasks of ``shards: N``, never by a grid

# option (as `climd <stage> --help` spells it) -> kind
OPTIONS: dict[str, dict[str, str]] = {
    "encode": {"data": "path", "format": "str", "modalities": "list", "task": "str", "derm-tabular": "str",
               "derm-modalities": "str",
               "impute": "str", "split-file": "path", "test-size": "float", "seed": "int", "val-fraction": "float",
               "resplit": "int", "shared-run": "str",
               "image-encoder": "str", "image-weights": "path", "image-size": "int",
               "allow-random-weights": "bool", "random-init": "bool", "exif-orientation": "bool",
               "image-stages": "bool", "stage-grid": "int",
               "text-model": "path", "text-pool": "str", "batch-size": "int", "device": "str", "shards": "int",
               "volume-spacing": "str", "volume-planes": "str", "volume-slices": "int", "volume-intensity": "str",
               "volume-ct-windows": "str", "volume-mri-percentiles": "str", "volume-pool": "str",
               "volume-memory-mb": "float"},
    "score": {"folds": "int", "measure": "str", "combine": "str", "easy": "str", "seed": "int",
              "probe-hidden": "int", "probe-epochs": "int", "probe-lr": "float", "probe-weight-decay": "float",
              "probe-head": "str", "tag": "str"},
    "fit-dist": {"gamma": "float", "tag": "str"},
    "schedule": {"epochs": "int", "pacing": "str", "overflow": "str", "order": "str", "order-seed": "int",
                 "buckets": "int", "c0": "float", "score-tag": "str", "dist-tag": "str", "tag": "str"},
}

# boolean options that are on unless turned off (`--no-KEY`)
ON_BY_DEFAULT = {"exif-orientation"}


def coerce(kind: str, value):
    """A YAML value as the option kind wants it (YAML reads ``5e-5`` as a string); ValueError if not."""
    if value is None:
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(value, bool) or isinstance(value, (list, dict)) and kind != "list":
        raise ValueError(f"expected a {'number' if kind in ('int', 'float') else 'string'}, got {value!r}")
    if kind == "int":
        if isinstance(value, int) or isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ValueError(f"expected a list of names (or 'a,b'), got {value!r}")
        return [v.strip() for v in items if v.strip()]
    return str(value)                               # str, path


def check(stage: str, opts: dict) -> None:
    """Choices and ranges, checked before anything runs (the stage's own check)."""
    if stage == "score":
        score_args(opts)[0].check()
    elif stage == "schedule":
        schedule_args(opts)[0].check()
    elif stage == "fit-dist" and not opts.get("gamma", 0.3) > 0:
        raise ValueError("gamma must be > 0")
    elif stage == "encode" and opts.get("shards") is not None and opts["shards"] < 1:
        raise ValueError("shards must be >= 1")


# -- options -> library calls ----------------------------------------------------------------------
def encode_args(opts: dict):
    from stages.data.adapters import DataOptions
    from stages.pipeline.encode import EncodeOptions

    o = dict(opts)
    data = Path(o.pop("data")) if o.get("data") else None
    data_opts = DataOptions(format=o.get("format"), modalities=o.get("modalities"),
                            split_file=Path(o["split-file"]) if o.get("split-file") else None,
                            test_size=o.get("test-size", 0.3), split_seed=int(o.get("seed") or 0),
                            val_fraction=o.get("val-fraction", 0.0), task=o.get("task", "diag5"),
                            derm_tabular=o.get("derm-tabular", "meta"),
                            derm_modalities=o.get("derm-modalities"), impute=o.get("impute"),
                            resplit=int(o.get("resplit") or 0))   # int(): "{seed}" filled in
    enc = EncodeOptions(**{k.replace("-", "_"): (Path(v) if k in ("image-weights", "text-model") and v else v)
                           for k, v in o.items() if k.replace("-", "_") in EncodeOptions.__dataclass_fields__
                           and k != "volume"})
    vol = {k[len("volume-"):].replace("-", "_"): str(v) if k not in ("volume-slices", "volume-memory-mb") else v
           for k, v in o.items() if k.startswith("volume-")}
    if vol:
        from stages.encoders import volume

        enc.volume = volume.parse(**vol)
    return data, data_opts, enc


def score_args(opts: dict):
    from stages.method.probes import ProbeOptions
    from stages.pipeline.score import ScoreOptions

    probe = ProbeOptions(**{k[len("probe-"):].replace("-", "_"): v for k, v in opts.items() if k.startswith("probe-")})
    fields = {k: v for k, v in opts.items() if not k.startswith("probe-") and k != "tag"}
    return ScoreOptions(probe=probe, **fields), opts.get("tag")


def schedule_args(opts: dict):
    from stages.pipeline.schedule import ScheduleOptions

    fields = {k.replace("-", "_"): v for k, v in opts.items() if k not in ("tag", "score-tag", "dist-tag")}
    return ScheduleOptions(**fields), opts.get("tag"), opts.get("score-tag"), opts.get("dist-tag")


def run_upstream(store: RunStore, stage: str, opts: dict, force: bool = False) -> tuple[Artifact, bool]:
    """Build (or reuse) one stage of ``store``'s run with the grid's options."""
    if stage == "encode":
        if opts.get("shards"):                 # SHARD_INDEX: one shard (a SLURM array task); else shards + merge
            from stages.pipeline import shards

            return shards.run_sharded(store, *encode_args(opts), count=opts["shards"],
                                      index=opts.get(SHARD_INDEX), force=force)
        if opts.get("shared-run"):             # image/text features copied from that run's encode.shared
            from stages.pipeline import encode_shared

            shared = RunStore(store.cache_dir, opts["shared-run"], command=store.command)
            return encode_shared.run_replicate(store, *encode_args(opts), shared, force=force)
        from stages.pipeline import encode

        return encode.run(store, *encode_args(opts), force=force)
    if stage == "score":
        from stages.pipeline import score

        return score.run(store, *score_args(opts), force=force)
    if stage == "fit-dist":
        from stages.pipeline import fit_dist

        return fit_dist.run(store, opts.get("gamma", 0.3), opts.get("tag"), force=force)
    from stages.pipeline import schedule

    return schedule.run(store, *schedule_args(opts), force=force)


# -- planning: is the artifact already what the grid asks for? ----------------------------------------
def artifact_name(stage: str, opts: dict) -> str:
    if stage == "encode":
        return "encode"
    if stage == "schedule":
        from stages.pipeline.schedule import artifact_name as name

        return name(opts.get("pacing", "climd"), opts.get("tag"))
    return stage + (f".{opts['tag']}" if opts.get("tag") else "")


def is_done(store: RunStore, stage: str, opts: dict) -> bool:
    """True when the run's artifact of ``stage`` is intact, its ancestors unchanged, and it was built
    with these options from the inputs they name. (Encode: with these data options and split file,
    and, for images/text, these encoder settings; a change inside the data files under the same path
    is seen by the encode stage itself, not here.) Used only to leave out SLURM tasks that would
    reuse everything; the stage functions decide for themselves when they run."""
    try:
        artifact = store.load(artifact_name(stage, opts))
    except ClimdError:
        return False
    return artifact.params == _expected_params(stage, opts, artifact) and _inputs_match(stage, opts, artifact)


def _expected_params(stage: str, opts: dict, artifact: Artifact):
    if stage == "score":
        return asdict(score_args(opts)[0])
    if stage == "fit-dist":
        return {"gamma": opts.get("gamma", 0.3)}
    if stage == "schedule":
        return asdict(schedule_args(opts)[0])
    data, data_opts, enc = encode_args(opts)
    have = artifact.params
    if have.get("data") != data_opts.as_params():
        return None
    image, text = have.get("image"), have.get("text")
    if image is not None and (image.get("encoder"), image.get("size"), image.get("random_init"), image.get("stages"),
                              image.get("exif_orientation", False)) != \
            (enc.image_encoder, enc.image_size, enc.random_init, enc.image_stages, enc.exif_orientation):
        return None
    if text is not None and text.get("pool") != enc.text_pool:
        return None
    vol = have.get("volume")
    if vol is not None and {k: v for k, v in vol.items() if k in enc.volume.key()} != enc.volume.key():
        return None
    return have


def _inputs_match(stage: str, opts: dict, artifact: Artifact) -> bool:
    inputs = artifact.meta.get("inputs", {})
    if stage == "encode":
        split = opts.get("split-file")
        if not split:
            return "split_file" not in inputs
        from stages.core.hashing import file_sha256

        try:
            return inputs.get("split_file", {}).get("fingerprint") == file_sha256(Path(split))
        except OSError:
            return False
    if stage == "schedule":
        from stages.pipeline import fit_dist
        from stages.pipeline import score

        want = {"score": score.artifact_name(opts.get("score-tag"))}
        if opts.get("pacing", "climd") == "climd":
            want["dist"] = fit_dist.artifact_name(opts.get("dist-tag"))
        return {role: rec.get("artifact") for role, rec in inputs.items()} == want
    return True


def upstream_command(stage: str, run: str, opts: dict) -> str:
    """The `climd <stage>` command these options stand for (recorded in the artifact's meta.json)."""
    parts = [f"--run {run}"]
    opts = {k: v for k, v in opts.items() if k != "shared-run"}   # the same artifact as a plain encode
    if opts.get("shards"):
        count, index = opts.pop("shards"), opts.pop(SHARD_INDEX, None)
        parts += [f"--shard {index}/{count}"] if index is not None else ["--merge", f"--shards {count}"]
    for key, value in opts.items():
        if key in ON_BY_DEFAULT:
            parts += [f"--no-{key}"] if value is False else []
        elif value is not None:
            parts += cmdline.option(f"--{key}", value)
    return cmdline.climd(stage, parts)
