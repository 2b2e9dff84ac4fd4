"""The volume modality inside ``encode`` and ``predict``: its key parameters, its writer and its
re-encoding of new volumes with the options the run recorded (:mod:`stages.encoders.volume`)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from stages.errors import StaleArtifactError

log = logging.getLogger("climd")


def params(opts, weights_sha256: str | None) -> dict:
    """The encode key's ``volume`` entry: the 2-D encoder the slices go through and every volume
    option that changes the features."""
    return {"encoder": opts.image_encoder, "size": opts.image_size, "random_init": opts.random_init,
            "weights_sha256": weights_sha256, "allow_random": opts.allow_random_weights,
            "stages": opts.image_stages, "grid": opts.stage_grid if opts.image_stages else None,
            **opts.volume.key()}


def write(h5, group, name: str, paths: list, opts, matrix, gpu_peak) -> dict:
    """Encode ``paths`` into ``group[name]`` (and ``stages/<name>`` with --image-stages); the record.
    ``matrix`` and ``gpu_peak`` (reset, read): encode's HDF5 dataset maker and GPU memory probes
    (passed in by :func:`stages.pipeline.encode.encoder_of`, so that this module does not import it)."""
    from stages.encoders import image, volume
    from stages.runtime import device as devices
    from stages.runtime import progress

    dev = devices.resolve(opts.device)
    enc = image.build(opts.image_encoder, opts.image_weights, opts.image_size, opts.allow_random_weights,
                      opts.random_init)
    n, vopts = len(paths), opts.volume
    feats = matrix(group, name, shape=(n, enc.feature_dim * vopts.feature_multiplier()))
    maps = []
    if opts.image_stages:
        sg = h5.create_group(f"stages/{name}")
        maps = [matrix(sg, f"s{k}", shape=(n, opts.stage_grid ** 2, c)) for k, c in enumerate(enc.stage_channels)]
    timing, modes, axes = {}, {}, {}
    t0 = time.perf_counter()
    reset_peak, read_peak = gpu_peak
    reset_peak(dev)
    with progress.task(f"encode {name}", total=n, unit="vol") as advance:
        for row, vec, tokens, facts in volume.encode_volumes(paths, enc, vopts, opts.batch_size, dev,
                                                             opts.image_stages, opts.stage_grid, timing):
            feats[row] = vec
            for dset, tok in zip(maps, tokens):
                dset[row] = tok
            modes[facts["intensity"]] = modes.get(facts["intensity"], 0) + 1
            axes[facts["axes"]] = axes.get(facts["axes"], 0) + 1
            advance(1)
    seconds = time.perf_counter() - t0
    rate = n / seconds if seconds > 0 else float("nan")
    if len(modes) > 1:
        log.warning("volume modality %r: intensity handled as %s (--volume-intensity auto decides per volume; "
                    "give ct or mri to treat them alike)", name, modes)
    log.info("encoded %d volumes with %s on %s: %.1f s, %.2f volumes/s (decode %.1f s, resample %.1f s, "
             "forward %.1f s)", n, enc.name, dev, seconds, rate, timing["decode"], timing["resample"],
             timing["forward"])
    info = {**enc.info(), "volume": vopts.key(), "memory_mb": vopts.memory_mb, "intensity_used": modes,
            "source_axes": axes, "canonical_frame": "RAS", "slices_per_volume": vopts.slices * len(vopts.plane_axes),
            "stages": list(enc.stage_channels) if opts.image_stages else None,
            "stage_grid": opts.stage_grid if opts.image_stages else None}
    info.pop("exif_orientation", None)
    return {**info, "device": dev, "seconds": round(seconds, 2), "volumes_per_s": round(rate, 3),
            "timing_s": {k: round(v, 3) for k, v in timing.items()}, "gpu_peak_mb": read_peak(dev)}


def encode_new(mod, fitted, dev: str, batch_size: int, stages: bool):
    """New volumes as the run's features (for ``predict``, ``fitted`` its :class:`stages.pipeline.predict.Fitted`,
    ``dev`` the resolved device): the recorded encoder, weights and volume options."""
    from stages.encoders import image, volume

    p, info = fitted.params["volume"], fitted.encoders[mod.name]
    weights = None if p["random_init"] or info.get("weights") in (None, "random") else Path(info["weights"])
    enc = image.build(p["encoder"], weights, p["size"], p["allow_random"], p["random_init"])
    if enc.weights_sha256 != p["weights_sha256"]:
        raise StaleArtifactError(f"the image weights {weights} are not the ones the run was encoded with "
                                 "(their SHA-256 differs)", fix="restore the weights file, or re-encode and retrain the run")
    vopts = volume.VolumeOptions.from_key(p, info.get("memory_mb", volume.VolumeOptions.memory_mb))
    want_maps = bool(stages and p.get("stages"))
    vecs, maps = [], []
    for _, vec, tokens, _ in volume.encode_volumes(list(mod.values), enc, vopts, batch_size, dev, want_maps,
                                                   p.get("grid") or 7):
        vecs.append(vec)
        maps.append(tokens)
    stage_maps = [np.stack([t[k] for t in maps]) for k in range(len(maps[0]))] if want_maps and maps else []
    return np.stack(vecs).astype(np.float32), stage_maps
