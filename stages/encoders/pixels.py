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
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

MAX16 = 65535
BACKGROUND = (0, 0, 0)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def open_rgb(path: Path):
    """The image at ``path`` as an 8-bit RGB PIL image; DataError naming the file if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.seek(0)
            return to_rgb8(img, path)
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
