"""predict: class probabilities for new samples."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, RunOpt, ThreadsOpt, command, info

IN, MODEL, OUT, PERF = "Inputs", "Model", "Output", "Performance"

EPILOG = """
Examples:

  climd predict --run rosmap --variant climd --seed 0 --data new_patients/      # CSV on stdout

  climd predict --run rosmap --variant climd --ensemble --data new.yaml --out predictions.csv

  climd predict --run brca-s0 --variant baseline --data new_brca/ --format tcga --json

The new samples need no labels: a MOGONET folder with {k}_te.csv (and/or {k}_tr.csv) and no label
files, TCGA tables with or without target.csv, a Derm7pt folder, or a manifest without label_column.
They are encoded with the run's fitted preprocessing (training-split mean/std, the same image/text
encoders); a missing or extra modality, or missing/extra feature names, is refused (exit 3).

Output: id, pred, p_<class>... per sample (the columns of evaluate's predictions.csv, without true).
"""


@command
def predict(
    run: RunOpt = DEFAULT_RUN,
    variant: Annotated[str, typer.Option(help="The trained variant (folder train/<variant>/).", rich_help_panel=MODEL)] = ...,
    data: Annotated[Path, typer.Option(help="The new samples: a data folder or a manifest (labels not needed).", rich_help_panel=IN)] = ...,
    format: Annotated[Optional[str], typer.Option(help="mogonet|tcga|derm7pt|manifest (detected when omitted).", rich_help_panel=IN)] = None,
    seed: Annotated[Optional[int], typer.Option(help="The seed whose model predicts (default 0).", rich_help_panel=MODEL, show_default=False)] = None,
    ensemble: Annotated[bool, typer.Option(help="Average the probabilities of every complete seed of the variant.", rich_help_panel=MODEL)] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write to this file (atomically) instead of stdout; stdout then prints its path.", rich_help_panel=OUT)] = None,
    json: Annotated[bool, typer.Option("--json", help="JSON instead of CSV: run, variant, seeds, class_names, notes, predictions [{id, pred, probabilities}].", rich_help_panel=OUT)] = False,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda for image/text encoders (models predict on the CPU).", rich_help_panel=PERF)] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images/texts per encoder batch.", rich_help_panel=PERF)] = 32,
    threads: ThreadsOpt = None,
    cache_dir: CacheOpt = None,
):
    """Predict class probabilities for new, unlabelled samples with a trained model (or a seed ensemble)."""
    from stages.pipeline import predict as stage
    from stages.store.atomic import atomic_write_text
    from stages.errors import UsageError

    from .common import store

    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a folder", fix="give a file name, e.g. --out predictions.csv")
    result = stage.run(store(run, cache_dir), variant, data, format, seed, ensemble, device, batch_size)
    for note in result.notes:
        info(f"[yellow]note:[/] {note}")
    text = result.to_json() + "\n" if json else result.to_csv()
    where = str(out) if out else "stdout"
    info(f"[green]predict[/]: {run} {variant} seed(s) {result.seeds}: {len(result.ids)} sample(s) -> {where}")
    if out:
        atomic_write_text(out, text)
        typer.echo(str(out))
    else:
        typer.echo(text, nl=False)
