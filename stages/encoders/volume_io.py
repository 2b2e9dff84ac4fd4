"""Reading CT/MRI volumes: NIfTI files with nibabel, DICOM series folders with pydicom.

Every volume comes back as a float32 array in the canonical RAS+ frame (nibabel's
``as_closest_canonical``: array axes 0, 1, 2 run towards Right, Anterior, Superior, the voxel axes
flipped/permuted only, never interpolated) with its voxel spacing in mm. DICOM slices are first
assembled into one NIfTI image in patient (LPS) coordinates converted to RAS, so both formats reach
the same canonical frame through the same nibabel code.

Refused, each with a DataError (exit 3) naming the file or folder and the fix: a file that is
neither NIfTI nor a DICOM series folder; a 4-D (or 2-D) NIfTI where a 3-D volume is expected; a
DICOM folder holding more than one series, slices of differing orientation (ImageOrientationPatient)
or size, two slices at one position, or uneven slice spacing (missing slices); NaN or infinite
voxels; a volume whose decoded array would exceed the memory budget (checked from the header, before
the voxels are read).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SPACING_TOLERANCE = 0.01          # relative deviation of one slice gap from the median gap
ORIENTATION_TOLERANCE = 1e-3      # per direction cosine
MIB = 2 ** 20


@dataclass
class Volume:
    data: np.ndarray                  # float32 (R, A, S) voxels, in the modality's units (CT: HU)
    spacing: tuple                    # mm along the three array axes
    modality: str | None              # DICOM Modality tag ("CT", "MR", ...); None for NIfTI
    source: Path
    original_shape: tuple
    original_axes: str                # the file's axis codes before reorientation, e.g. "LAS"


def is_nifti(path: Path) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES)


def series_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder (hidden files and DICOMDIR index files left out)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")


def resampled_shape(shape, spacing, target) -> tuple:
    """The array shape after resampling ``shape`` voxels of ``spacing`` mm to ``target`` mm (None: as is)."""
    if target is None:
        return tuple(int(s) for s in shape)
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def check_budget(path: Path, shape, spacing, target, budget_mb: float) -> None:
    """Refuse a volume whose arrays would exceed ``budget_mb``, from its header: the decoded float32
    array twice (reorienting may copy it) plus the resampled one."""
    shape = tuple(int(s) for s in shape)
    after = resampled_shape(shape, spacing, target)
    need = (2 * float(np.prod(shape)) + (float(np.prod(after)) if after != shape else 0.0)) * 4 / MIB
    if need > budget_mb:
        raise DataError(f"volume {path}: its decoded array {shape} (held twice while reoriented) and resampled array {after} need "
                        f"{need:.0f} MiB (float32), over the memory budget of {budget_mb:g} MiB per volume",
                        fix="raise --volume-memory-mb, or crop/downsample the volume (a coarser "
                            "--volume-spacing lowers the resampled size)")


def read(path: Path, budget_mb: float, target=None) -> Volume:
    """The volume at ``path`` (a NIfTI file or a DICOM series folder) in RAS, float32."""
    path = Path(path)
    if path.is_dir():
        return _read_dicom(path, budget_mb, target)
    if not path.is_file():
        raise DataError(f"volume {path} does not exist", fix="correct the path in the manifest table")
    if is_nifti(path):
        return _read_nifti(path, budget_mb, target)
    raise DataError(f"volume {path} is neither a NIfTI file (.nii, .nii.gz) nor a DICOM series folder",
                    fix="name a .nii/.nii.gz file or the folder holding one DICOM series (a 2-D picture "
                        "goes in a modality of type image)")


def _read_nifti(path: Path, budget_mb: float, target=None) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises several types for a damaged file: all mean "unreadable"
        raise DataError(f"cannot read volume {path} ({exc.__class__.__name__}: {_first(exc)})",
                        fix="replace the damaged file (it must be NIfTI-1 or NIfTI-2)") from None
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
        shape = shape[:3]
    if len(shape) != 3:
        extra = f"{shape[3]} frames (e.g. time points)" if len(shape) == 4 else f"{len(shape)} axes"
        raise DataError(f"volume {path} is {len(shape)}-D {shape}: {extra}, where a 3-D volume is expected",
                        fix="save the frame you want as a 3-D file (e.g. nibabel.funcs.four_to_three) and "
                            "name that file")
    check_budget(path, shape, img.header.get_zooms()[:3], target, budget_mb)
    return _canonical(img, path, None)


def _canonical(img, path: Path, modality: str | None) -> Volume:
    import nibabel as nib

    axes = "".join(nib.aff2axcodes(img.affine))
    shape = tuple(int(s) for s in img.shape[:3])
    ras = nib.as_closest_canonical(img)
    try:
        data = np.ascontiguousarray(np.asarray(ras.dataobj, dtype=np.float32))   # flips: a copy
    except Exception as exc:
        raise DataError(f"cannot read the voxels of volume {path} ({exc.__class__.__name__}: {_first(exc)})",
                        fix="replace the damaged or truncated file") from None
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(v[0]) for v in np.nonzero(bad))
        raise DataError(f"volume {path} has {int(bad.sum())} NaN or infinite voxel(s), first at RAS voxel {first}",
                        fix="replace them (e.g. with the background value) before encoding")
    spacing = tuple(float(z) for z in ras.header.get_zooms()[:3])
    if not all(s > 0 and np.isfinite(s) for s in spacing):
        raise DataError(f"volume {path} has voxel spacing {spacing}", fix="write the file with its real voxel size")
    return Volume(data, spacing, modality, path, shape, axes)


def _read_dicom(folder: Path, budget_mb: float, target=None) -> Volume:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = series_files(folder)
    if not files:
        raise DataError(f"volume folder {folder} holds no files", fix="put the DICOM files of one series in it")
    headers = []
    for f in files:
        try:
            headers.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{f} (in volume folder {folder}) is not a DICOM file ({exc.__class__.__name__}: "
                            f"{_first(exc)})", fix="keep only the DICOM files of one series in the folder") from None
    _one_series(folder, headers)
    headers, affine, shape = _geometry(folder, headers)
    check_budget(folder, shape, np.linalg.norm(affine[:3, :3], axis=0), target, budget_mb)
    data = np.empty(shape, dtype=np.float32)
    for k, (f, _) in enumerate(headers):          # one slice decoded at a time into the volume
        try:
            ds = pydicom.dcmread(f)
            from pydicom.pixels import apply_modality_lut

            pixels = apply_modality_lut(ds.pixel_array, ds)
        except Exception as exc:  # missing pixel data, an unsupported transfer syntax, a truncated file
            raise DataError(f"cannot decode the pixels of {f} (volume folder {folder}; "
                            f"{exc.__class__.__name__}: {_first(exc)})",
                            fix="replace the file, or decompress the series (e.g. gdcmconv --raw)") from None
        if pixels.ndim != 2:
            raise DataError(f"{f} holds a {pixels.ndim}-D pixel array {pixels.shape}: one slice per file is expected",
                            fix="store the series one 2-D slice per file (a multi-frame file is not read)")
        data[:, :, k] = pixels.T                   # (rows, columns) -> (column index i, row index j)
    import nibabel as nib

    modality = str(headers[0][1].get("Modality", "") or "") or None
    return _canonical(nib.Nifti1Image(data, affine), folder, modality)


def _one_series(folder: Path, headers: list) -> None:
    groups: dict[str, list[Path]] = {}
    for f, ds in headers:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "?")), []).append(f)
    if len(groups) > 1:
        parts = [f"{uid} ({len(fs)} file{'s' if len(fs) > 1 else ''}, e.g. {fs[0].name})"
                 for uid, fs in list(groups.items())[:3]]
        raise DataError(f"volume folder {folder} holds {len(groups)} DICOM series: " + "; ".join(parts),
                        fix="put each series (SeriesInstanceUID) in its own folder and name one folder per row")


def _geometry(folder: Path, headers: list):
    """(headers sorted along the slice normal, the RAS affine, the array shape (columns, rows, slices))."""
    def tag(f, ds, name):
        value = ds.get(name)
        if value is None:
            raise DataError(f"{f} (volume folder {folder}) has no {name}",
                            fix="a DICOM volume needs the geometry tags ImageOrientationPatient, "
                                "ImagePositionPatient and PixelSpacing")
        return np.asarray([float(v) for v in value]) if name != "Rows" and name != "Columns" else int(value)

    f0, ds0 = headers[0]
    iop = tag(f0, ds0, "ImageOrientationPatient")
    size = (tag(f0, ds0, "Rows"), tag(f0, ds0, "Columns"))
    ps = tag(f0, ds0, "PixelSpacing")
    for f, ds in headers[1:]:
        other = tag(f, ds, "ImageOrientationPatient")
        if np.abs(other - iop).max() > ORIENTATION_TOLERANCE:
            raise DataError(f"volume folder {folder}: slices of different orientation: {f.name} has "
                            f"ImageOrientationPatient {np.round(other, 4).tolist()}, {f0.name} has "
                            f"{np.round(iop, 4).tolist()}",
                            fix="a volume is one stack of parallel slices: keep the slices of one orientation "
                                "(one acquisition) in the folder")
        if (tag(f, ds, "Rows"), tag(f, ds, "Columns")) != size:
            raise DataError(f"volume folder {folder}: {f.name} is {tag(f, ds, 'Rows')}x{tag(f, ds, 'Columns')} "
                            f"pixels, {f0.name} {size[0]}x{size[1]}", fix="keep the slices of one series only")
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([tag(f, ds, "ImagePositionPatient") for f, ds in headers])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    headers, pos, along = [headers[k] for k in order], pos[order], along[order]
    if len(headers) > 1:
        gaps = np.diff(along)
        if (gaps <= 1e-4).any():
            k = int(np.flatnonzero(gaps <= 1e-4)[0])
            raise DataError(f"volume folder {folder}: {headers[k][0].name} and {headers[k + 1][0].name} lie at "
                            f"the same position ({along[k]:.3f} mm along the slice normal)",
                            fix="remove the duplicate slice (or split the two series into two folders)")
        step = float(np.median(gaps))
        uneven = np.abs(gaps - step) > SPACING_TOLERANCE * step
        if uneven.any():
            k = int(np.flatnonzero(uneven)[0])
            raise DataError(f"volume folder {folder}: uneven slice spacing: {headers[k][0].name} -> "
                            f"{headers[k + 1][0].name} is {gaps[k]:.3f} mm, the median gap {step:.3f} mm "
                            f"({int(uneven.sum())} uneven gap(s); missing slices?)",
                            fix="add the missing slices, or export the series again as one evenly spaced stack")
    else:
        step = float(headers[0][1].get("SliceThickness") or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]          # array axis 0: along a row (column index), PixelSpacing[1] apart
    lps[:3, 1] = col * ps[0]          # array axis 1: down a column (row index), PixelSpacing[0] apart
    lps[:3, 2] = normal * step
    lps[:3, 3] = pos[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps           # DICOM patient LPS -> RAS
    return headers, affine, (size[1], size[0], len(headers))


def _first(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
