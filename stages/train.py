"""Stage ``train``: a multimodal model trained on the schedule's per-epoch subsets (or on the whole
training split every epoch), one artifact per (variant, seed): ``train/<variant>/seed<k>/``.

Checkpoints are written atomically after every epoch with the model, optimiser and random-number
states, so a killed run resumes from its last complete epoch and ends with the same weights as an
uninterrupted one (same seed, same device).
"""
from __future__ import annotations

import io
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import features, losses, metrics, pacing, reference, resample, schedule
from .atomic import atomic_write_bytes, atomic_write_text
from .errors import UsageError, check_choices
from .store import Artifact, RunStore

STAGE, VERSION = "train", 1
CURRICULA = ("none",) + pacing.PACINGS
BUDGETS = ("epochs", "steps")
SELECT = ("last", "best-valid")
DEFAULT_EPOCHS = 100
CHECKPOINT, MODEL, HISTORY = "checkpoint.pt", "model.pt", "history.csv"
log = logging.getLogger("climd")


@dataclass
class TrainOptions:
    model: str = "early-fusion"
    model_options: dict = field(default_factory=dict)
    curriculum: str = "climd"
    schedule_tag: str | None = None
    epochs: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.0
    batch_size: int = 32
    loss: str = "ce"
    focal_gamma: float = 2.0
    resample: str = "none"
    budget: str = "epochs"
    finish_epochs: int = 0
    select: str = "last"
    select_metric: str = "f1_macro"
    device: str = "auto"

    def check(self) -> None:
        check_choices((self.curriculum, CURRICULA, "--curriculum"), (self.loss, losses.LOSSES, "--loss"),
                      (self.resample, resample.RESAMPLERS, "--resample"), (self.budget, BUDGETS, "--budget"),
                      (self.select, SELECT, "--select"), (self.select_metric, metrics.HEADLINE, "--select-metric"))
        if self.resample != "none" and self.curriculum != "none":
            raise UsageError("--resample makes synthetic/removed samples the schedule cannot name",
                             fix="use --resample with --curriculum none")
        if self.model in reference.MODELS and (self.curriculum != "none" or self.resample != "none"):
            raise UsageError(f"--model {self.model} is a scikit-learn reference: it takes neither a curriculum "
                             "nor --resample", fix="use --curriculum none")
        if self.lr <= 0 or self.batch_size < 1 or self.finish_epochs < 0:
            raise UsageError("--lr must be > 0, --batch-size >= 1 and --finish-epochs >= 0")

    def variant_name(self) -> str:
        """A readable default name from the options that differ from the paper's defaults."""
        if self.model in reference.MODELS:
            return self.model
        base = "baseline" if self.curriculum == "none" else self.curriculum
        if self.schedule_tag:
            base += f".{self.schedule_tag}"
        parts = [base if self.model == "early-fusion" else f"{self.model}-{base}"]
        parts += [self.loss] if self.loss != "ce" else []
        parts += [self.resample] if self.resample != "none" else []
        parts += ["steps"] if self.budget == "steps" else []
        parts += [f"finish{self.finish_epochs}"] if self.finish_epochs else []
        parts += [f"lr{self.lr:g}"] if self.lr != 5e-5 else []
        parts += [f"sel-{self.select_metric}"] if self.select == "best-valid" else []
        parts += [f"{k}{v}" for k, v in sorted(self.model_options.items())]
        return "+".join(parts)


def artifact_name(variant: str, seed: int) -> str:
    return f"train/{variant}/seed{seed}"


def run(store: RunStore, opts: TrainOptions, seed: int, variant: str | None = None,
        force: bool = False) -> tuple[Artifact, bool]:
    """Train (or reuse) one (variant, seed). The device is not part of the key: the same experiment
    run on a GPU machine reuses a CPU result (the summary records where it ran)."""
    opts.check()
    enc = store.load("encode")
    inputs = {"encode": enc.ref()}
    sched = None
    epochs = opts.epochs or DEFAULT_EPOCHS
    if opts.curriculum != "none":
        sched = store.load(schedule.artifact_name(opts.curriculum, opts.schedule_tag))
        if sched.params["pacing"] != opts.curriculum:
            raise UsageError(f"{sched.name} was built with --pacing {sched.params['pacing']}, not {opts.curriculum}",
                             fix="pass the matching --schedule-tag")
        if opts.epochs not in (None, sched.params["epochs"]):
            raise UsageError(f"--epochs {opts.epochs} but {sched.name} has {sched.params['epochs']} epochs",
                             fix="drop --epochs (it follows the schedule) or rebuild the schedule")
        epochs = sched.params["epochs"]
        inputs["schedule"] = sched.ref()
    params = {**{k: v for k, v in asdict(opts).items() if k != "device"}, "epochs": epochs, "seed": seed}
    name = artifact_name(variant or opts.variant_name(), seed)
    key = store.key_for(STAGE, VERSION, params, inputs)
    if opts.model in reference.MODELS:
        params = {k: params[k] for k in ("model", "curriculum", "seed")}
        trainer = lambda out: reference.fit(features.read(enc.file(features.FILE)), opts.model, seed, out)
        return store.build(name, STAGE, VERSION, params, inputs, trainer, force=force)
    trainer = lambda out: Trainer(enc, sched, opts, epochs, seed, _device(opts.device), key).fit(out)
    return store.build(name, STAGE, VERSION, params, inputs, trainer, force=force, incremental=True)


class Trainer:
    def __init__(self, enc: Artifact, sched: Artifact | None, opts: TrainOptions, epochs: int, seed: int,
                 device: str, key: str):
        self.opts, self.T, self.seed, self.device, self.key = opts, epochs, seed, device, key
        self.enc, self.sched = enc, sched

    # -- data ------------------------------------------------------------------------------------
    def _data(self):
        import torch

        from . import models

        registry = models.registry()
        check_choices((self.opts.model, list(registry), "--model"))
        model_cls = registry[self.opts.model]
        feats = features.read(self.enc.file(features.FILE), stages=model_cls.needs_stages)
        if model_cls.needs_stages and not feats.stages:
            raise UsageError(f"--model {self.opts.model} needs image stage maps",
                             fix="rerun `climd encode` with --image-stages")
        arrays = model_inputs(feats)
        train = feats.indices("train")
        x = {k: v[train] for k, v in arrays.items()}
        y = feats.labels[train]
        self.class_names = feats.class_names
        self.train_ids = feats.ids[train]
        self.full_counts = np.bincount(y, minlength=feats.n_classes)
        if self.opts.select == "best-valid":
            valid = feats.indices("valid")
            if len(valid) == 0:
                raise UsageError("--select best-valid needs a validation split",
                                 fix="rerun `climd encode` with --val-fraction (Derm7pt has one already)")
            self.xv = {k: torch.as_tensor(v[valid], dtype=torch.float32, device=self.device) for k, v in arrays.items()}
            self.yv = feats.labels[valid]
        x, y = resample.resample(x, y, self.opts.resample, self.seed)
        self.spec = models.InputSpec({k: v.shape[1:] for k, v in x.items()}, feats.kinds)
        self.x = {k: torch.as_tensor(v, dtype=torch.float32, device=self.device) for k, v in x.items()}
        self.y = torch.as_tensor(y, dtype=torch.long, device=self.device)
        self.counts = np.bincount(y, minlength=feats.n_classes)

    def _epoch_rows(self) -> list[np.ndarray | None]:
        """Training rows of every curriculum epoch (None: the whole training split)."""
        if self.sched is None:
            return [None] * self.T
        row = {i: r for r, i in enumerate(self.train_ids)}
        return [np.array([row[i] for i in schedule.epoch_ids(self.sched, t)], dtype=np.int64)
                for t in range(1, self.T + 1)]

    # -- loop --------------------------------------------------------------------------------------
    def fit(self, out: Path) -> dict:
        import torch

        from . import models, progress

        torch.manual_seed(self.seed)
        self._data()
        model = models.build(self.opts.model, self.spec, len(self.class_names), self.opts.model_options).to(self.device)
        optim = torch.optim.Adam(model.parameters(), lr=self.opts.lr, weight_decay=self.opts.weight_decay)
        loss_fn = losses.make(self.opts.loss, self.full_counts, self.opts.focal_gamma, self.device)
        gen = torch.Generator().manual_seed(self.seed)
        history, start, self.best = self._resume(out, model, optim, gen)
        rows = self._epoch_rows()
        total = self.T + self.opts.finish_epochs
        steps_full = math.ceil(len(self.y) / self.opts.batch_size)
        t0 = time.perf_counter()
        with progress.task(f"train {out.parent.name}/{out.name}", total=total, unit="epoch") as advance:
            advance(start - 1)
            for epoch in range(start, total + 1):
                subset = rows[epoch - 1] if epoch <= self.T else None
                record = self._epoch(model, optim, loss_fn, gen, subset, steps_full)
                record.update(epoch=epoch, phase="curriculum" if subset is not None else
                              ("finish" if epoch > self.T else "full"))
                if self.opts.select == "best-valid":
                    record[f"valid_{self.opts.select_metric}"] = self._select(model, epoch)
                history.append(record)
                self._checkpoint(out, model, optim, gen, epoch, history)
                advance(1, loss=f"{record['loss']:.4f}", size=record["subset_size"])
                _debug_sleep()
        return self._finish(out, model, history, time.perf_counter() - t0)

    def _epoch(self, model, optim, loss_fn, gen, subset, steps_full) -> dict:
        import torch

        model.train()
        pool = torch.arange(len(self.y)) if subset is None else torch.as_tensor(subset)
        n_steps = steps_full if self.opts.budget == "steps" else None
        batches = batch_indices(pool, self.y.cpu(), self.opts.batch_size, gen, n_steps, model.batching)
        total, aux_sums, seen = 0.0, {}, 0
        for idx in batches:
            idx = idx.to(self.device)
            out = model({k: v[idx] for k, v in self.x.items()}, self.y[idx])
            loss = loss_fn(out.logits, self.y[idx])
            if out.aux_loss is not None:
                loss = loss + out.aux_loss
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            for k, v in out.aux.items():
                aux_sums[k] = aux_sums.get(k, 0.0) + float(v) * len(idx)
        counts = np.bincount(self.y.cpu()[pool].numpy(), minlength=len(self.class_names))
        return {"subset_size": int(len(pool)), "steps": len(batches), "samples_seen": seen,
                "loss": total / max(seen, 1), **{f"aux_{k}": v / max(seen, 1) for k, v in aux_sums.items()},
                **{f"n_{c}": int(n) for c, n in zip(self.class_names, counts)}}

    def _select(self, model, epoch: int) -> float:
        """Score the model on the validation split; remember its weights if they are the best yet."""
        import torch

        model.eval()
        with torch.no_grad():
            proba = torch.softmax(model(self.xv).logits, dim=1).cpu().numpy().astype("float64")
        value = metrics.compute(self.yv, proba, self.class_names)[self.opts.select_metric]
        value = float("-inf") if value is None else value
        if self.best is None or value > self.best["score"]:
            self.best = {"score": value, "epoch": epoch,
                         "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        return value

    # -- persistence -------------------------------------------------------------------------------
    def _resume(self, out: Path, model, optim, gen):
        import torch

        path = out / CHECKPOINT
        if not path.exists():
            return [], 1, None
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("key") != self.key:
            log.info("checkpoint in %s is from other inputs/options: starting over", out)
            path.unlink()
            return [], 1, None
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log.info("resuming %s from epoch %d", out, state["epoch"])
        return state["history"], state["epoch"] + 1, state.get("best")

    def _checkpoint(self, out: Path, model, optim, gen, epoch: int, history: list) -> None:
        import torch

        state = {"key": self.key, "epoch": epoch, "model": model.state_dict(), "optim": optim.state_dict(),
                 "gen": gen.get_state(), "rng": torch.get_rng_state(), "history": history, "best": self.best,
                 "cuda_rng": torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else None}
        atomic_write_bytes(out / CHECKPOINT, _torch_bytes(state))

    def _finish(self, out: Path, model, history: list, seconds: float) -> dict:
        import pandas as pd

        weights = self.best["state"] if self.best else model.state_dict()
        model_file = {"state_dict": {k: v.cpu() for k, v in weights.items()},
                      "model": self.opts.model, "model_options": self.opts.model_options,
                      "input_shapes": {k: list(v) for k, v in self.spec.shapes.items()},
                      "class_names": self.class_names}
        atomic_write_bytes(out / MODEL, _torch_bytes(model_file))
        frame = pd.DataFrame(history)
        frame["cum_samples"] = frame["samples_seen"].cumsum()
        frame["cum_steps"] = frame["steps"].cumsum()
        atomic_write_text(out / HISTORY, frame.to_csv(index=False, float_format="%.6g"))
        (out / CHECKPOINT).unlink(missing_ok=True)
        return {"epochs": self.T, "finish_epochs": self.opts.finish_epochs, "final_loss": history[-1]["loss"],
                "samples_seen": int(frame["samples_seen"].sum()), "optimizer_steps": int(frame["steps"].sum()),
                "train_class_counts": self.counts.tolist(), "seconds": round(seconds, 2),
                "gpu_peak_mb": _gpu_peak_mb(self.device),
                "selected_epoch": self.best["epoch"] if self.best else len(history),
                "selected_valid_score": self.best["score"] if self.best else None,
                "device": self.device, "class_names": self.class_names}


def _device(name: str) -> str:
    from . import device as devices

    return devices.resolve(name)


def _gpu_peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def model_inputs(feats: features.Features) -> dict[str, np.ndarray]:
    """Every tensor a model may use: modalities, and stage tokens named ``<modality>/s<k>``."""
    arrays = dict(feats.modalities)
    for mod, maps in feats.stages.items():
        for k, m in enumerate(maps):
            arrays[f"{mod}/s{k}"] = m
    return arrays


def batch_indices(pool, y, batch_size: int, gen, n_steps: int | None = None, mode: str = "shuffle") -> list:
    """Mini-batches of training rows.

    ``n_steps=None`` (budget "epochs"): one pass over ``pool`` in a random order, the last batch
    possibly smaller. Otherwise (budget "steps") exactly ``n_steps`` batches of
    min(batch_size, |pool|) rows, cycling through freshly shuffled passes over the pool.
    ``class-balanced``: each batch holds batch_size // C samples of every class in the pool."""
    import torch

    if mode == "class-balanced":
        steps = n_steps or math.ceil(len(pool) / batch_size)
        return _balanced_batches(pool, y, steps, batch_size, gen)
    if n_steps is None:
        return list(pool[torch.randperm(len(pool), generator=gen)].split(batch_size))
    size = min(batch_size, len(pool))
    order, batches = torch.empty(0, dtype=torch.long), []
    for _ in range(n_steps):
        while len(order) < size:
            order = torch.cat([order, pool[torch.randperm(len(pool), generator=gen)]])
        batches.append(order[:size])
        order = order[size:]
    return batches


def _balanced_batches(pool, y, n_steps, batch_size, gen):
    import torch

    classes = torch.unique(y[pool])
    per_class = max(1, batch_size // len(classes))
    queues = {int(c): torch.empty(0, dtype=torch.long) for c in classes}
    members = {int(c): pool[y[pool] == c] for c in classes}
    batches = []
    for _ in range(n_steps):
        parts = []
        for c in queues:
            while len(queues[c]) < per_class:
                queues[c] = torch.cat([queues[c], members[c][torch.randperm(len(members[c]), generator=gen)]])
            parts.append(queues[c][:per_class])
            queues[c] = queues[c][per_class:]
        batches.append(torch.cat(parts))
    return batches


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _debug_sleep() -> None:
    # Test hook: slows epochs down so a test can kill a run part-way through (never set in use).
    delay = os.environ.get("CLIMD_DEBUG_EPOCH_SLEEP")
    if delay:
        time.sleep(float(delay))


def load_model(artifact: Artifact, device: str = "cpu"):
    import torch

    from . import models

    state = torch.load(artifact.file(MODEL), map_location=device, weights_only=False)
    spec = models.InputSpec({k: tuple(v) for k, v in state["input_shapes"].items()})
    model = models.build(state["model"], spec, len(state["class_names"]), state["model_options"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), state


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '0,3,7' and '0-2,9' too."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise UsageError(f"cannot read seeds {text!r}", fix="use e.g. 0-4 or 0,2,5")
    return seeds


def seed_from_env(var: str) -> int:
    value = os.environ.get(var)
    if value is None or not value.strip().lstrip("-").isdigit():
        raise UsageError(f"--seed-from-env {var}: the variable is {'unset' if value is None else repr(value)}",
                         fix=f"run inside the array job, or export {var}=<seed>")
    return int(value)


def _one(cache_dir: str, run_name: str, opts: TrainOptions, seed: int, variant: str | None, force: bool,
         threads: int | None) -> dict:
    if threads:
        import torch

        torch.set_num_threads(threads)
    artifact, reused = run(RunStore(cache_dir, run_name), opts, seed, variant, force)
    return {"seed": seed, "run": run_name, "variant": artifact.name.split("/")[1], "path": str(artifact.path),
            "reused": reused, "summary": artifact.summary}


def run_seeds(cache_dir: Path | str, run_template: str, configs: list[TrainOptions], seeds: list[int],
              variant: str | None = None, force: bool = False, jobs: int = 1) -> list[dict]:
    """Train every (configuration, seed); with jobs > 1 in parallel processes (joblib), one torch
    thread each.

    ``run_template`` may contain ``{seed}`` (e.g. ``brca-s{seed}``): seed k then trains in run k,
    pairing fixed split k with training seed k. Every (run, variant, seed) is its own artifact, so
    this and one seed per array task produce the same files."""
    from .store import run_for_seed

    if variant and len(configs) > 1:
        raise UsageError("--variant names one configuration; drop it when giving several --lr values")
    tasks = [(str(cache_dir), run_for_seed(run_template, s), opts, s, variant, force)
             for opts in configs for s in seeds]
    if jobs <= 1 or len(tasks) == 1:
        return [_one(*t, None) for t in tasks]
    from joblib import Parallel, delayed

    from . import progress

    was = progress.enabled()
    progress.set_enabled(False)
    try:
        return Parallel(n_jobs=jobs, backend="loky")(delayed(_one)(*t, 1) for t in tasks)
    finally:
        progress.set_enabled(was)
