"""The model inputs Derm7pt offers: the dermoscopic image, the 7-point criteria, and the case metadata
(sex, location, elevation, diagnostic difficulty) either as one-hot columns or as one sentence of text.

``--derm-modalities`` picks them (default: today's ``derm`` image + ``tabular`` per --derm-tabular):

=============  ==============  =====================================================================
token          modality name   content
=============  ==============  =====================================================================
image          derm            the dermoscopic image (``derm`` column)
tabular        tabular         the 7-point criteria, one-hot
text           text            the metadata as one sentence, e.g. "female, back, palpable, low
                               diagnostic difficulty" (for a text encoder such as MiniLM)
meta-onehot    meta            the same metadata fields as one-hot columns (to compare with text)
=============  ==============  =====================================================================

``management`` (every melanoma is excised) and ``diagnosis`` (the label) never enter any input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.data.dataset import Modality
from stages.errors import DataError, UsageError

METADATA = ["level_of_diagnostic_difficulty", "elevation", "location", "sex"]
CHECKLIST = ["pigment_network", "streaks", "pigmentation", "regression_structures",
             "dots_and_globules", "blue_whitish_veil", "vascular_structures"]
LEAKS = ("management", "diagnosis")
TABULAR = ("meta", "meta+7pt", "7pt")
# token -> (modality name, kind)
MODALITY_CHOICES = {"image": ("derm", "image"), "tabular": ("tabular", "tabular"),
                    "text": ("text", "text"), "meta-onehot": ("meta", "tabular")}
SENTENCE_ORDER = ["sex", "location", "elevation", "level_of_diagnostic_difficulty"]


def parse_modalities(spec: str | None, tabular: str) -> list[str] | None:
    """The tokens of ``--derm-modalities`` (None: the default image + --derm-tabular record)."""
    if spec is None:
        return None
    tokens = [t.strip() for t in str(spec).split(",") if t.strip()]
    unknown = [t for t in tokens if t not in MODALITY_CHOICES]
    if unknown or not tokens:
        raise UsageError(f"unknown --derm-modalities {unknown or spec!r}",
                         fix=f"a comma-separated list of {', '.join(MODALITY_CHOICES)} "
                             "(e.g. image,text,tabular or image,meta-onehot,tabular)")
    if len(set(tokens)) != len(tokens):
        raise UsageError(f"--derm-modalities lists a modality twice: {spec!r}")
    if tabular != "meta":
        raise UsageError("--derm-tabular applies only without --derm-modalities",
                         fix="with --derm-modalities, 'tabular' is the 7-point criteria and 'meta-onehot' "
                             "the metadata; drop --derm-tabular")
    return tokens


def build_modalities(frame: pd.DataFrame, tokens: list[str] | None, tabular: str, images: list[Path],
                     image_root: Path, source: Path) -> tuple[dict, list[str]]:
    """The modalities of the rows in ``frame`` and notes on columns that were missing."""
    notes: list[str] = []
    mods = {"derm": Modality("derm", "image", images, image_root)}
    if tokens is None:
        columns = {"meta": METADATA, "meta+7pt": METADATA + CHECKLIST, "7pt": CHECKLIST}[tabular]
        if tabular == "meta" and not any(c in frame.columns for c in METADATA):
            # the default, on a table without metadata: use what is there instead of refusing
            columns = [c for c in CHECKLIST if c in frame.columns]
            notes.append(f"--derm-tabular meta: {source.name} has none of the metadata columns {METADATA}; "
                         + (f"the tabular input is the 7-point criteria {columns} instead (as --derm-tabular 7pt)"
                            if columns else "no 7-point criteria either: the image is the only input"))
            if not columns:
                notes.append("inputs used: derm (image)")
                return mods, notes
        table, names = one_hot(frame, _present(frame, columns, source, f"--derm-tabular {tabular}", notes), source)
        mods["tabular"] = Modality("tabular", "tabular", table, source, names)
        notes.append(f"inputs used: derm (image), tabular ({len(names)} one-hot columns from "
                     f"{', '.join(c for c in columns if c in frame.columns)})")
        return mods, notes
    out = {}
    for token in tokens:
        name, _ = MODALITY_CHOICES[token]
        if token == "image":
            out[name] = mods["derm"]
        elif token == "tabular":
            table, names = one_hot(frame, _present(frame, CHECKLIST, source, "tabular (7-point)", notes), source)
            out[name] = Modality(name, "tabular", table, source, names)
        elif token == "meta-onehot":
            table, names = one_hot(frame, _present(frame, METADATA, source, "meta-onehot", notes), source)
            out[name] = Modality(name, "tabular", table, source, names)
        else:
            cols = _present(frame, METADATA, source, "text", notes)
            out[name] = Modality(name, "text", sentences(frame, cols), source)
    return out, notes


def _present(frame: pd.DataFrame, columns: list[str], source: Path, what: str, notes: list[str]) -> list[str]:
    have = [c for c in columns if c in frame.columns]
    if not have:
        raise DataError(f"{source}: {what} needs at least one of the columns {columns}; the table has "
                        f"{[c for c in frame.columns][:12]}",
                        fix="add the columns, or choose other Derm7pt modalities (--derm-modalities / "
                            "--derm-tabular)")
    missing = [c for c in columns if c not in have]
    if missing:
        notes.append(f"{what}: column(s) {missing} are not in {source.name}; using {have}")
    return have


def sentences(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One sentence per case from the metadata fields present, e.g. "female, back, palpable, low
    diagnostic difficulty". Empty cells are left out; only METADATA fields can appear."""
    cols = [c for c in SENTENCE_ORDER if c in columns]
    out = []
    for _, row in frame[cols].iterrows():
        parts = []
        for c in cols:
            value = row[c]
            if pd.isna(value) or not str(value).strip():
                continue
            value = str(value).strip()
            parts.append(f"{value} diagnostic difficulty" if c == "level_of_diagnostic_difficulty" else value)
        out.append(", ".join(parts) if parts else "no metadata")
    return np.array(out, dtype=object)


def one_hot(frame: pd.DataFrame, columns: list[str], source: Path) -> tuple[np.ndarray, list[str]]:
    """One-hot encode categorical columns (categories sorted, so the layout is stable)."""
    leaked = [c for c in columns if c in LEAKS]
    if leaked:
        raise UsageError(f"{leaked} may not be model inputs: they determine the label")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}")
    blocks, names = [], []
    for col in columns:
        values = frame[col].fillna("missing").astype(str).str.strip()
        for cat in sorted(values.unique()):
            blocks.append((values == cat).to_numpy(dtype=np.float64))
            names.append(f"{col}={cat}")
    return np.stack(blocks, axis=1), names
