"""The cells of a manifest's ``{type: volume, column: COL, root: DIR}`` modality: each names a NIfTI
file (``.nii``/``.nii.gz``) or a DICOM series folder under ``root``. Paths are resolved here (missing
ones counted, the first few named with their table row); the files are read by ``encode``
(:mod:`stages.encoders.volume_io`). Every file in a DICOM folder enters the data fingerprint."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.errors import DataError


def resolve(root: Path, cells: list, table_path: Path, column: str) -> tuple[list[Path], list[Path]]:
    """(one path per row, every file to fingerprint)."""
    root = Path(root)
    out, files, missing = [], [], []
    for row, cell in enumerate(cells):
        text = "" if pd.isna(cell) else str(cell).strip().replace("\\", "/")
        path = root / text if text else None
        if path is None or not path.exists():
            missing.append(f"{cell!r} (line {row + 2})")
            out.append(None)
            continue
        out.append(path)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    if missing:
        raise DataError(f"{table_path}: {len(missing)} volume(s) of the {column!r} column not found under {root}: "
                        + ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""),
                        fix="each cell names a .nii/.nii.gz file or a DICOM series folder, relative to the "
                            "modality's root")
    return out, files
