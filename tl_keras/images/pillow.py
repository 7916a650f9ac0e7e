"""Small views of an image through Pillow, without TensorFlow: what the data report's thumbnails and
the near-duplicate hashes are drawn from. A JPEG is decoded reduced (Pillow's draft mode), so a
large photo costs little; HEIC opens when pillow-heif is installed."""

from __future__ import annotations

import importlib.util

import numpy as np


def register_heif() -> None:
    """Lets Pillow open HEIC files when pillow-heif (the `heif` extra) is installed; else nothing."""
    if importlib.util.find_spec("pillow_heif") is not None:
        import pillow_heif

        pillow_heif.register_heif_opener()


def open_reduced(source, mode: str, size: int, exif_orientation: bool = True, pixels: np.ndarray | None = None):
    """A Pillow image in `mode` ("RGB", "L") at least `size` px on its short side where the file is
    larger: from `pixels` when given, else from `source` (a path or a binary file object), turned
    upright by its EXIF orientation unless `exif_orientation=False`.

    Raises:
        OSError, ValueError: the file cannot be read or decoded.
    """
    from PIL import Image, ImageOps

    if pixels is not None:
        return Image.fromarray(np.asarray(pixels, np.uint8)).convert(mode)
    register_heif()
    with Image.open(source) as opened:
        opened.draft(mode, (size, size))
        return (ImageOps.exif_transpose(opened) if exif_orientation else opened).convert(mode)
