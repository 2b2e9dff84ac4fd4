"""The grid of a sweep, read from YAML: runs x train option sets x seeds, plus (optionally) the stages
before training and the evaluation after it (format: ``climd sweep --help``, examples/grids/). One
*cell* = (run, train option set, seed) = one train artifact ``<run>/train/<variant>/seed<k>/``.

Every mistake is one :class:`UsageError` naming the file, the line and the key, with the closest
valid key for a typo.
"""
from __future__ import annotations

import difflib
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from stages.store import layout
from stages.core import cmdline, yamlfile
from stages.errors import ClimdError, UsageError
from stages.core.names import check_name
from stages.store.artifacts import RunStore, run_for_seed
from stages.sweep.upstream import OPTIONS as UPSTREAM_OPTIONS
from stages.sweep.upstream import UPSTREAM, coerce
from stages.sweep.upstream import check as check_upstream
from stages.pipeline.train import TrainOptions, parse_seeds

TOP = ("name", "description", "runs", "seeds", *UPSTREAM, "train", "evaluate")
SPLITS = ("test", "valid")
ELSEWHERE = {"seed": "give seeds at the top level (seeds: 0-4)", "seeds": "give seeds at the top level (seeds: 0-4)",
             "run": "give runs at the top level (runs: ...)", "jobs": "--jobs is an option of `climd sweep`",
             "force": "--force is an option of `climd sweep`", "threads": "--threads is an option of `climd sweep`",
             "seed-from-env": "a sweep chooses the seeds itself (seeds: 0-4)"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _train_kinds() -> dict[str, tuple[str, str]]:
    """`climd train` option -> (TrainOptions field, kind)."""
    kinds = {"float": "float", "int": "int", "str": "str", "int | None": "int", "str | None": "str", "dict": "dict"}
    out = {f.name.replace("_", "-"): (f.name, kinds[str(f.type)]) for f in fields(TrainOptions)}
    out["model-option"] = out.pop("model-options")
    out["variant"] = ("variant", "str")
    return out


TRAIN = _train_kinds()
_FLAG = {name: flag for flag, (name, _) in TRAIN.items()}


@dataclass
class Cell:
    """One (run, train option set, seed): one train artifact."""

    run: str
    seed: int
    variant: str
    options: dict                  # TrainOptions fields
    set: int = 0                   # index of the option set in the grid's train list

    @property
    def name(self) -> str:
        return layout.train_name(self.variant, self.seed)

    @property
    def key(self) -> str:
        return layout.replicate(self.run, self.seed, self.variant)

    def train_options(self) -> TrainOptions:
        return TrainOptions(**self.options)

    def batch_key(self) -> str:
        """Cells with equal batch keys differ only in seed, learning rate and run: the engine trains
        them as one program, so a SLURM task holds them together."""
        return json.dumps({k: v for k, v in self.options.items() if k != "lr"}, sort_keys=True)

    def command(self) -> str:
        """The `climd train` command that builds this cell alone (recorded in its meta.json)."""
        default, parts = TrainOptions(), [f"--run {self.run}"]
        for flag, (name, _) in TRAIN.items():
            value = self.options.get(name)
            if name == "variant" or value == getattr(default, name):
                continue
            if name == "model_options":
                parts += [f"--model-option {k}={v}" for k, v in value.items()]
            elif name == "batch_size" and value == 0:
                parts.append("--batch-size full")
            else:
                parts += cmdline.option(f"--{flag}", value)
        if self.variant != self.train_options().variant_name():
            parts += cmdline.option("--variant", self.variant)
        return cmdline.climd("train", parts + [f"--seed {self.seed}"])

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(run=d["run"], seed=int(d["seed"]), variant=d["variant"], options=dict(d["options"]),
                   set=int(d.get("set", 0)))


@dataclass
class Grid:
    path: Path
    name: str
    runs: list[str]
    seeds: list[int]
    upstream: dict[str, list[dict]]          # stage -> invocations (options, placeholders unformatted)
    evaluate: list[str]
    cells: list[Cell]
    raw: dict = field(default_factory=dict)

    def run_seeds(self) -> dict[str, int | None]:
        """Every run of the grid, in order, with the seed that names it (None: shared by all seeds)."""
        out: dict[str, int | None] = {}
        for template in self.runs:
            for s in self.seeds:
                out.setdefault(run_for_seed(template, s), s if "{seed}" in template else None)
        return out

    def upstream_for(self, run: str) -> list[tuple[str, dict]]:
        """(stage, options) of every stage before training, for ``run``, placeholders filled in."""
        seed = self.run_seeds()[run]
        out = []
        for stage in UPSTREAM:
            for opts in self.upstream.get(stage, []):
                out.append((stage, {k: _fill(v, run, seed) for k, v in opts.items()}))
        return out

    @property
    def first_run(self) -> str:
        return next(iter(self.run_seeds()))


def _fill(value, run: str, seed: int | None):
    if isinstance(value, str):
        return value.replace("{run}", run).replace("{seed}", "" if seed is None else str(seed))
    if isinstance(value, list):
        return [_fill(v, run, seed) for v in value]
    return value


# -- reading -------------------------------------------------------------------------------------------
class _Where:
    """Turns a key path into 'FILE, line N: key' using the positions of the parsed YAML."""

    def __init__(self, path: Path, lines: dict):
        self.path, self.lines = path, lines

    def __call__(self, *keys) -> str:
        line = yamlfile.line_of(self.lines, keys)
        text = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(keys))
        return f"{self.path}" + (f", line {line}" if line else "") + (f": {text}" if text else "")

    def fail(self, keys: tuple, problem: str, fix: str | None = None):
        raise UsageError(f"{self(*keys)}: {problem}", fix=fix)

    def unknown(self, keys: tuple, key, valid, what: str):
        hint = ELSEWHERE.get(str(key))
        close = difflib.get_close_matches(str(key).replace("_", "-"), list(valid), n=1, cutoff=0.5)
        fix = hint or (f"did you mean '{close[0]}'? " if close else "") + f"valid keys: {', '.join(valid)}"
        self.fail(keys + (key,), f"unknown {what} {key!r}", fix)


def load_grid(path: Path | str) -> Grid:
    """Read and validate a grid file; every cell is expanded and its train options checked."""
    path = Path(path)
    text = yamlfile.read_text(path, "grid file", fix="check the path (see examples/grids/)")
    raw, lines = yamlfile.parse(text, str(path), fix="check the indentation and quoting: inside [...] or {...}, "
                                                     "quote values with {seed} (\"brca-s{seed}\"); see examples/grids/")
    w = _Where(path, lines)
    if not isinstance(raw, dict):
        w.fail((), "a grid is a YAML mapping with the keys runs, seeds and train",
               fix="see examples/grids/ or `climd sweep --help`")
    for key in raw:
        if key not in TOP:
            w.unknown((), key, TOP, "key")
    for key in ("runs", "train"):               # train: {} is one option set: the defaults
        if raw.get(key) in (None, [], "") or key == "runs" and raw[key] == {}:
            w.fail((key,), "is missing or empty", fix="see `climd sweep --help` for the grid format")
    name = raw.get("name", path.stem)
    try:
        check_name(name, "sweep name")
    except UsageError as exc:
        w.fail(("name",) if "name" in raw else (), exc.message, exc.fix)
    seeds = _seeds(raw.get("seeds", 0), w)
    runs = _runs(raw["runs"], seeds, w)
    upstream = {stage: _upstream(stage, raw[stage], path, w) for stage in UPSTREAM if raw.get(stage) is not None}
    grid = Grid(path=path, name=str(name), runs=runs, seeds=seeds, upstream=upstream,
                evaluate=_evaluate(raw.get("evaluate"), w), cells=[], raw=raw)
    _check_placeholders(grid, w)
    grid.cells = _cells(raw["train"], grid, w)
    return grid


def _seeds(value, w: _Where) -> list[int]:
    if isinstance(value, bool):
        w.fail(("seeds",), f"cannot read seeds {value!r}", fix="use e.g. 0-4, 0,2,5 or [0, 1, 2]")
    if isinstance(value, int):
        value = [value]
    try:
        if isinstance(value, list):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise UsageError(f"cannot read seeds {value!r}")
            seeds = list(value)
        else:
            seeds = parse_seeds(str(value))
    except UsageError as exc:
        w.fail(("seeds",), exc.message, fix="use e.g. 0-4, 0,2,5 or [0, 1, 2] (seeds >= 0)")
    if any(s < 0 for s in seeds):
        w.fail(("seeds",), f"seed {min(seeds)} is negative", fix="use seeds >= 0")
    return list(dict.fromkeys(seeds))


def _runs(value, seeds: list[int], w: _Where) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(r, str) for r in items):
        w.fail(("runs",), f"expected a run name or a list of them, got {value!r}")
    for i, template in enumerate(items):
        keys = ("runs",) if isinstance(value, str) else ("runs", i)
        bad = [p for p in _PLACEHOLDER.findall(template) if p != "seed"]
        if bad:
            w.fail(keys, f"unknown placeholder {{{bad[0]}}} in {template!r}", fix="only {seed} is filled in")
        try:
            RunStore(None, run_for_seed(template, seeds[0]))
        except UsageError as exc:
            w.fail(keys, exc.message, exc.fix)
    return list(dict.fromkeys(items))


def _upstream(stage: str, value, grid_path: Path, w: _Where) -> list[dict]:
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        w.fail((stage,), f"expected the options of `climd {stage}` (a mapping, or a list of mappings)")
    out, valid = [], UPSTREAM_OPTIONS[stage]
    for i, item in enumerate(items):
        keys = (stage,) if isinstance(value, dict) else (stage, i)
        opts = {}
        for key, v in item.items():
            canon = str(key).replace("_", "-")
            if canon not in valid:
                w.unknown(keys, key, valid, f"{stage} option")
            try:
                # encode's seed and resplit may be '{seed}' (replicate k = resplit k), filled in per run
                opts[canon] = v if stage == "encode" and canon in ("seed", "resplit") and v == "{seed}" \
                    else coerce(valid[canon], v)
                if valid[canon] == "path" and opts[canon]:
                    opts[canon] = _path(opts[canon], grid_path)
            except ValueError as exc:
                w.fail(keys + (key,), str(exc))
        try:
            check_upstream(stage, {k: _fill(v, "run", 0) for k, v in opts.items()})
        except (ClimdError, ValueError, TypeError) as exc:
            w.fail(keys, getattr(exc, "message", str(exc)), getattr(exc, "fix", None))
        out.append(opts)
    return out


def _path(value: str, grid_path: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        raise ValueError(f"{value!r} names an unset environment variable")
    p = Path(expanded)
    return str(p if p.is_absolute() else (grid_path.parent / p).resolve())


def _evaluate(value, w: _Where) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        w.fail(("evaluate",), "expected a mapping like {splits: [test]}")
    for key in value:
        if key != "splits":
            w.unknown(("evaluate",), key, ("splits",), "evaluate option")
    splits = value.get("splits", "test")
    splits = [splits] if isinstance(splits, str) else splits
    if not isinstance(splits, list) or not splits or any(s not in SPLITS for s in splits):
        w.fail(("evaluate", "splits"), f"expected test and/or valid, got {value.get('splits')!r}")
    return list(dict.fromkeys(splits))


def _check_placeholders(grid: Grid, w: _Where) -> None:
    shared = [r for r, s in grid.run_seeds().items() if s is None]
    for stage, invocations in grid.upstream.items():
        for i, opts in enumerate(invocations):
            for key, v in opts.items():
                text = json.dumps(v)
                bad = [p for p in _PLACEHOLDER.findall(text) if p not in ("seed", "run")]
                if bad:
                    w.fail((stage, key), f"unknown placeholder {{{bad[0]}}}", fix="use {seed} or {run}")
                if "{seed}" in text and shared and len(grid.seeds) > 1:
                    w.fail((stage, key), f"uses {{seed}}, but run {shared[0]!r} serves every seed",
                           fix="name the runs with {seed} (runs: brca-s{seed}) or drop {seed} here")


# -- cells -----------------------------------------------------------------------------------------
def _cells(value, grid: Grid, w: _Where) -> list[Cell]:
    sets = [value] if isinstance(value, dict) else value
    if not isinstance(sets, list) or not all(isinstance(s, dict) for s in sets):
        w.fail(("train",), "expected `climd train` options: a mapping, or a list of mappings (option sets)")
    cells: dict[str, Cell] = {}
    for i, entry in enumerate(sets):
        keys = ("train",) if isinstance(value, dict) else ("train", i)
        for combo in _expand(entry, keys, w):
            variant_template = combo.pop("variant", None)
            try:
                opts = TrainOptions(**combo)
                opts.check()
                variant = opts.variant_name() if variant_template is None else _variant(variant_template, opts)
                check_name(variant, "variant name")
            except (ClimdError, ValueError) as exc:
                shown = ", ".join(f"{_FLAG[k]}={_show(v)}" for k, v in combo.items())
                w.fail(keys, f"{getattr(exc, 'message', None) or exc} (options: {shown or 'defaults'})",
                       getattr(exc, "fix", None) or "variant may use {option} placeholders, e.g. base@lr{lr}")
            for template in grid.runs:
                for s in grid.seeds:
                    cell = Cell(run=run_for_seed(template, s), seed=s, variant=variant, options=asdict(opts), set=i)
                    old = cells.get(cell.key)
                    if old is not None and old.options != cell.options:
                        w.fail(keys, f"two option sets make variant {variant!r} (train[{old.set}] and train[{i}])",
                               fix="give them different `variant:` names")
                    cells.setdefault(cell.key, cell)
    return list(cells.values())


def _expand(entry: dict, keys: tuple, w: _Where) -> list[dict]:
    """One option set -> its combinations: list values expand as a cartesian product."""
    choices = []
    for key, value in entry.items():
        canon = str(key).replace("_", "-")
        if canon == "model-options":
            canon = "model-option"
        if canon not in TRAIN:
            w.unknown(keys, key, list(TRAIN), "train option")
        name, kind = TRAIN[canon]
        values = value if isinstance(value, list) else [value]
        if not values:
            w.fail(keys + (key,), "an empty list expands to no cell")
        try:
            choices.append([(name, _train_value(canon, kind, v)) for v in values])
        except ValueError as exc:
            w.fail(keys + (key,), str(exc))
    return [dict(c) for c in itertools.product(*choices)]


def _train_value(flag: str, kind: str, value):
    if flag == "batch-size" and isinstance(value, str) and value.strip().lower() == "full":
        return 0
    if kind == "dict":
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            raise ValueError(f"expected a mapping like {{hidden: 128}}, got {value!r}")
        return {str(k): v for k, v in value.items()}
    return coerce(kind, value)


def _variant(template: str, opts: TrainOptions) -> str:
    values = {flag: _show(getattr(opts, name)) for flag, (name, _) in TRAIN.items() if name != "variant"}
    try:
        return template.format_map(values)
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"variant {template!r}: unknown placeholder {exc}") from None


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "+".join(f"{k}{x}" for k, x in sorted(v.items()))
    return str(v)
