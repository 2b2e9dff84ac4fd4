"""CT/MRI volumes: real NIfTI and DICOM files from the nibabel and pydicom wheels, the synthetic
MLLC-shaped set through `climd encode` / `climd predict`, and every bad-input case with its message."""
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from stages.encoders import volume, volume_io
from stages.errors import DataError, UsageError

NIB = Path(__import__("nibabel").__file__).parent / "tests" / "data"
DCM = Path(pydicom.data.__file__).parent / "test_files"
CT5N = DCM / "dicomdirtests" / "98892001" / "CT5N"          # a 5-slice CT series, 16 x 16 pixels
BUDGET = 512.0


# -- reading real files ---------------------------------------------------------------------------------------
def test_nifti_is_reoriented_to_ras_by_flipping_not_interpolating():
    import nibabel as nib

    vol = volume_io.read(NIB / "anatomical.nii", BUDGET)
    raw = np.asarray(nib.load(str(NIB / "anatomical.nii")).dataobj, dtype=np.float32)
    assert vol.original_axes == "LAS" and vol.spacing == (2.0, 2.0, 2.0) and vol.modality is None
    np.testing.assert_array_equal(vol.data, raw[::-1])            # L->R: the first axis flipped, nothing else
    assert vol.data.flags.c_contiguous


def test_dicom_series_geometry_and_values_match_pydicom_and_nibabel():
    from nibabel.nicom import dicomwrappers

    vol = volume_io.read(CT5N, BUDGET)
    assert vol.data.shape == (16, 16, 5) and vol.modality == "CT" and vol.original_axes == "LPS"
    assert np.allclose(vol.spacing, (0.488281, 0.488281, 2.5))
    # by hand: slices sorted by z (inferior first), rows/columns -> (x, y), L->R and P->A flipped
    slices = sorted((pydicom.dcmread(f) for f in CT5N.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    hu = [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices]
    expected = np.stack([h.T[::-1, ::-1] for h in hu], axis=-1)
    np.testing.assert_array_equal(vol.data, expected.astype(np.float32))
    # the in-plane geometry agrees with nibabel's own DICOM wrapper (LPS, (row, column) voxel axes)
    headers = [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in sorted(CT5N.iterdir())]
    _, ras, _ = volume_io._geometry(CT5N, headers)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lps = dicomwrappers.wrapper_from_file(str(sorted(CT5N.iterdir())[0])).affine
    np.testing.assert_allclose(ras[:3, :2], np.diag([-1, -1, 1]) @ lps[:3, [1, 0]], atol=1e-6)
    np.testing.assert_allclose(ras[:2, 3], -lps[:2, 3], atol=1e-4)


def test_single_ct_slice_from_the_pydicom_wheel_is_a_one_slice_volume(tmp_path):
    shutil.copy(DCM / "CT_small.dcm", tmp_path / "a.dcm")
    vol = volume_io.read(tmp_path, BUDGET)
    assert vol.data.shape == (128, 128, 1) and vol.spacing[2] == 5.0 and vol.data.min() < -500


def test_auto_intensity_rule_and_a_trailing_length_one_axis(tmp_path):
    import nibabel as nib

    opts = volume.parse()
    assert volume.intensity_mode(volume_io.read(NIB / "anatomical.nii", BUDGET), opts) == "mri"   # an MR image
    assert volume.intensity_mode(volume_io.read(CT5N, BUDGET), opts) == "ct"                      # Modality tag
    ct = np.full((8, 8, 4, 1), -1000.0, np.float32)                                               # air: HU
    ct[2:6, 2:6] = 40.0
    nib.Nifti1Image(ct, np.eye(4)).to_filename(str(tmp_path / "ct.nii.gz"))
    vol = volume_io.read(tmp_path / "ct.nii.gz", BUDGET)
    assert vol.data.shape == (8, 8, 4) and volume.intensity_mode(vol, opts) == "ct"
    assert volume.intensity_mode(vol, volume.parse(intensity="mri")) == "mri"


# -- bad input, read directly -----------------------------------------------------------------------------------
def _series(tmp_path, files, name="series"):
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
    return folder


def bad_cases(tmp_path) -> dict:
    """name -> (path, words the message must hold)."""
    import nibabel as nib

    ct = sorted(CT5N.iterdir())
    nan = np.zeros((4, 4, 4), np.float32)
    nan[1, 2, 3] = np.nan
    nib.Nifti1Image(nan, np.eye(4)).to_filename(str(tmp_path / "nan.nii.gz"))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.nii.gz").write_bytes(b"definitely not gzip")
    return {
        "4-D": (NIB / "example4d.nii.gz", ["4-D", "(128, 96, 24, 2)", "3-D volume is expected"]),
        "two series": (_series(tmp_path, ct + [DCM / "dicomdirtests" / "98892003" / "MR1" / "4919"], "two"),
                       ["2 DICOM series", "own folder"]),
        "missing slice": (_series(tmp_path, ct[:2] + ct[3:], "gap"), ["uneven slice spacing", "missing slices"]),
        "uneven (real)": (DCM / "dicomdirtests" / "77654033" / "CT2", ["uneven slice spacing", "202.500 mm"]),
        "orientation": (DCM / "dicomdirtests" / "98892003" / "MR700", ["different orientation", "ImageOrientationPatient"]),
        "not an image": (tmp_path / "notes.txt", ["neither a NIfTI file", "DICOM series folder"]),
        "damaged nifti": (tmp_path / "fake.nii.gz", ["cannot read volume"]),
        "not dicom in folder": (_series(tmp_path, ct[:2] + [tmp_path / "notes.txt"], "mixed"), ["is not a DICOM file"]),
        "NaN": (tmp_path / "nan.nii.gz", ["1 NaN or infinite voxel", "(1, 2, 3)"]),
        "over budget": (NIB / "anatomical.nii", ["memory budget of 0.05 MiB", "--volume-memory-mb"]),
    }


def test_each_bad_volume_is_refused_naming_the_file(tmp_path):
    for name, (path, words) in bad_cases(tmp_path).items():
        with pytest.raises(DataError) as info:
            volume_io.read(path, 0.05 if name == "over budget" else BUDGET, (1.5, 1.5, 1.5))
        text = str(info.value)
        assert str(path) in text and "fix:" in text, (name, text)
        for word in words:
            assert word in text, (name, word, text)


# -- preprocessing by hand --------------------------------------------------------------------------------------
def test_ct_windows_and_mri_percentiles_by_hand():
    import torch

    opts = volume.parse()
    x = torch.full((1, 2, 2), 40.0)
    ch = volume._to_channels(x, "ct", opts, None)[0, :, 0, 0].tolist()
    # (40 - (level - width/2)) / width: 0.5 for 40:400, 60/160 for 60:160, 540/1800 for 400:1800
    assert np.allclose(ch, [0.5, 0.375, 0.3])
    v = torch.arange(1000, dtype=torch.float32).reshape(10, 10, 10)
    lo, hi = volume._mri_scale(v, (1.0, 99.0))
    assert np.allclose((lo, hi), np.percentile(np.arange(1000), [1, 99]))
    assert volume_io.resampled_shape((48, 48, 30), (3.0, 3.0, 6.0), (1.5, 1.5, 1.5)) == (96, 96, 120)
    # volumes per forward call: the largest divisor of the batch size whose slices fit
    assert [volume.volumes_per_batch(32, s) for s in (24, 3, 5, 40)] == [1, 8, 4, 1]


def test_options_parse_key_roundtrip_and_refusals():
    opts = volume.parse("0.8,0.8,2", "axial", 5, "mri", "0:100,50:200,-600:1500", "2,98", "mean", 100)
    assert volume.VolumeOptions.from_key(opts.key(), 100) == opts and "memory_mb" not in opts.key()
    assert volume.parse("native").spacing is None
    for kwargs in ({"spacing": "0"}, {"planes": "oblique"}, {"ct_windows": "40:400"}, {"mri_percentiles": "99,1"},
                   {"slices": 0}, {"pool": "sum"}, {"spacing": "a,b"}):
        with pytest.raises(UsageError):
            volume.parse(**kwargs)


def test_volume_options_enter_the_encode_key():
    from stages.pipeline import encode

    base = encode.EncodeOptions(random_init=True)
    other = encode.EncodeOptions(random_init=True, volume=volume.parse(slices=4))
    budget = encode.EncodeOptions(random_init=True, volume=volume.parse(memory_mb=10))
    p = encode._model_params
    assert p(base, {"volume"}) != p(other, {"volume"})
    assert p(base, {"volume"}) == p(budget, {"volume"})      # the budget only decides refusals
    assert p(base, {"volume"})["volume"]["slices"] == 8 and p(base, {"tabular"}) == {}


def test_pretrained_encoder_on_a_tiny_volume_pools_mean_and_max_of_its_slices():
    """The shipped pretrained EfficientNet-Lite0 (not a random init) on nibabel's 4x5x7 example."""
    from stages.encoders import image
    from stages.encoders.image_batch import forward

    enc = image.build("efficientnet-lite0", None, 64)
    opts = volume.parse("native", slices=2)
    (_, vec, _, facts), = list(volume.encode_volumes([NIB / "standard.nii.gz"], enc, opts, 4, "cpu"))
    assert vec.shape == (2560,) and np.isfinite(vec).all() and vec.std() > 0.01 and facts["intensity"] == "mri"
    batch, _ = volume.prepare(volume_io.read(NIB / "standard.nii.gz", BUDGET), opts, 64, enc.mean, enc.std, "cpu")
    assert batch.shape == (6, 3, 64, 64)                      # 2 slices x 3 planes
    feats, _ = forward(enc.model, batch)
    np.testing.assert_allclose(vec, np.concatenate([feats.mean(0), feats.max(0)]), rtol=1e-4, atol=1e-5)


# -- the synthetic set through the CLI --------------------------------------------------------------------------
TINY = ("--random-init", "--image-size", "32", "--volume-slices", "1", "--volume-spacing", "3")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from scripts.make_synthetic_volumes import make

    root = tmp_path_factory.mktemp("synvol")
    return make(root / "nifti", n=20), make(root / "dicom", n=20, dicom=True)


def test_synthetic_set_encodes_one_row_per_volume_nifti_equals_dicom_and_predict_matches(
        cli, cache, synthetic, tmp_path):
    from stages.data import features
    from stages.data.adapters import unlabelled
    from stages.pipeline import predict
    from stages.store.artifacts import RunStore

    nifti, dicom = synthetic
    assert "SYNTHETIC" in (nifti.parent / "SYNTHETIC.md").read_text()
    for run, manifest in (("n", nifti), ("d", dicom)):
        stages = ("--image-stages", "--stage-grid", "2") if run == "n" else ()
        r = cli("encode", "--run", run, "--data", manifest, "--modalities", "ct,labs", *TINY, *stages)
        assert r.exit_code == 0, r.output
    fn = features.read(cache / "n" / "encode" / "features.h5")
    fd = features.read(cache / "d" / "encode" / "features.h5")
    assert fn.modalities["ct"].shape == (20, 2560) and fn.kinds["ct"] == "volume"
    # CFCML's stage maps: the four EfficientNet stages of the same slices, max over the slices
    maps = features.read(cache / "n" / "encode" / "features.h5", stages=True).stages["ct"]
    assert [m.shape for m in maps] == [(20, 4, c) for c in (24, 40, 112, 320)]
    # the same patients stored as NIfTI (half LAS, half RAS) and as DICOM (LPS) give the same features
    np.testing.assert_allclose(fn.modalities["ct"], fd.modalities["ct"], rtol=1e-5, atol=1e-9)
    assert cli("train", "--run", "n", "--curriculum", "none", "--model", "logreg-balanced", "--variant", "lr").exit_code == 0
    r = cli("predict", "--run", "n", "--variant", "lr", "--data", nifti)
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 21
    enc = RunStore(cache, "n").load("encode")
    fitted = predict.read_fitted(enc)
    assert fitted.params["volume"]["slices"] == 1 and fitted.params["volume"]["spacing"] == [3.0, 3.0, 3.0]
    new = unlabelled.load(nifti, None, predict.recorded_data_options(enc))
    again = predict.encode_new(new, fitted, nifti, "n", False, "cpu", 32, [])
    np.testing.assert_array_equal(again.modalities["ct"], fn.modalities["ct"])


@pytest.mark.parametrize("case", ["4-D", "two series", "missing slice", "orientation", "not an image", "NaN",
                                  "over budget"])
def test_bad_volume_in_a_manifest_exits_3_naming_the_file(cli, cache, tmp_path, case):
    path, words = bad_cases(tmp_path)[case]
    rows = ["sample_id,label,scan", f"bad,a,{path}"] + [f"ok{i},{'ab'[i % 2]},{NIB / 'standard.nii.gz'}"
                                                         for i in range(7)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "m.yaml").write_text("table: t.csv\nid_column: sample_id\nlabel_column: label\n"
                                     "modalities:\n  scan: {type: volume, column: scan, root: /}\n")
    extra = ["--volume-memory-mb", "0.05"] if case == "over budget" else []
    r = cli("encode", "--run", "bad", "--data", tmp_path / "m.yaml", *TINY, *extra)
    assert r.exit_code == 3, r.output
    assert str(path) in r.output and "Traceback" not in r.output and words[0] in r.output


def test_missing_volume_and_schema_are_checked_before_reading(cli, cache, tmp_path):
    (tmp_path / "t.csv").write_text("sample_id,label,scan\na,x,nowhere.nii.gz\nb,y,b.nii.gz\nc,x,c.nii.gz\nd,y,d.nii.gz\n")
    (tmp_path / "m.yaml").write_text("table: t.csv\nid_column: sample_id\nlabel_column: label\n"
                                     "modalities:\n  scan: {type: volume, colum: scan}\n")
    r = cli("encode", "--run", "m", "--data", tmp_path / "m.yaml")
    assert r.exit_code == 3 and "did you mean 'column'" in r.output
    (tmp_path / "m.yaml").write_text((tmp_path / "m.yaml").read_text().replace("colum:", "column:"))
    r = cli("encode", "--run", "m", "--data", tmp_path / "m.yaml")
    assert r.exit_code == 3 and "4 volume(s) of the 'scan' column not found" in r.output and "line 2" in r.output


def test_sharded_volume_encode_equals_the_unsharded_one_bitwise(cli, cache, synthetic):
    from stages.data import features

    nifti, _ = synthetic
    args = ("--data", nifti, "--modalities", "ct,labs", *TINY, "--batch-size", "8")    # groups of 2 volumes
    assert cli("encode", "--run", "whole", *args).exit_code == 0
    for shard in ("0/2", "1/2"):
        assert cli("encode", "--run", "parts", *args, "--shard", shard).exit_code == 0
    assert cli("encode", "--run", "parts", *args, "--merge", "--shards", "2").exit_code == 0
    whole = features.read(cache / "whole" / "encode" / "features.h5").modalities["ct"]
    parts = features.read(cache / "parts" / "encode" / "features.h5").modalities["ct"]
    np.testing.assert_array_equal(whole, parts)


def test_sweep_and_compare_configs_carry_the_volume_options():
    from stages.sweep.upstream import OPTIONS, encode_args

    assert {"volume-spacing", "volume-slices", "volume-memory-mb"} <= set(OPTIONS["encode"])
    _, _, enc = encode_args({"data": "m.yaml", "volume-slices": 4, "volume-spacing": 2.0, "volume-pool": "mean"})
    assert enc.volume == volume.parse("2", slices=4, pool="mean")
    assert encode_args({"data": "m.yaml"})[2].volume == volume.VolumeOptions()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device (runs where one is lent)")
def test_cuda_path_gives_the_cpu_features_within_fp16_tolerance():
    """Transfer once, resample/window/slice/resize and the forward pass (fp16 autocast) on the GPU."""
    from stages.encoders import image

    enc = image.build("efficientnet-lite0", None, 64)
    opts = volume.parse("1.0", slices=2)
    paths = [NIB / "anatomical.nii", CT5N]
    cpu = [v for _, v, _, _ in volume.encode_volumes(paths, enc, opts, 8, "cpu")]
    gpu = [v for _, v, _, _ in volume.encode_volumes(paths, enc, opts, 8, "cuda")]
    for a, b in zip(cpu, gpu):
        assert np.corrcoef(a, b)[0, 1] > 0.999 and np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_volume_text_and_table_run_through_climd_compare(cli, cache, synthetic, tmp_path):
    """Issue 24's must-show: the MLLC-shaped set (CT volume + history text + lab table) from the data to
    the verdict in one `climd compare --panel quick` (tiny encoder settings; the volumes are encoded
    once for both replicates)."""
    nifti, _ = synthetic
    out = tmp_path / "verdict"
    tiny = [a for pair in zip(["--encode-option"] * 4, ["random-init=true", "image-size=32", "volume-slices=1",
                                                         "volume-spacing=3"]) for a in pair]
    r = cli("--no-progress", "compare", "--data", nifti, "--replicates", "2", "--panel", "quick", "--out", out,
            *tiny, "--json")
    assert r.exit_code == 0, r.output
    assert (out / "report.md").is_file() and "curriculum-best" in (out / "report.md").read_text()
    import json

    meta = next(cache.glob("*-r0/encode/meta.json"))             # run NAME-r0, NAME from the data folder
    feats = json.loads(meta.read_text())["params"]["modalities"]
    assert feats == {"ct": "volume", "history": "text", "labs": "tabular"}
