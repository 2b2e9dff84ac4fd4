"""What one ``climd train`` call trains: its replicas (one per run x configuration x seed), the data
each trains on, the pool of training rows of every epoch, and how a finished replica becomes its own
artifact (``train/<variant>/seed<k>/``: model files, history.csv, meta.json), exactly as if it had been
trained alone.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.engine import checkpoint
from stages.data import features
from stages.engine import order
from stages.store import layout
from stages.store import tensorio
from stages.store.atomic import atomic_write_text
from stages.errors import StaleArtifactError, UsageError
from stages.store.artifacts import Artifact, RunStore, Ticket
from stages.engine import dsrmc

MODEL_STEM, HISTORY = "model", "history.csv"


@dataclass
class DataUnit:
    """The training data of one (encode artifact, resampling, seed): every replica that shares it
    reads the same rows."""

    key: tuple
    inputs: dict[str, np.ndarray]          # model input name -> [N, ...] float32 (training rows)
    y: np.ndarray                          # [N] int64
    ids: np.ndarray | None                 # training ids (None once resampling made synthetic rows)
    class_names: list[str]
    kinds: dict[str, str]
    full_counts: np.ndarray                # class counts of the real training split (for losses)
    valid: tuple[dict, np.ndarray] | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def shapes(self) -> dict[str, tuple]:
        return {k: tuple(v.shape[1:]) for k, v in self.inputs.items()}


@dataclass
class Replica:
    """One (run, variant, seed) to train."""

    store: RunStore
    variant: str
    seed: int
    opts: object                           # train.TrainOptions
    ticket: Ticket
    enc: Artifact
    sched: Artifact | None
    epochs: int                            # T: curriculum (or plain) epochs, before finish epochs
    command: str = ""
    unit: DataUnit | None = None
    pools: list | None = None              # per curriculum epoch: training rows; None: whole split
    start_epoch: int = 1
    meta: dict = field(default_factory=dict)
    force: bool = False

    @property
    def name(self) -> str:
        return self.ticket.name

    @property
    def path(self) -> Path:
        return self.ticket.path

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.opts.finish_epochs

    def label(self) -> str:
        return f"{self.store.run}/{self.variant}/seed{self.seed}"


def needs_stages(model_name: str) -> bool:
    from stages import models

    return bool(getattr(models.registry().get(model_name), "needs_stages", False))


def load_units(replicas: list[Replica]) -> None:
    """Attach each replica's data unit (features read once per encode artifact)."""
    from stages.engine import resample

    feats_cache: dict[str, features.Features] = {}
    units: dict[tuple, DataUnit] = {}
    for rep in replicas:
        stages = needs_stages(rep.opts.model)
        fkey = f"{rep.enc.key}:{stages}"
        if fkey not in feats_cache:
            feats_cache[fkey] = features.read(rep.enc.file(features.FILE), stages=stages)
        feats = feats_cache[fkey]
        if stages and not feats.stages:
            raise UsageError(f"--model {rep.opts.model} needs image stage maps",
                             fix=f"rerun `climd encode --run {rep.store.run}` with --image-stages")
        ukey = (fkey, rep.opts.resample, rep.seed if rep.opts.resample != "none" else None, rep.opts.select)
        if ukey not in units:
            arrays = model_inputs(feats)
            train = feats.indices("train")
            x = {k: v[train] for k, v in arrays.items()}
            y = feats.labels[train]
            full_counts = np.bincount(y, minlength=feats.n_classes)
            valid = None
            if rep.opts.select == "best-valid":
                rows = feats.indices("valid")
                if len(rows) == 0:
                    raise UsageError("--select best-valid needs a validation split",
                                     fix="rerun `climd encode` with --val-fraction (Derm7pt has one already)")
                valid = ({k: v[rows] for k, v in arrays.items()}, feats.labels[rows])
            ids = feats.ids[train]
            if rep.opts.resample != "none":
                x, y = resample.resample(x, y, rep.opts.resample, rep.seed)
                ids = None
            units[ukey] = DataUnit(ukey, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in x.items()},
                                   np.asarray(y, dtype=np.int64), ids, feats.class_names, feats.kinds,
                                   full_counts, valid)
        rep.unit = units[ukey]


def model_inputs(feats: features.Features) -> dict[str, np.ndarray]:
    """Every tensor a model may use: modalities, and stage tokens named ``<modality>/s<k>``."""
    arrays = dict(feats.modalities)
    for mod, maps in feats.stages.items():
        for k, m in enumerate(maps):
            arrays[f"{mod}/s{k}"] = m
    return arrays


def attach_pools(replicas: list[Replica]) -> None:
    """Per curriculum epoch, the training rows of the schedule's ids (read once per schedule)."""
    cache: dict[tuple, list] = {}
    for rep in replicas:
        if rep.sched is None:
            rep.pools = None
            continue
        key = (rep.sched.key, id(rep.unit))
        if key not in cache:
            row = {i: r for r, i in enumerate(rep.unit.ids)}
            pools = []
            for t in range(1, rep.epochs + 1):
                ids = layout.read_epoch_ids(rep.sched.file(layout.epoch_file(t)))
                missing = [i for i in ids if i not in row]
                if missing:
                    raise StaleArtifactError(f"{rep.sched.path}: epoch {t} lists ids that are not training "
                                             f"samples of {rep.enc.path} (e.g. {missing[:3]})",
                                             fix=f"rerun `climd schedule --run {rep.store.run}`")
                pools.append(np.fromiter((row[i] for i in ids), dtype=np.int64, count=len(ids)))
            cache[key] = pools
        rep.pools = cache[key]


def pool(rep: Replica, epoch: int) -> np.ndarray:
    if rep.pools is not None and epoch <= rep.epochs:
        return rep.pools[epoch - 1]
    return np.arange(rep.unit.n, dtype=np.int64)


def batch_size(rep: Replica, pool_size: int) -> int:
    """``--batch-size 0`` (full): the whole epoch pool in one step."""
    return rep.opts.batch_size or max(1, pool_size)


def epoch_steps(rep: Replica, epoch: int, batching: str = "shuffle") -> list[int]:
    """Batch sizes of the epoch's steps (replicas with equal plans can share one program)."""
    size = len(pool(rep, epoch))
    bs = batch_size(rep, size)
    full = order.steps_per_full_epoch(rep.unit.n, batch_size(rep, rep.unit.n))
    scored = rep.opts.curriculum == dsrmc.NAME and epoch <= rep.epochs      # equal batches, a paced count
    if batching == "class-balanced":
        n_cls = len(np.unique(rep.unit.y[pool(rep, epoch)]))
        n_steps = full if rep.opts.budget == "steps" else math.ceil(size / bs)
        if scored:
            n_steps = dsrmc.steps(size, bs, epoch, rep.epochs, rep.opts.dsrmc_pace, rep.opts.budget)
        return [max(1, bs // n_cls) * n_cls] * n_steps
    if scored:
        return [min(bs, size)] * dsrmc.steps(size, bs, epoch, rep.epochs, rep.opts.dsrmc_pace, rep.opts.budget)
    if rep.opts.budget == "steps":
        return [min(bs, size)] * full
    return [bs] * (size // bs) + ([size % bs] if size % bs else [])


def resume_epoch(rep: Replica) -> None:
    """Where the replica resumes (from its checkpoint), recorded in ``rep.start_epoch``."""
    rep.start_epoch = checkpoint.peek(rep.path, rep.ticket.key) + 1


# -- finishing --------------------------------------------------------------------------------------
def write_model(directory: Path, model, named: dict, rep: Replica) -> None:
    tensorio.save(Path(directory) / MODEL_STEM, named, {
        "model": rep.opts.model, "model_options": rep.opts.model_options,
        "input_shapes": {k: list(v) for k, v in rep.unit.shapes.items()}, "inputs_used": model.inputs_used(),
        "kinds": rep.unit.kinds, "class_names": rep.unit.class_names, "parameters": list(named)})


def history_csv(history: list[dict]) -> str:
    """history.csv: one row per epoch, plus cumulative samples and optimizer steps."""
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    columns += ["cum_samples", "cum_steps"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    samples = steps = 0
    for record in history:
        samples += record["samples_seen"]
        steps += record["steps"]
        row = {**record, "cum_samples": samples, "cum_steps": steps}
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def finish(rep: Replica, model, named: dict, history: list[dict], seconds: float, extra: dict) -> Artifact:
    """Write the replica's model and history, drop its checkpoint and commit its meta.json."""
    write_model(rep.path, model, named, rep)
    atomic_write_text(rep.path / HISTORY, history_csv(history))
    checkpoint.remove(rep.path)
    summary = {"epochs": rep.epochs, "finish_epochs": rep.opts.finish_epochs,
               "final_loss": history[-1]["loss"], "samples_seen": int(sum(h["samples_seen"] for h in history)),
               "optimizer_steps": int(sum(h["steps"] for h in history)),
               "train_class_counts": np.bincount(rep.unit.y, minlength=len(rep.unit.class_names)).tolist(),
               "seconds": round(seconds, 3), "class_names": rep.unit.class_names, **extra}
    rep.ticket.commit(rep.path, summary, command=rep.command or None)
    return rep.store.read(rep.name)


def load_model(artifact: Artifact, device: str = "cpu"):
    """(model, parameters [1, P] tensor or bound module, meta) of a trained artifact, verified."""
    from stages import models

    named, meta = tensorio.load(artifact.path / MODEL_STEM, device=device)
    spec = models.InputSpec({k: tuple(v) for k, v in meta["input_shapes"].items()}, meta.get("kinds", {}))
    model = models.build(meta["model"], spec, len(meta["class_names"]), meta["model_options"])
    try:
        flat = model.load_named(named, device)
    except (KeyError, ValueError) as exc:
        raise StaleArtifactError(f"{artifact.path / MODEL_STEM}.safetensors does not fit its model ({exc})",
                                 fix=f"rerun `climd train` for {artifact.name} with --force") from None
    return model, flat, meta
