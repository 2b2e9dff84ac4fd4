"""A SYNTHETIC, MLLC-shaped multimodal set: a CT-like volume, a one-sentence history and a lab table
per patient, three imbalanced classes (normal / metastasis / hcc, as the paper's private liver-lesion
set MLLC). Nothing here is patient data; every value is drawn from the distributions below.

    python scripts/make_synthetic_volumes.py [--n 120] [--out bench-data/synthetic-volumes] [--dicom]

Writes ``OUT/manifest.yaml`` (modalities ``ct`` {type: volume}, ``history`` {type: text},
``labs`` {type: tabular}), ``samples.csv``, ``labs.csv``, ``volumes/`` (one ``.nii.gz`` per patient,
or with ``--dicom`` one DICOM series folder per patient) and ``SYNTHETIC.md`` stating the signal of
each modality. Deterministic for a given ``--seed``.

The signal each modality was given (``SIGNAL`` below; measured probe AUCs: docs/data.md "Volumes"):

* **ct**: an abdomen (air -1000 HU, fat -100, soft tissue 40, a spine at 700) with a liver
  (arterial phase, 70 HU). normal: no lesion; metastasis: 2-4 hypodense lesions (liver - 35 HU,
  radius 6-12 mm); hcc: one hyperenhancing lesion (liver + 45 HU, radius 10-18 mm). Contrasts vary
  by +-30 %. Noise: Gaussian 18 HU smoothed over ~1 voxel (correlated, as CT noise), partial-volume
  edges. Spacing anisotropic: in-plane 2.6-3.2 mm, slices 5 or 6 mm, 48 x 48 x 26-32 voxels; half
  of the files are stored LAS, half RAS (the same anatomy after reorientation).
* **history**: with probability 0.55 the sentence names the class's risk factor (colorectal cancer
  -> metastasis; hepatitis B / cirrhosis -> hcc; no liver history -> normal), otherwise a neutral
  presenting complaint; age and sex are added at random.
* **labs**: log AFP +1.2 SD in hcc, log CEA +1.0 SD in metastasis, platelets -0.6 SD in hcc,
  ALT/AST +0.3 SD in both lesion classes; albumin, bilirubin and two noise columns carry nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench-data" / "synthetic-volumes"
CLASSES = ("normal", "metastasis", "hcc")
PROPORTIONS = (0.55, 0.30, 0.15)
SIGNAL = {
    "ct": "lesion: none / 2-4 hypodense (liver-35 HU, r 6-12 mm) / 1 hyperenhancing (liver+45 HU, r 10-18 mm); "
          "contrast +-30 %; noise 18 HU (smoothed); spacing 2.6-3.2 x 2.6-3.2 x 5-6 mm",
    "history": "class risk factor named with probability 0.55, else a neutral complaint",
    "labs": "log AFP +1.2 SD (hcc), log CEA +1.0 SD (metastasis), platelets -0.6 SD (hcc), ALT/AST +0.3 SD "
            "(lesions); albumin, bilirubin, noise1, noise2: no signal",
}
HISTORY = {
    "normal": ["no history of liver disease; routine follow-up imaging",
               "no known liver disease, referred after a normal screening ultrasound"],
    "metastasis": ["history of colorectal cancer treated with resection two years ago",
                   "previously treated colon adenocarcinoma, now on surveillance"],
    "hcc": ["chronic hepatitis B infection with known liver cirrhosis",
            "long-standing alcoholic cirrhosis with hepatitis C"],
}
NEUTRAL = ["presents with vague upper abdominal discomfort", "referred for abdominal CT after weight loss",
           "complains of fatigue and reduced appetite", "abdominal pain for three weeks"]


def class_counts(n: int) -> list[int]:
    counts = [int(round(p * n)) for p in PROPORTIONS]
    counts[0] += n - sum(counts)
    return counts


def volume(rng: np.random.Generator, label: str) -> tuple[np.ndarray, tuple]:
    """(HU volume int16 in RAS index order (x: right, y: anterior, z: superior), spacing in mm)."""
    from scipy.ndimage import gaussian_filter

    nxy, nz = 48, int(rng.integers(26, 33))
    sxy, sz = float(rng.uniform(2.6, 3.2)), float(rng.choice([5.0, 6.0]))
    x = (np.arange(nxy) - (nxy - 1) / 2) * sxy
    z = (np.arange(nz) - (nz - 1) / 2) * sz
    X, Y, Z = np.meshgrid(x, x, z, indexing="ij")

    def soft(dist):                     # partial-volume edge: ~one voxel wide
        return 1 / (1 + np.exp(np.clip(dist / (0.5 * sxy), -40, 40)))

    a, b = float(rng.uniform(58, 66)), float(rng.uniform(46, 54))
    hu = np.full(X.shape, -1000.0)
    body = soft((np.sqrt((X / a) ** 2 + (Y / b) ** 2) - 1) * min(a, b))
    hu = hu * (1 - body) + (-100.0) * body                                        # fat
    inner = soft((np.sqrt((X / (a - 8)) ** 2 + (Y / (b - 8)) ** 2) - 1) * (b - 8))
    hu = hu * (1 - inner) + 40.0 * inner                                          # soft tissue
    spine = soft(np.sqrt(X ** 2 + (Y + b - 18) ** 2) - 9)
    hu = hu * (1 - spine) + 700.0 * spine
    c = np.array([-a * 0.35 + rng.normal(0, 3), b * 0.1 + rng.normal(0, 3), rng.normal(0, 5)])
    r = np.array([rng.uniform(30, 36), rng.uniform(26, 32), rng.uniform(40, 55)])
    liver_d = (np.sqrt(((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2) - 1) * r.min()
    liver_hu = 70.0 + rng.normal(0, 5)
    liver = soft(liver_d)
    hu = hu * (1 - liver) + liver_hu * liver
    lesions = {"normal": 0, "metastasis": int(rng.integers(2, 5)), "hcc": 1}[label]
    for _ in range(lesions):
        radius = float(rng.uniform(6, 12) if label == "metastasis" else rng.uniform(10, 18))
        contrast = (-35.0 if label == "metastasis" else 45.0) * float(rng.uniform(0.7, 1.3))
        u = rng.normal(size=3)
        u = u / np.linalg.norm(u) * rng.uniform(0, 0.55)                       # inside the liver
        centre = c + u * r
        les = soft(np.sqrt((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2) - radius) * liver
        hu = hu + contrast * les
    noise = gaussian_filter(rng.normal(0, 1, X.shape), sigma=(0.8, 0.8, 0.4))
    hu = hu + noise * (18.0 / max(noise.std(), 1e-6))
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), (sxy, sxy, sz)


def write_nifti(path: Path, hu: np.ndarray, spacing: tuple, las: bool) -> None:
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    data = hu
    if las:                                      # stored with the x axis running to the left
        data = hu[::-1]
        affine[0, 0] = -spacing[0]
        affine[0, 3] = spacing[0] * (hu.shape[0] - 1)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm")
    img.to_filename(str(path))


def write_dicom(folder: Path, hu: np.ndarray, spacing: tuple, pid: str, seed: int) -> None:
    """One axial CT series: a file per slice, LPS patient coordinates, stored as HU + 1024."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid(entropy_srcs=[f"series-{pid}-{seed}"])
    study = generate_uid(entropy_srcs=[f"study-{pid}-{seed}"])
    nx, ny, nz = hu.shape
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"{pid}-{seed}-{k}"])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", pid, study, series
        ds.InstanceNumber = k + 1
        # rows run posterior -> anterior? DICOM axial: row direction +x (patient left), column +y (posterior)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        # RAS voxel (i, j, k) -> LPS: column index c = nx-1-i (x_L grows to the left), row index r = ny-1-j
        ds.ImagePositionPatient = [-(nx - 1) * spacing[0] / 2, -(ny - 1) * spacing[1] / 2,
                                   (k - (nz - 1) / 2) * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        plane = hu[::-1, ::-1, k].T                               # (rows = y_P, columns = x_L)
        ds.PixelData = np.ascontiguousarray(plane.astype(np.int32) + 1024).astype("<u2").tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


def labs(rng: np.random.Generator, label: str) -> dict:
    hcc, met = label == "hcc", label == "metastasis"
    z = rng.normal(size=8)
    return {"afp_log": round(1.5 + 0.8 * (z[0] + 1.2 * hcc), 4), "cea_log": round(0.8 + 0.6 * (z[1] + 1.0 * met), 4),
            "platelets": round(240 + 60 * (z[2] - 0.6 * hcc), 2), "alt": round(30 + 12 * (z[3] + 0.3 * (hcc or met)), 2),
            "ast": round(28 + 10 * (z[4] + 0.3 * (hcc or met)), 2), "albumin": round(42 + 4 * z[5], 2),
            "bilirubin": round(12 + 4 * z[6], 2), "noise1": round(float(z[7]), 4),
            "noise2": round(float(rng.normal()), 4)}


def history(rng: np.random.Generator, label: str) -> str:
    sex = rng.choice(["male", "female"])
    age = int(rng.integers(35, 85))
    core = rng.choice(HISTORY[label]) if rng.random() < 0.55 else rng.choice(NEUTRAL)
    return f"{age}-year-old {sex}; {core}."


def make(out: Path, n: int = 120, seed: int = 0, dicom: bool = False) -> Path:
    """Write the set under ``out``; returns the manifest's path."""
    rng = np.random.default_rng(seed)
    labels = [c for c, k in zip(CLASSES, class_counts(n)) for _ in range(k)]
    rng.shuffle(labels)
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    rows, lab_rows = [], []
    for i, label in enumerate(labels):
        pid = f"p{i:04d}"
        prng = np.random.default_rng([seed, i])
        hu, spacing = volume(prng, label)
        if dicom:
            rel = f"{pid}"
            write_dicom(out / "volumes" / rel, hu, spacing, pid, seed)
        else:
            rel = f"{pid}.nii.gz"
            write_nifti(out / "volumes" / rel, hu, spacing, las=bool(i % 2))
        rows.append({"sample_id": pid, "diagnosis": label, "ct": rel, "history": history(prng, label)})
        lab_rows.append({"sample_id": pid, **labs(prng, label)})
    _csv(out / "samples.csv", rows)
    _csv(out / "labs.csv", lab_rows)
    (out / "SYNTHETIC.md").write_text(
        "# SYNTHETIC data (generated by scripts/make_synthetic_volumes.py; no patient data)\n\n"
        f"{n} patients, seed {seed}, classes {dict(zip(CLASSES, class_counts(n)))}, "
        f"volumes as {'DICOM series folders' if dicom else 'NIfTI (.nii.gz)'}.\n\n"
        + "".join(f"- {k}: {v}\n" for k, v in SIGNAL.items()))
    manifest = out / "manifest.yaml"
    manifest.write_text(
        "# SYNTHETIC MLLC-shaped set (scripts/make_synthetic_volumes.py): see SYNTHETIC.md\n"
        "name: synthetic-mllc\ntable: samples.csv\nid_column: sample_id\nlabel_column: diagnosis\n"
        f"classes: {json.dumps(list(CLASSES))}\nmodalities:\n"
        "  ct: {type: volume, column: ct, root: volumes}\n"
        "  history: {type: text, column: history}\n"
        "  labs: {type: tabular, file: labs.csv}\n")
    return manifest


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120, help="patients (default 120)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dicom", action="store_true", help="write DICOM series folders instead of .nii.gz files")
    args = ap.parse_args(argv)
    if args.n < 10:
        sys.exit("--n must be at least 10 (every class needs training and test patients)")
    print(make(args.out, args.n, args.seed, args.dicom))
    return 0


if __name__ == "__main__":
    sys.exit(main())
