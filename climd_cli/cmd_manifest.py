"""manifest: a ready manifest for a folder of one's own data (labels.csv + one CSV per modality)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import command

EPILOG = """
Examples:

  climd manifest mydata/ > mydata/manifest.yaml     # check it (id, label, inputs), then:

  climd encode --run mine --data mydata/manifest.yaml

The folder holds labels.csv (sample id, label, optionally a split column of train|valid|test) and one
CSV per modality whose first column is the sample id. Files whose name says they are not an input
(truth.csv, splits.csv, ids.csv ...) are listed in a comment and left out. The manifest format:
docs/data.md.
"""


@command
def manifest(
    data: Annotated[Path, typer.Argument(help="The folder: labels.csv and one CSV per modality.", show_default=False)],
):
    """Print a manifest (YAML) for a folder of your own data, to check and pass to `climd encode --data`."""
    from stages.data.adapters import folder

    spec, comments = folder.suggest(data)
    typer.echo(folder.render(spec, comments), nl=False)
