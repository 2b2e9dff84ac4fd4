"""The panel of ``climd compare``: which methods are trained, at which learning rates, and which compete
as *curriculum* and which as *non-curriculum* (a YAML file a user can read and edit).

A row names a method of :data:`CATALOGUE` (its name is the variant name ``climd train`` gives those
options, e.g. ``climd.oof-zscore+steps``), or gives ``name`` and ``train`` options of its own. Each row
has a group (``curriculum``, ``non-curriculum``, or ``control``: trained and reported, never chosen)
and an lr grid (the panel's ``lr`` unless the row gives one; scikit-learn references have none). The
variants of a row are ``NAME`` at lr 5e-5 and ``NAME+lr<lr>`` otherwise (``climd+lr0.001``).

Every mistake is one :class:`UsageError` naming the file and line, with "did you mean" for a typo.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from stages.core import yamlfile
from stages.errors import ClimdError, UsageError

GROUPS = ("curriculum", "non-curriculum", "control")
DEFAULT_LR = 5e-5
FOLDS = 5

# score tag -> `climd score` options;  schedule tag -> (`climd schedule` options, score tag it reads)
SCORES = {None: {}, "oof": {"folds": FOLDS}, "zscore": {"combine": "zscore"}, "rank": {"combine": "rank"},
          "oof-zscore": {"folds": FOLDS, "combine": "zscore"}, "intra": {"measure": "intra"},
          "inter": {"measure": "inter"}}
GAMMAS = {"g0.1": 0.1, "g0.5": 0.5, "g1.0": 1.0}            # fit-dist --gamma G --tag gG (Table 5 analog)
SCHEDULES = {None: ({}, None), "literal": ({"overflow": "drop"}, None), "random": ({"order": "random"}, None),
             "oof": ({}, "oof"), "zscore": ({}, "zscore"), "rank": ({}, "rank"), "oof-zscore": ({}, "oof-zscore"),
             "intra": ({}, "intra"), "inter": ({}, "inter"),
             **{tag: ({"dist-tag": tag}, None) for tag in GAMMAS}}
PACINGS = ("baby-step", "one-pass", "linear", "root", "geom")    # --curriculum P: schedule --pacing P
# curricula that train from the encode alone (no score or schedule to build first): dsrmc orders its
# batches inside training; the owner of this fact is stages.pipeline.train
BUCKETS = 10

# The methods a panel row may name: `climd train` options (as a grid spells them); the name of each is
# the variant name those options make (TrainOptions.variant_name), so the panel and the code agree.
CATALOGUE_OPTIONS = [
    {"curriculum": "climd"},
    {"curriculum": "climd", "schedule-tag": "literal"},
    {"curriculum": "climd", "schedule-tag": "oof"},
    {"curriculum": "climd", "schedule-tag": "zscore"},
    {"curriculum": "climd", "schedule-tag": "rank"},
    {"curriculum": "climd", "budget": "steps"},
    {"curriculum": "climd", "finish-epochs": 20},
    {"curriculum": "climd", "schedule-tag": "oof-zscore", "budget": "steps"},
    {"curriculum": "climd", "schedule-tag": "oof-zscore", "budget": "steps", "finish-epochs": 20},
    {"curriculum": "climd", "budget": "steps", "loss": "logit-adjusted"},
    {"curriculum": "climd", "schedule-tag": "oof-zscore", "budget": "steps", "loss": "logit-adjusted",
     "la-prior": "epoch"},
    {"curriculum": "climd", "schedule-tag": "random"},
    {"curriculum": "climd", "schedule-tag": "random", "budget": "steps"},
    *({"curriculum": "climd", "schedule-tag": m, **b} for m in ("intra", "inter") for b in ({}, {"budget": "steps"})),
    *({"curriculum": "climd", "schedule-tag": g} for g in GAMMAS),
    *({"curriculum": p, **b} for p in PACINGS for b in ({}, {"budget": "steps"})),
    {"curriculum": "dsrmc"},
    {"curriculum": "none"},
    *({"curriculum": "none", "loss": x} for x in ("wce", "focal", "logit-adjusted", "balanced-softmax",
                                                   "ldam-drw", "cb")),
    *({"curriculum": "none", "resample": x} for x in ("undersample", "smote", "vae")),
    *({"curriculum": "none", "model": m} for m in ("logreg", "logreg-balanced", "smote-logreg", "hgb-balanced", "brf")),
]

DEFAULT = """\
# climd compare panel: the methods `climd compare` trains on every replicate, each at every learning
# rate of its grid, and how they compete. Per replicate, on the validation split: each row's lr is
# chosen (NAME@tuned), the best of all "curriculum" rows (curriculum-best) and of all "non-curriculum"
# rows (noncurriculum-best); "control" rows are trained and shown, never chosen. The test split then
# compares them with `reference` (tuned) and with noncurriculum-best.
#
# A row: a method name (`climd compare --write-panel` lists them in this file) or
# {method: NAME, lr: [...]} (its own lr grid), or {name: MINE, train: {climd train options}}.
# Variants are NAME (lr 5e-5) and NAME+lr<lr>, e.g. climd+lr0.001.
epochs: {epochs}
lr: [{lrs}]
reference: baseline
curriculum:{curriculum}
non-curriculum:{noncurriculum}
control:{control}
"""

FULL = {
    "epochs": 100, "lr": ["5e-5", "3e-4", "1e-3", "3e-3"],
    "curriculum": ["climd", "climd.literal", "climd.oof", "climd.zscore", "climd.rank", "climd+steps",
                   "climd+finish20", "climd.oof-zscore+steps+finish20", "climd+la+steps",
                   "climd.oof-zscore+la-epochprior+steps", "dsrmc"],
    "non-curriculum": ["baseline", "baseline+wce", "baseline+focal", "baseline+undersample", "baseline+smote",
                       "baseline+vae", "baseline+la", "baseline+bsm", "baseline+ldam-drw", "baseline+cb",
                       "logreg", "logreg-balanced", "smote-logreg", "hgb-balanced", "brf"],
    "control": ["climd.random", "climd.random+steps"],
}
QUICK = {
    "epochs": 100, "lr": ["1e-3"],
    "curriculum": ["climd", "climd+steps"],
    "non-curriculum": ["baseline", "baseline+wce", "logreg-balanced"],
    "control": [],
}


def _catalogue() -> dict[str, dict]:
    from stages.sweep.grid import TRAIN, _train_value
    from stages.pipeline.train import TrainOptions

    out = {}
    for entry in CATALOGUE_OPTIONS:
        opts = TrainOptions(**{TRAIN[k][0]: _train_value(k, TRAIN[k][1], v) for k, v in entry.items()})
        out[opts.variant_name()] = dict(entry)
    return out


@dataclass
class Row:
    name: str
    group: str
    train: dict                       # `climd train` options as a grid spells them (no lr)
    lrs: list[float]                  # [] for a scikit-learn reference
    line: int | None = None

    def variants(self) -> list[tuple[str, float | None]]:
        """(variant name, lr) of every cell of this row; lr None: a reference model."""
        if not self.lrs:
            return [(self.name, None)]
        return [(self.name if lr == DEFAULT_LR else f"{self.name}+lr{lr:g}", lr) for lr in self.lrs]

    def variant_names(self) -> list[str]:
        return [v for v, _ in self.variants()]


@dataclass
class Panel:
    rows: list[Row]
    epochs: int = 100
    reference: str = "baseline"
    source: str = "default"
    text: str = field(default="", repr=False)
    folds: int = FOLDS                # score --folds of the out-of-fold rows (climd.oof*)
    buckets: int = BUCKETS            # schedule --buckets of the pacing rows (baby-step ...)
    probe_epochs: int | None = None   # score --probe-epochs (None: score's default)

    def group(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.group == name]

    def upstream(self) -> list[tuple[str, dict]]:
        """(stage, `climd <stage>` options) of everything the rows train from, in pipeline order."""
        scores, dists, schedules = {}, {}, {}
        for row in self.rows:
            curriculum, tag = row.train.get("curriculum", "climd"), row.train.get("schedule-tag")
            if curriculum == "climd":
                sched, score_tag = SCHEDULES[tag]
                scores[score_tag] = {k: (self.folds if k == "folds" else v) for k, v in SCORES[score_tag].items()}
                dists[None] = {}
                if tag in GAMMAS:
                    dists[tag] = {"gamma": GAMMAS[tag], "tag": tag}
                schedules[tag] = {**sched, **({"score-tag": score_tag} if score_tag else {})}
            elif curriculum in PACINGS:
                scores[None] = SCORES[None]
                schedules[f"pacing:{curriculum}"] = {"pacing": curriculum, "buckets": self.buckets}
        probe = {"probe-epochs": self.probe_epochs} if self.probe_epochs else {}
        out = [("score", {**opts, **probe, **({"tag": t} if t else {})}) for t, opts in scores.items()]
        out += [("fit-dist", opts) for opts in dists.values()]
        for tag, opts in schedules.items():
            named = {} if tag is None or tag.startswith("pacing:") else {"tag": tag}
            out.append(("schedule", {"epochs": self.epochs, **opts, **named}))
        return out


def builtin(name: str) -> Panel:
    spec = {"default": FULL, "quick": QUICK}[name]
    return load_text(render(spec), f"<{name} panel>")


def render(spec: dict) -> str:
    def rows(names):
        return "".join(f"\n  - {n}" for n in names) or " []"

    return DEFAULT.replace("{epochs}", str(spec["epochs"])).replace("{lrs}", ", ".join(spec["lr"])) \
        .replace("{curriculum}", rows(spec["curriculum"])).replace("{noncurriculum}", rows(spec["non-curriculum"])) \
        .replace("{control}", rows(spec["control"])) + _catalogue_comment()


def _catalogue_comment() -> str:
    names = list(_catalogue())
    lines, line = [], "#  "
    for n in names:
        if len(line) + len(n) > 100:
            lines.append(line.rstrip())
            line = "#  "
        line += f" {n}"
    lines.append(line.rstrip())
    return "#\n# Methods a row may name:\n" + "\n".join(lines) + "\n"


def resolve(spec: str) -> Panel:
    """``default`` | ``quick`` | a YAML file."""
    if spec in ("default", "quick"):
        return builtin(spec)
    path = Path(spec)
    text = yamlfile.read_text(path, "panel file",
                              fix="--panel default | quick | a file written by `climd compare --write-panel FILE`")
    return load_text(text, str(path))


def load_text(text: str, source: str) -> Panel:
    raw, lines = yamlfile.parse(text, source, fix="compare with `climd compare --write-panel panel.yaml`")

    def where(*keys) -> str:
        line = yamlfile.line_of(lines, keys)
        return f"{source}" + (f", line {line}" if line else "")

    if not isinstance(raw, dict):
        raise UsageError(f"{source}: a panel is a YAML mapping", fix="see `climd compare --write-panel panel.yaml`")
    top = ("epochs", "lr", "reference", "folds", "buckets", "probe-epochs", *GROUPS)
    for key in raw:
        if key not in top:
            raise UsageError(f"{where(key)}: unknown key {key!r}", fix=_close(key, top))
    ints = {}
    for key, default in (("epochs", 100), ("folds", FOLDS), ("buckets", BUCKETS), ("probe-epochs", 0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "probe-epochs" else 1):
            raise UsageError(f"{where(key)}: {key} must be an integer >= {0 if key == 'probe-epochs' else 1}, got {value!r}")
        ints[key] = value
    epochs = ints["epochs"]
    try:
        lrs = _lrs(raw.get("lr", [DEFAULT_LR]))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where('lr')}: {exc}", fix="lr: a list of numbers > 0") from None
    catalogue, rows = _catalogue(), []
    for group in GROUPS:
        items = raw.get(group) or []
        if not isinstance(items, list):
            raise UsageError(f"{where(group)}: expected a list of rows", fix="e.g. curriculum: [climd, climd+steps]")
        for i, item in enumerate(items):
            rows.append(_row(item, group, lrs, catalogue, where(group, i), lines.get((group, i))))
    seen: dict[str, Row] = {}
    for row in rows:
        for v in row.variant_names():
            if v in seen:
                raise UsageError(f"{source}, line {row.line}: variant {v!r} is already made by line {seen[v].line}",
                                 fix="keep one of the two rows (or give one a name of its own)")
            seen[v] = row
    reference = str(raw.get("reference", "baseline"))
    if reference not in {r.name for r in rows}:
        raise UsageError(f"{where('reference')}: reference {reference!r} is not a row of the panel",
                         fix=_close(reference, [r.name for r in rows]))
    if not any(r.group == "curriculum" for r in rows) or not any(r.group == "non-curriculum" for r in rows):
        raise UsageError(f"{source}: a panel needs at least one curriculum and one non-curriculum row")
    return Panel(rows=rows, epochs=epochs, reference=reference, source=source, text=text, folds=ints["folds"],
                 buckets=ints["buckets"], probe_epochs=ints["probe-epochs"] or None)


def _lrs(value) -> list[float]:
    items = value if isinstance(value, list) else [value]
    out = [float(v) for v in items]
    if not out or any(not v > 0 for v in out):
        raise ValueError(f"learning rates must be > 0, got {value!r}")
    return list(dict.fromkeys(out))


def _close(word, valid) -> str:
    close = difflib.get_close_matches(str(word), list(valid), n=1, cutoff=0.6)
    return (f"did you mean {close[0]!r}? " if close else "") + f"valid: {', '.join(valid)}"


def _row(item, group: str, lrs: list[float], catalogue: dict, where: str, line: int | None) -> Row:
    from stages.core.names import check_name
    from stages.sweep.grid import TRAIN, _train_value
    from stages.pipeline.train import TrainOptions

    if isinstance(item, str):
        item = {"method": item}
    if not isinstance(item, dict):
        raise UsageError(f"{where}: a row is a method name or a mapping", fix="e.g. - climd  or  - {method: climd, lr: [1e-3]}")
    for key in item:
        if key not in ("method", "name", "train", "lr"):
            raise UsageError(f"{where}: unknown row key {key!r}", fix=_close(key, ("method", "name", "train", "lr")))
    if "method" in item:
        name = str(item["method"])
        if name not in catalogue:
            raise UsageError(f"{where}: unknown method {name!r}",
                             fix=_close(name, list(catalogue)) + " (or give {name: ..., train: {...}})")
        train = dict(catalogue[name])
    else:
        if "name" not in item or not isinstance(item.get("train"), dict):
            raise UsageError(f"{where}: a row needs `method: NAME`, or `name:` with `train:` options")
        train = {str(k).replace("_", "-"): v for k, v in item["train"].items()}
        name = str(item["name"])
        for key in train:
            if key not in TRAIN or key in ("lr", "variant", "epochs"):
                valid = [k for k in TRAIN if k not in ("lr", "variant", "epochs")]
                raise UsageError(f"{where}: unknown train option {key!r}",
                                 fix=_close(key, valid) if key not in ("lr", "epochs") else "give lr as the row's lr, epochs at the top")
    try:
        check_name(name, "panel row name")
        opts = TrainOptions(**{TRAIN[k][0]: _train_value(k, TRAIN[k][1], v) for k, v in train.items()})
        opts.check()
        row_lrs = _lrs(item["lr"]) if "lr" in item else lrs
    except (ClimdError, ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {getattr(exc, 'message', None) or exc}", fix=getattr(exc, "fix", None)) from None
    tag = train.get("schedule-tag")
    if opts.curriculum == "climd" and tag not in SCHEDULES:
        raise UsageError(f"{where}: schedule tag {tag!r} is not one compare builds",
                         fix=_close(tag, [t for t in SCHEDULES if t]))
    from stages.pipeline.train import SCHEDULE_FREE

    if opts.curriculum not in (*SCHEDULE_FREE, "climd", *PACINGS):
        raise UsageError(f"{where}: compare does not yet build the schedule of --curriculum {opts.curriculum}",
                         fix=f"use one of none, climd, {', '.join(PACINGS)}")
    from stages.method.reference import MODELS

    return Row(name=name, group=group, train=train, lrs=[] if opts.model in MODELS else row_lrs, line=line)


def write(path: Path | None, name: str = "default") -> str:
    """The text of a built-in panel, written to ``path`` (atomically) when given."""
    text = builtin(name).text
    if path is not None:
        from stages.store.atomic import atomic_write_text

        atomic_write_text(Path(path), text)
    return text
