"""Stage ``train``: a multimodal model trained on the schedule's per-epoch subsets (or on the whole
training split every epoch), one artifact per (run, variant, seed): ``train/<variant>/seed<k>/``.

All replicas of one call (seeds, learning rates, runs, curricula with equal epoch sizes) that share a
model architecture train together as one vectorised program (:mod:`stages.engine.loop`); every replica
still gets its own artifact (model files, history.csv, meta.json), identical to training it alone.
scikit-learn references (``--model logreg`` ...) are fitted directly (:mod:`stages.method.reference`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

from stages.engine import losses
from stages.core import metrics
from stages.method import pacing
from stages.method import reference
from stages.engine import resample
from stages.pipeline import schedule
from stages.errors import StaleArtifactError, UsageError, check_choices
from stages.core.names import check_name
from stages.engine.replicas import Replica
from stages.store import layout
from stages.store.artifacts import Artifact, RunStore, run_for_seed, without_defaults
from stages.engine import dsrmc

STAGE, VERSION = "train", 2
CURRICULA = ("none",) + pacing.PACINGS + (dsrmc.NAME,)
SCHEDULE_FREE = ("none", dsrmc.NAME)   # curricula that read no schedule artifact
BUDGETS = ("epochs", "steps")
SELECT = ("last", "best-valid")
DEFAULT_EPOCHS = 100
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
    batch_size: int = 32                 # 0: the whole epoch pool in one step (full batch)
    lr_step: int = 0                     # multiply lr by lr_gamma every lr_step epochs (0: constant)
    lr_gamma: float = 0.1
    loss: str = "ce"
    focal_gamma: float = 2.0
    la_tau: float = 1.0
    la_prior: str = "train"
    ldam_max_margin: float = 0.5
    ldam_scale: float = 1.0
    drw_start: float = 0.8
    drw_beta: float = 0.9999
    cb_beta: float = 0.9999
    resample: str = "none"
    budget: str = "epochs"
    finish_epochs: int = 0
    select: str = "last"
    select_metric: str = "f1_macro"
    dsrmc_pace: float = dsrmc.DEFAULT_PACE   # --curriculum dsrmc: every batch from epoch pace * T on
    device: str = "auto"

    def loss_options(self) -> losses.LossOptions:
        return losses.LossOptions(name=self.loss, focal_gamma=self.focal_gamma, la_tau=self.la_tau, la_prior=self.la_prior,
                                  ldam_max_margin=self.ldam_max_margin, ldam_scale=self.ldam_scale,
                                  drw_start=self.drw_start, drw_beta=self.drw_beta, cb_beta=self.cb_beta)

    def check(self) -> None:
        check_choices((self.curriculum, CURRICULA, "--curriculum"), (self.resample, resample.RESAMPLERS, "--resample"),
                      (self.budget, BUDGETS, "--budget"), (self.select, SELECT, "--select"),
                      (self.select_metric, metrics.HEADLINE, "--select-metric"))
        self.loss_options().check()
        if self.schedule_tag is not None:
            check_name(self.schedule_tag, "--schedule-tag")
        if self.resample != "none" and self.curriculum not in SCHEDULE_FREE:
            raise UsageError("--resample makes synthetic/removed samples the schedule cannot name",
                             fix="use --resample with --curriculum none or dsrmc")
        dsrmc.check_pace(self.dsrmc_pace)
        if self.schedule_tag is not None and self.curriculum == dsrmc.NAME:
            raise UsageError("--curriculum dsrmc reads no schedule, so --schedule-tag has nothing to select",
                             fix="drop --schedule-tag")
        if self.dsrmc_pace != dsrmc.DEFAULT_PACE and self.curriculum != dsrmc.NAME:
            raise UsageError(f"--dsrmc-pace applies only to --curriculum dsrmc, not {self.curriculum}",
                             fix="drop --dsrmc-pace or use --curriculum dsrmc")
        if self.model in reference.MODELS and (self.curriculum != "none" or self.resample != "none"):
            raise UsageError(f"--model {self.model} is a scikit-learn reference: it takes neither a curriculum "
                             "nor --resample", fix="use --curriculum none")
        if not self.lr > 0 or self.batch_size < 0 or self.finish_epochs < 0 or self.weight_decay < 0:
            raise UsageError("--lr must be > 0, --batch-size >= 0 (0 = full batch), --finish-epochs and "
                             "--weight-decay >= 0")
        if self.lr_step < 0 or not self.lr_gamma > 0:
            raise UsageError("--lr-step must be >= 0 and --lr-gamma > 0")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError("--epochs must be >= 1")

    def variant_name(self) -> str:
        """A readable default name from the options that differ from the paper's defaults."""
        if self.model in reference.MODELS:
            return self.model
        default = TrainOptions()
        base = "baseline" if self.curriculum == "none" else self.curriculum
        if self.schedule_tag:
            base += f".{self.schedule_tag}"
        parts = [base if self.model == "early-fusion" else f"{self.model}-{base}"]
        suffix = self.loss_options().variant_suffix()
        parts += [suffix] if suffix else []
        parts += [self.resample] if self.resample != "none" else []
        parts += ["steps"] if self.budget == "steps" else []
        parts += [f"finish{self.finish_epochs}"] if self.finish_epochs else []
        parts += [f"lr{self.lr:g}"] if self.lr != default.lr else []
        parts += [f"wd{self.weight_decay:g}"] if self.weight_decay else []
        parts += ["fullbatch"] if self.batch_size == 0 else ([f"bs{self.batch_size}"] if self.batch_size != default.batch_size else [])
        parts += [f"lrstep{self.lr_step}x{self.lr_gamma:g}"] if self.lr_step else []
        parts += [f"sel-{self.select_metric}"] if self.select == "best-valid" else []
        parts += [f"pace{self.dsrmc_pace:g}"] if self.dsrmc_pace != dsrmc.DEFAULT_PACE else []
        parts += [f"{k}{v}" for k, v in sorted(self.model_options.items())]
        return "+".join(parts)


def artifact_name(variant: str, seed: int) -> str:
    return layout.train_name(variant, seed)


def prepare(store: RunStore, opts: TrainOptions, seed: int, variant: str | None = None, force: bool = False,
            command: str = "") -> Replica | Artifact:
    """The reusable artifact of (variant, seed), or a :class:`Replica` to train. The device is not part
    of the key: the same experiment run on a GPU machine reuses a CPU result (its summary says where)."""
    opts.check()
    variant = check_name(opts.variant_name() if variant is None else variant, "variant name")
    if int(seed) < 0:
        raise UsageError(f"seed {seed} is negative", fix="use seeds >= 0")
    enc = store.load("encode")
    inputs, sched, epochs = {"encode": enc.ref()}, None, opts.epochs or DEFAULT_EPOCHS
    if opts.curriculum not in SCHEDULE_FREE:
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
    if opts.model in reference.MODELS:
        params = {k: params[k] for k in ("model", "curriculum", "seed")}
    key_params = without_defaults(params, asdict(TrainOptions()), keep=("model", "curriculum", "epochs", "seed"))
    ticket = store.begin(artifact_name(variant, seed), STAGE, VERSION, params, inputs, force=force,
                         key_params=key_params)
    if ticket.reused:
        return ticket.artifact
    return Replica(store, variant, seed, opts, ticket, enc, sched, epochs, command, force=force)


def run(store: RunStore, opts: TrainOptions, seed: int, variant: str | None = None,
        force: bool = False) -> tuple[Artifact, bool]:
    """Train (or reuse) one (variant, seed)."""
    result = run_many([(store, opts, seed, variant)], force)[0]
    return result["artifact"], result["reused"]


def run_many(tasks: list[tuple], force: bool = False, jobs: int | None = 1, cadence=None, commands=None,
             progress=None) -> list[dict]:
    """Train every (store, options, seed, variant) task: reused artifacts are skipped, scikit-learn
    references fitted directly, the rest trained by the batched engine, in ``jobs`` processes
    (None: as many as :func:`stages.pipeline.workers.auto_jobs` finds worth it)."""
    from stages.engine import loop as engine
    from stages.runtime import threads
    from stages.pipeline import workers

    cadence = cadence or engine.Cadence()
    results, todo = [], []
    for i, (store, opts, seed, variant) in enumerate(tasks):
        command = commands[i] if commands else ""
        item = prepare(store, opts, seed, variant, force, command)
        if isinstance(item, Artifact):
            results.append({"task": i, "artifact": item, "reused": True})
        elif opts.model in reference.MODELS:
            results.append({"task": i, "artifact": _fit_reference(item), "reused": False})
        else:
            todo.append((i, item))
    if not todo:
        return sorted(results, key=lambda r: r["task"])
    reps = [rep for _, rep in todo]
    device = _device(reps)
    n_jobs = jobs if jobs else workers.auto_jobs(reps, device, threads.configured())
    if n_jobs > 1 and len(todo) > 1 and device == "cpu":
        results += workers.train_in_workers(todo, force, n_jobs, cadence, commands, run_many)
        return sorted(results, key=lambda r: r["task"])
    errors, leases = _prepare_replicas(reps)
    ready = [rep for rep in reps if id(rep) not in errors]
    try:
        done, failed = engine.train(ready, device, cadence, progress)
    finally:
        for lease in leases:
            lease.release()
    by_name = {a.path.resolve(): a for a in done}
    for i, rep in todo:
        artifact = by_name.get(rep.path.resolve())
        if artifact is not None:
            results.append({"task": i, "artifact": artifact, "reused": False})
    problems = list(errors.values()) + failed
    if problems:
        first = problems[0]
        first.message = "; ".join(p.message for p in problems)    # every replica that did not train
        raise first
    return sorted(results, key=lambda r: r["task"])


def _prepare_replicas(reps: list[Replica]) -> tuple[dict, list]:
    """Data, pools, leases and resume points. A replica that another process is training (a live
    lease on its folder) or whose checkpoint is damaged is set aside, named in the error raised at
    the end, so the others still train."""
    from stages.engine import replicas
    from stages.store.lease import Lease, LeaseHeld

    replicas.load_units(reps)
    replicas.attach_pools(reps)
    errors, leases = {}, []
    for rep in reps:
        rep.path.mkdir(parents=True, exist_ok=True)
        try:
            leases.append(Lease(rep.path, purpose=f"training {rep.label()}").acquire())
        except LeaseHeld as exc:
            exc.message = f"{rep.label()}: {exc.message}"
            errors[id(rep)] = exc
            continue
        rep.ticket.open_in_place(clear=rep.force)
        try:
            replicas.resume_epoch(rep)
        except StaleArtifactError as exc:
            exc.message = f"{rep.label()}: {exc.message}"
            errors[id(rep)] = exc
        else:
            if rep.start_epoch > 1:
                log.info("resuming %s from epoch %d", rep.label(), rep.start_epoch - 1)
    return errors, leases


def _device(reps: list[Replica]) -> str:
    from stages.runtime import device as devices

    wanted = {rep.opts.device for rep in reps}
    if len(wanted) > 1:
        raise UsageError(f"one call trains on one device, got {sorted(wanted)}")
    return devices.resolve(wanted.pop())


def _fit_reference(rep: Replica) -> Artifact:
    from stages.data import features

    path = rep.ticket.open_in_place(clear=True)
    summary = reference.fit(features.read(rep.enc.file(features.FILE)), rep.opts.model, rep.seed, path)
    rep.ticket.commit(path, summary, command=rep.command or None)
    return rep.store.read(rep.name)


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '0,3,7' and '0-2,9' too."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise UsageError(f"cannot read seeds {text!r}", fix="use e.g. 0-4 or 0,2,5") from None
    if not seeds:
        raise UsageError(f"--seeds {text!r} names no seed", fix="use e.g. 0-4 or 0,2,5")
    return seeds


def seed_from_env(var: str) -> int:
    value = os.environ.get(var)
    if value is None or not value.strip().isdigit():
        raise UsageError(f"--seed-from-env {var}: the variable is {'unset' if value is None else repr(value)}",
                         fix=f"run inside the array job, or export {var}=<seed>")
    return int(value)


def run_seeds(cache_dir, run_template: str, configs: list[TrainOptions], seeds: list[int],
              variant: str | dict | None = None, force: bool = False, jobs: int | None = 1, cadence=None,
              command_for=None, progress=None) -> list[dict]:
    """Train every (configuration, seed). ``run_template`` may contain ``{seed}``
    (``brca-s{seed}``): seed k then trains in run k, pairing split k with training seed k.
    Every (run, variant, seed) is its own artifact, so this and one seed per array task write the
    same files."""
    if isinstance(variant, str) and len(configs) > 1:
        raise UsageError("--variant names one configuration; drop it when giving several --lr values",
                         fix="use --variant-prefix to name them PREFIX@lr<value>")
    tasks, commands = [], []
    for opts in configs:
        name = variant.get(id(opts)) if isinstance(variant, dict) else variant
        for s in seeds:
            run = run_for_seed(run_template, s)
            tasks.append((RunStore(cache_dir, run), opts, s, name))
            commands.append(command_for(run, opts, s) if command_for else "")
    results = run_many(tasks, force, jobs, cadence, commands, progress)
    out = []
    for r in results:
        store, opts, seed, _ = tasks[r["task"]]
        a = r["artifact"]
        out.append({"seed": seed, "run": store.run, "variant": a.name.split("/")[1], "path": str(a.path),
                    "reused": r["reused"], "summary": a.summary})
    return out
