"""Decode any image file into 8-bit RGB without silently corrupting it.

Pillow's own ``convert("RGB")`` clips 16-bit grayscale to 255 (a 16-bit TIFF or PNG becomes an
all-white image) and drops alpha, keeping whatever colour the transparent pixels happen to hold.
Here:

* 16-bit integer images (modes ``I;16*``, and ``I`` with values inside 0..65535) are scaled by the
  maximum of the 16-bit type: ``v8 = round(v16 * 255 / 65535)``. The scale is the same for every
  image, so intensities stay comparable between images (a per-image min-max stretch would not);
  12-bit data stored in 16 bits therefore looks dark but keeps its relative contrast.
* 32-bit integer images with values outside 0..65535 and floating-point images (mode ``F``) are
  refused with a message: there is no scale that is right for every such file.
* Alpha (RGBA, LA, PA, palette or grayscale with a transparent colour) is composited onto BLACK:
  a fully transparent pixel becomes black, a half-transparent one half as bright.
* Multi-frame files (TIFF stacks, animated GIF/PNG) use their first frame.
* EXIF orientation (tag 0x0112, set by cameras and phones that store a rotated sensor image) is
  applied, so the network sees the picture the way a viewer shows it (``exif=False``: as stored).
  An EXIF block that cannot be parsed counts as "no orientation" (with a warning naming the file).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stages.errors import DataError

log = logging.getLogger("climd")

MAX16 = 65535
BACKGROUND = (0, 0, 0)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ORIENTATION_TAG = 0x0112
# what makes an image with EXIF orientation k upright (Pillow's Image.Transpose names, as
# ImageOps.exif_transpose uses them)
TRANSPOSES = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
              7: "TRANSVERSE", 8: "ROTATE_90"}


def orientation(img, path: Path | str = "<image>") -> int:
    """The EXIF orientation (1-8) of an opened PIL image; 1 (as stored) when there is none or the
    EXIF block cannot be parsed."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception as exc:  # a damaged EXIF block must not stop an encode: the pixels are fine
        log.warning("image %s: unreadable EXIF block (%s); used as stored", path, exc.__class__.__name__)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def open_rgb(path: Path, exif: bool = True):
    """The image at ``path`` as an 8-bit RGB PIL image, upright by its EXIF orientation unless
    ``exif`` is False; DataError naming the file if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.seek(0)
            turn = orientation(img, path) if exif else 1
            rgb = to_rgb8(img, path)
            return rgb.transpose(getattr(Image.Transpose, TRANSPOSES[turn])) if turn > 1 else rgb
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, SyntaxError,
            EOFError) as exc:
        raise DataError(f"cannot read image {path} ({exc.__class__.__name__}: {exc})",
                        fix="replace or remove the damaged file")


def to_rgb8(img, path: Path | str = "<image>"):
    """Convert a decoded PIL image to 8-bit RGB (see the module docstring for the rules)."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > MAX16):
            raise DataError(f"image {path} has 32-bit integer pixels ({arr.min()}..{arr.max()}), outside "
                            "the 16-bit range climd can scale",
                            fix="save it as 8- or 16-bit (e.g. PNG or TIFF) with the intensity window you want")
        gray = np.rint(arr * (255.0 / MAX16)).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        raise DataError(f"image {path} has floating-point pixels (mode F): there is no scale that is right "
                        "for every such file",
                        fix="save it as 8- or 16-bit integers (PNG or TIFF) with the intensity window you want")
    if mode in ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def jpeg_orientation(data: bytes, path: Path | str = "<image>") -> int:
    """The EXIF orientation of a JPEG held in memory (its header only is parsed); 1 when there is
    none or the file is damaged (the decoder then names it)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return orientation(img, path)
    except Exception:  # a damaged file is reported by the decoder or the PIL loader, not here
        return 1


def orient_tensor(x, turn: int):
    """The same transposes on a (…, H, W) tensor (the GPU decode path, whose decoder ignores EXIF)."""
    import torch

    if turn == 2:
        return x.flip(-1)
    if turn == 3:
        return x.flip(-2, -1)
    if turn == 4:
        return x.flip(-2)
    if turn == 5:
        return x.transpose(-2, -1)
    if turn == 6:
        return torch.rot90(x, -1, (-2, -1))
    if turn == 7:
        return x.flip(-2, -1).transpose(-2, -1)
    if turn == 8:
        return torch.rot90(x, 1, (-2, -1))
    return x


def center_crop(image, size: int):
    w, h = image.size
    scale = size * 8 / 7 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)))
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(image, encoder):
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(encoder.mean).view(3, 1, 1)
    std = torch.tensor(encoder.std).view(3, 1, 1)
    return (x - mean) / std


def load_image(path: Path, encoder):
    """Decode to 8-bit RGB (16-bit scaled, alpha on black, upright by EXIF: see ``pixels``) and
    resize to the encoder's square input; DataError naming the file if unreadable."""
    from PIL import Image

    img = open_rgb(path, encoder.exif_orientation).resize((encoder.size, encoder.size), Image.BILINEAR)
    return to_tensor(img, encoder)
