"""The cache layout, in one place: every artifact's folder name and how a name is read back.

A run folder holds one artifact (a folder with ``meta.json``) per stage::

    <cache>/<run>/encode/                      score[.TAG]/   fit-dist[.TAG]/   schedule[.TAG]/
    <cache>/<run>/train/<variant>/seed<k>/     (one per trained replica)
    <cache>/<run>/eval-<split>/<variant>/seed<k>/
    <cache>/<run>/report/  sweeps/<name>/      (not artifacts: written by report and sweep)

Every other module builds these names with the functions below and parses them with
:func:`parse`; nothing else spells ``seed<k>`` or ``eval-``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRAIN = "train"
EVALUATE = "evaluate"
SCHEDULE = "schedule"
REPORT = "report"                     # written by `climd report` (not an artifact: no meta.json)
EVAL_PREFIX = "eval-"
UPSTREAM = ("encode", "score", "fit-dist", "schedule")     # the stages of a run before training
_SEED = re.compile(r"seed(\d+)\Z")


def tagged(stage: str, tag: str | None) -> str:
    """``score``, ``score.TAG``: a stage's artifact name, with an optional (already checked) tag."""
    return stage + (f".{tag}" if tag else "")


def seed_dir(seed: int) -> str:
    return f"seed{seed}"


def parse_seed(name: str) -> int | None:
    """``seed7`` -> 7; anything else -> None."""
    m = _SEED.match(name)
    return int(m.group(1)) if m else None


def train_name(variant: str, seed: int) -> str:
    return f"{TRAIN}/{variant}/{seed_dir(seed)}"


def eval_dir(split: str) -> str:
    return f"{EVAL_PREFIX}{split}"


def eval_name(split: str, variant: str, seed: int) -> str:
    return f"{eval_dir(split)}/{variant}/{seed_dir(seed)}"


def replicate(run: str, seed: int, variant: str | None = None) -> str:
    """How messages name one replicate: ``run/seed3`` or ``run/variant/seed3``."""
    return "/".join([run] + ([variant] if variant else []) + [seed_dir(seed)])


def epoch_file(t: int) -> str:
    """A schedule artifact's subset of epoch ``t`` (1-based)."""
    return f"epoch_{t:04d}.txt"


def read_epoch_ids(path: Path | str) -> list[str]:
    """The ids of one epoch file: one per line (ids may contain spaces, so never split on whitespace);
    an empty file is an empty epoch."""
    text = Path(path).read_text(encoding="utf-8")
    if not text:
        return []
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def write_epoch_ids(path: Path | str, ids) -> None:
    Path(path).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


@dataclass(frozen=True)
class Name:
    """An artifact name read back: its stage, tag, and for replicas the split, variant and seed."""

    stage: str
    tag: str | None = None
    split: str | None = None
    variant: str | None = None
    seed: int | None = None


def parse(name: str) -> Name:
    """``train/climd/seed3`` -> Name('train', variant='climd', seed=3); ``eval-test/...`` ->
    stage 'evaluate', split 'test'; ``schedule.random`` -> Name('schedule', tag='random')."""
    parts = name.split("/")
    first = parts[0]
    if first == TRAIN or first.startswith(EVAL_PREFIX):
        variant = parts[1] if len(parts) > 1 else None
        seed = parse_seed(parts[2]) if len(parts) > 2 else None
        if first == TRAIN:
            return Name(TRAIN, variant=variant, seed=seed)
        return Name(EVALUATE, split=first[len(EVAL_PREFIX):], variant=variant, seed=seed)
    stage, _, tag = first.partition(".")
    return Name(stage, tag=tag or None)


def stage_of(name: str) -> str:
    return parse(name).stage


def replica_dirs(base: Path):
    """(variant, seed, folder) of every ``<base>/<variant>/seed<k>/`` folder, complete or not."""
    if not base.is_dir():
        return
    for vdir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for sdir in sorted(p for p in vdir.iterdir() if p.is_dir()):
            seed = parse_seed(sdir.name)
            if seed is not None:
                yield vdir.name, seed, sdir
