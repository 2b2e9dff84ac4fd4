"""A plain folder of one's own data: ``labels.csv`` (sample id, label[, split]) beside one CSV per
modality keyed by sample id. climd reads such a folder through a manifest (:mod:`.manifest`), which
:func:`suggest` writes from what the folder holds, for the user to check (``climd manifest DIR``):
which column is the id, which the label, which files are model inputs. Nothing is guessed silently.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.errors import DataError

LABEL_FILES = ("labels.csv", "label.csv", "labels.tsv")
LABEL_COLUMNS = ("label", "labels", "class", "diagnosis", "target", "y", "outcome", "subtype")
SPLIT_COLUMNS = ("split", "set", "partition")
# files whose name says they are not a model input (answers, ids, splits): listed, left out
NOT_INPUTS = ("label", "truth", "target", "split", "fold", "ids", "answer")


def label_file(path: Path) -> Path | None:
    path = Path(path)
    if not path.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in path.iterdir() if p.is_file()}
    return next((by_lower[n] for n in LABEL_FILES if n in by_lower), None)


def looks_like(path: Path) -> bool:
    """A folder with labels.csv and at least one other CSV."""
    labels = label_file(path)
    return labels is not None and any(p != labels for p in Path(path).glob("*.csv"))


def _header(path: Path) -> list[str]:
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0, sep=None if path.suffix == ".tsv" else ",",
                                            engine="python").columns]
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read its header ({type(exc).__name__}: {exc})",
                        fix="give a comma-separated CSV with a header row") from None


def suggest(path: Path) -> tuple[dict, list[str]]:
    """(manifest spec, comments) for a plain folder."""
    path = Path(path)
    labels = label_file(path)
    if labels is None:
        raise DataError(f"{path}: no labels.csv", fix="put one row per sample in labels.csv: sample_id,label[,split]")
    columns = _header(labels)
    if len(columns) < 2:
        raise DataError(f"{labels}: needs a sample-id column and a label column, has {columns}",
                        fix="write labels.csv as sample_id,label[,split]")
    lower = {c.lower(): c for c in columns}
    label = next((lower[c] for c in LABEL_COLUMNS if c in lower and lower[c] != columns[0]), columns[1])
    split = next((lower[c] for c in SPLIT_COLUMNS if c in lower), None)
    spec: dict = {"name": path.name, "table": labels.name, "id_column": columns[0], "label_column": label}
    if split:
        spec["split_column"] = split
    comments, modalities = [], {}
    for csv in sorted(p for p in path.glob("*.csv") if p != labels):
        if any(word in csv.stem.lower() for word in NOT_INPUTS):
            comments.append(f"{csv.name}: left out (its name says it is not a model input); "
                            f"add it under modalities if it is one")
            continue
        first = _header(csv)[:1]
        entry = {"type": "tabular", "file": csv.name}
        if first and not first[0].startswith("Unnamed"):
            entry["id_column"] = first[0]
        modalities[csv.stem] = entry
    if not modalities:
        raise DataError(f"{path}: labels.csv but no modality table beside it",
                        fix="put one CSV per modality (first column: the sample id) next to labels.csv")
    spec["modalities"] = modalities
    return spec, comments


def _q(value: str) -> str:
    """A YAML scalar: plain when safe, else double-quoted (JSON strings are valid YAML)."""
    import json
    import re

    return value if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*", value) else json.dumps(value)


def render(spec: dict, comments: list[str]) -> str:
    """The manifest as YAML, with what each line means."""
    spec = {k: (_q(v) if isinstance(v, str) else v) for k, v in spec.items()}
    out = [f"# climd manifest for {spec['name']}/ (written by `climd manifest`; check it, then",
           f"#   climd encode --run RUN --data {spec['name']}/manifest.yaml)",
           f"name: {spec['name']}",
           f"table: {spec['table']}                 # one row per sample",
           f"id_column: {spec['id_column']}         # the sample id in {spec['table']} and in each modality file",
           f"label_column: {spec['label_column']}   # the class of each sample"]
    if "split_column" in spec:
        out.append(f"split_column: {spec['split_column']}   # train | valid | test per row")
    else:
        out.append("# split_column: split     # a column of train|valid|test; without it: a stratified split "
                   "(--test-size, --split-seed)")
    out.append("# classes: [a, b]          # optional: fixes the class order; other labels are refused")
    out.append("modalities:")
    for name, entry in spec["modalities"].items():
        fields = ", ".join(f"{k}: {_q(v)}" for k, v in entry.items())
        out.append(f"  {_q(name)}: {{{fields}}}")
    out += [f"# {c}" for c in comments]
    return "\n".join(out) + "\n"
