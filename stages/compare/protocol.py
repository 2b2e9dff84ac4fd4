"""``climd compare``: the whole protocol from a data set to the verdict, in one resumable call.

Replicate k of data set NAME is the run ``NAME-r<k>``: replicate 0 is the data set's own split (a
given split, or the stratified split drawn at seed 0), replicate k >= 1 a stratified resplit with the
same sizes (:mod:`stages.data.adapters.resplit`); validation is the data set's own, or 20 % carved from
training (seed k). On every replicate: score, fit-dist and the schedules the panel needs
(:meth:`stages.compare.panel.Panel.upstream`), then every (row, lr, seed) cell of the panel through the batched
engine (:func:`stages.sweep.run.train_cells`: one engine program per row), evaluated on valid and test;
then the verdict report (:mod:`stages.compare.verdict`).

Every step reuses what is fresh (the stages decide, as for ``climd <stage>``), so a rerun redoes only
what is missing, and an interrupted call loses at most the replicas in flight (they resume from their
checkpoints).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from stages.errors import ClimdError, UsageError
from stages.compare.panel import Panel
from stages.store.artifacts import RunStore, default_cache_dir
from stages.sweep.grid import TRAIN, Cell, _train_value

log = logging.getLogger("climd")
VAL_FRACTION = 0.2
# A rough cost model for --dry-run and the ETA, on 2 CPU cores: a row's engine program of R replicas
# takes steps x (PROGRAM_STEP + REPLICA_STEP x R) seconds, other tasks a fixed time. Calibrated on the
# quick panel over 3 ROSMAP replicates (a busy machine: ~60 s, of which ~16 s upstream, ~9 s a row) and
# on the note (a 730-cell panel over 10 ROSMAP-like resplits: 2.5 min); expect +-50 %.
PROGRAM_STEP, REPLICA_STEP = 0.002, 0.00025
SECONDS_PER_IMAGE = 0.05        # image encode at 224 px on CPU (EfficientNet-Lite0)
SECONDS_PER_TASK = {"encode": 1.0, "replicate": 1.0, "score": 2.0, "fit-dist": 0.1, "schedule": 0.2, "evaluate": 0.05,
                    "reference": 0.5, "report": 2.0}


@dataclass
class Setup:
    data: Path | None                  # None: the embedded ROSMAP
    name: str                          # replicate k is run NAME-r<k>
    replicates: int
    seeds: list[int]
    panel: Panel
    cache_dir: Path
    out: Path
    encode_options: dict = field(default_factory=dict)   # extra `climd encode` options (image-size ...)
    format: str | None = None
    split_files: str | None = None     # a split file per replicate: a path with {k} (else: resplits)
    delta: float | None = None         # the decision margin in metric points (None: the report's default)

    def split_file(self, k: int) -> str | None:
        return self.split_files.replace("{k}", str(k)) if self.split_files else None

    @property
    def runs(self) -> list[str]:
        return [f"{self.name}-r{k}" for k in range(self.replicates)]

    @property
    def shared_run(self) -> str:
        """The data set's run: the image/text features of every sample (``encode.shared``)."""
        return f"{self.name}-data"


def setup(data: Path | None, run: str | None, replicates: int, seeds: int, panel: Panel, cache_dir: Path | None,
          out: Path | None, encode_options: dict | None = None, format: str | None = None,
          split_files: str | None = None, delta: float | None = None) -> Setup:
    from stages.core.names import check_name

    if replicates < 1 or seeds < 1:
        raise UsageError("--replicates and --seeds must be >= 1")
    if delta is not None and not 0 <= delta < 100:
        raise UsageError(f"--delta {delta} is not a margin in metric points", fix="give a number in [0, 100), e.g. --delta 2")
    cache = Path(cache_dir or default_cache_dir()).resolve()
    name = run or _default_name(data, format)
    check_name(name, "--run")
    opts = dict(encode_options or {})
    for banned in ("data", "resplit", "seed", "val-fraction", "split-file", "shards", "shared-run"):
        if banned in opts:
            raise UsageError(f"--encode-option {banned} is set by compare itself (replicate k: resplit k, seed k)")
    s = Setup(data=Path(data).resolve() if data else None, name=name, replicates=replicates,
              seeds=list(range(seeds)), panel=panel, cache_dir=cache, out=Path(out) if out else cache / f"{name}-r0" / "compare",
              encode_options=opts, format=format, split_files=split_files, delta=delta)
    if split_files:
        if "{k}" not in split_files:
            raise UsageError(f"--split-files {split_files!r} has no {{k}}", fix="e.g. --split-files splits/seed{k}.csv")
        missing = [s.split_file(k) for k in range(replicates) if not Path(s.split_file(k)).is_file()]
        if missing:
            raise UsageError(f"--split-files: {missing[0]} does not exist ({len(missing)} of {replicates} missing)",
                             fix="one split file per replicate k = 0 ... --replicates - 1")
        s.split_files = str(Path(split_files).resolve())
    return s


def _default_name(data: Path | None, format: str | None) -> str:
    import re

    if data is None:
        return "rosmap"
    path = Path(data)
    stem = path.parent.name if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.").lower() or "data"


# -- the plan --------------------------------------------------------------------------------------
@dataclass
class Facts:
    """What the plan needs to know about the data set, read without encoding it."""
    has_valid: bool                 # its own validation split (else 20 % of training is carved out)
    n_train: int                    # training samples of replicate 0
    n_shared: int                   # samples whose image/text features are encoded once (0: none)


def encode_options(s: Setup, k: int, facts: Facts) -> dict:
    opts = {**({"data": str(s.data)} if s.data else {}), **({"format": s.format} if s.format else {}),
            **({"split-file": s.split_file(k)} if s.split_files else {"resplit": k}), "seed": k, **s.encode_options}
    if not facts.has_valid:
        opts["val-fraction"] = VAL_FRACTION
    if facts.n_shared:
        opts["shared-run"] = s.shared_run
    return opts


def upstream(s: Setup, k: int, facts: Facts) -> list[tuple[str, dict]]:
    return [("encode", encode_options(s, k, facts)), *s.panel.upstream()]


def cells(s: Setup) -> list[tuple[object, list[Cell]]]:
    """(panel row, its cells) in panel order; a row's cells are one engine program."""
    from dataclasses import asdict

    from stages.pipeline.train import TrainOptions

    out = []
    for row in s.panel.rows:
        row_cells = []
        for variant, lr in row.variants():
            fields = {TRAIN[k][0]: _train_value(k, TRAIN[k][1], v) for k, v in row.train.items()}
            opts = TrainOptions(**fields, **({"lr": lr} if lr is not None else {}))
            if opts.model not in _reference_models():
                opts.epochs = s.panel.epochs
            for run in s.runs:
                for seed in s.seeds:
                    row_cells.append(Cell(run=run, seed=seed, variant=variant, options=asdict(opts)))
        out.append((row, row_cells))
    return out


def _reference_models():
    from stages.method.reference import MODELS

    return MODELS


@dataclass
class Task:
    stage: str
    what: str
    runs: list[str]
    count: int                      # replicas (train), artifacts (others)
    fresh: bool
    seconds: float                  # estimated cost when not fresh

    def as_dict(self) -> dict:
        return {"stage": self.stage, "what": self.what, "runs": self.runs, "count": self.count,
                "fresh": self.fresh, "estimated_s": round(self.seconds, 1)}


def dataset_facts(s: Setup) -> Facts:
    """From the data as read (no split drawn, so a rerun with everything fresh imports no scikit-learn):
    whether it has its own validation split, and replicate 0's training size for the cost estimate
    (the drawn split's sizes when the data gives none; every replicate's encode checks the data)."""
    from stages.data.adapters import DataOptions, read_dataset
    from stages.pipeline.shards import SHARDED

    opts = DataOptions(format=s.format, split_file=Path(s.split_file(0)) if s.split_files else None,
                       **_data_fields(s.encode_options))
    ds = read_dataset(s.data, opts)
    has_valid = ds.split is not None and bool((ds.split == "valid").any())
    shared = any(m.kind in SHARDED for m in ds.modalities.values())
    n_train = int((ds.split == "train").sum()) if ds.split is not None else round(ds.n * (1 - opts.test_size))
    if not has_valid:
        n_train = round(n_train * (1 - VAL_FRACTION))
    return Facts(has_valid, n_train, ds.n if shared else 0)


def shared_task(s: Setup, facts: Facts) -> Task | None:
    """The one image/text encode of the data set (None: it has no such modality)."""
    if not facts.n_shared:
        return None
    from stages.pipeline import encode_shared
    from stages.sweep.upstream import encode_args

    data, data_opts, enc = encode_args(encode_options(s, 0, facts))
    fresh = encode_shared.is_done(RunStore(s.cache_dir, s.shared_run), data, data_opts, enc)
    return Task("encode", "image/text features of every sample, once per data set", [s.shared_run], facts.n_shared,
                fresh, SECONDS_PER_IMAGE * facts.n_shared)


def _data_fields(encode_opts: dict) -> dict:
    names = {"modalities": "modalities", "task": "task", "derm-tabular": "derm_tabular",
             "derm-modalities": "derm_modalities", "impute": "impute", "test-size": "test_size"}
    return {names[k]: v for k, v in encode_opts.items() if k in names}


def plan(s: Setup) -> tuple[list[Task], bool]:
    """Every task of the protocol, in order, with whether it is fresh and an estimate of its cost."""
    from stages.sweep.run import stores
    from stages.sweep.upstream import is_done

    facts = dataset_facts(s)
    get, tasks, dirty_runs = stores(s.cache_dir), [], set()
    shared = shared_task(s, facts)
    tasks += [shared] if shared else []
    for k, run in enumerate(s.runs):
        dirty = False
        for stage, opts in upstream(s, k, facts):
            dirty = dirty or not is_done(get(run), stage, opts)
            label = "replicate" if stage == "encode" else stage       # the split, copying shared features
            tasks.append(Task(label, _describe(stage, opts), [run], 1, not dirty, SECONDS_PER_TASK[label]))
        if dirty:
            dirty_runs.add(run)
    steps = -(-facts.n_train // 32) * s.panel.epochs
    for row, row_cells in cells(s):
        todo = [c for c in row_cells if c.run in dirty_runs or not _fresh(get, c)]
        reference = not row.lrs
        cost = (SECONDS_PER_TASK["reference"] * len(todo) if reference else
                 steps * (PROGRAM_STEP + REPLICA_STEP * len(todo)) if todo else 0.0)
        tasks.append(Task("train", row.name, sorted({c.run for c in row_cells}), len(row_cells), not todo, cost))
        tasks.append(Task("evaluate", row.name, sorted({c.run for c in row_cells}), 2 * len(row_cells), not todo,
                          SECONDS_PER_TASK["evaluate"] * 2 * len(todo)))
    tasks.append(Task("report", str(s.out), s.runs, 1, False, SECONDS_PER_TASK["report"]))
    return tasks, facts


def _fresh(get, cell: Cell) -> bool:
    from stages.store.artifacts import Artifact
    from stages.sweep.run import cell_artifact

    try:
        return isinstance(cell_artifact(get, cell), Artifact)
    except ClimdError:
        return False


def _describe(stage: str, opts: dict) -> str:
    shown = {k: v for k, v in opts.items() if k not in ("data", "shared-run")}
    return " ".join(f"--{k} {v}" for k, v in shown.items()) or "(defaults)"


def summary(tasks: list[Task]) -> str:
    todo = [t for t in tasks if not t.fresh]
    replicas = sum(t.count for t in todo if t.stage == "train")
    seconds = sum(t.seconds for t in todo)
    return (f"{len(tasks)} tasks, {len(tasks) - len(todo)} fresh; to do: {len(todo)} "
            f"({replicas} replicas to train), estimated {_clock(seconds)} on 2 CPU cores")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


# -- doing it --------------------------------------------------------------------------------------
class Clock:
    """Progress on stderr: what runs now, how far, and an ETA from the estimated cost of what is left."""

    def __init__(self, tasks: list[Task]):
        self.total = sum(t.seconds for t in tasks if not t.fresh) or 1.0
        self.done, self.start = 0.0, time.perf_counter()

    def say(self, what: str) -> None:
        elapsed = time.perf_counter() - self.start
        frac = min(self.done / self.total, 1.0)
        eta = f", ETA {_clock(elapsed * (1 - frac) / frac)}" if frac > 0.02 else ""
        log.info("compare [%3d%%, %s elapsed%s]: %s", round(100 * frac), _clock(elapsed), eta, what)

    def advance(self, seconds: float) -> None:
        self.done += seconds


def run(s: Setup, force: bool = False, jobs: int | None = None, progress=None, command: str = "") -> dict:
    """Everything that is not fresh, then the verdict. Returns a summary (paths, what was built).
    ``command``: the command line, recorded in the verdict and the data set's shared encode."""
    from stages.compare import verdict
    from stages.sweep.run import build_upstream, train_cells

    command = command or f"climd compare --data {s.data or '(embedded ROSMAP)'} --replicates {s.replicates}"
    tasks, facts = plan(s)
    clock = Clock(tasks)
    log.info("compare %s: %s", s.name, summary(tasks))
    by_run, built = {}, 0
    for t in tasks:
        if t.stage in ("replicate", "score", "fit-dist", "schedule"):
            by_run.setdefault(t.runs[0], []).append(t)
    shared = tasks[0] if tasks[0].stage == "encode" else None
    if shared is not None:
        from stages.pipeline import encode_shared
        from stages.sweep.upstream import encode_args

        if not shared.fresh:
            clock.say(f"encode {shared.count} samples' image/text features once ({s.shared_run})")
        store = RunStore(s.cache_dir, s.shared_run, command=command)
        _, reused = encode_shared.run(store, *encode_args(encode_options(s, 0, facts)), force)
        built += not reused
        clock.advance(0 if shared.fresh else shared.seconds)
    for k, run in enumerate(s.runs):
        todo = [t for t in by_run[run] if not t.fresh]
        if todo:
            clock.say(f"replicate {k + 1}/{s.replicates} ({run}): {', '.join(t.stage for t in todo)}")
        out = build_upstream(s.cache_dir, run, upstream(s, k, facts), force)
        built += sum(not o["reused"] for o in out)
        clock.advance(sum(t.seconds for t in todo))
    trained, reused = [], []
    train_tasks = {t.what: t for t in tasks if t.stage == "train"}
    eval_tasks = {t.what: t for t in tasks if t.stage == "evaluate"}
    for i, (row, row_cells) in enumerate(cells(s), 1):
        t = train_tasks[row.name]
        if not t.fresh:
            lrs = ", ".join(f"{lr:g}" for lr in row.lrs) or "no lr"
            clock.say(f"train {i}/{len(s.panel.rows)} {row.name} ({row.group}): {len(row_cells)} replicas "
                      f"= {s.replicates} replicates x {len(s.seeds)} seeds x lr {lrs}")
        done = train_cells(s.cache_dir, row_cells, force, jobs, None, progress if not t.fresh else None,
                           ["valid", "test"])
        trained += done["trained"]
        reused += done["reused"]
        clock.advance(t.seconds + eval_tasks[row.name].seconds)
    clock.say(f"report -> {s.out}")
    out = verdict.write(s, command)
    clock.advance(SECONDS_PER_TASK["report"])
    return {"out": str(out), "runs": s.runs, "upstream_built": built, "trained": len(trained),
            "reused": len(reused), "seconds": round(time.perf_counter() - clock.start, 1)}
