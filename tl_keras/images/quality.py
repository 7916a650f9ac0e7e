"""Why a file met in a folder is not used, or is used with a warning: not an image, hidden, a broken
link, unreadable, empty, too small or too large, undecodable; few colours (a placeholder, not a
photograph), an EXIF rotation. Every file is judged by its content; nothing is skipped silently."""

from __future__ import annotations

import numpy as np

from tl_keras.images.codec import (
    declared_size,
    decode_file,
    exif_orientation,
    resize_uint8,
)

# Images with fewer distinct colours than this (on a 64x64 nearest-neighbour thumbnail) are kept but
# flagged: photographs have hundreds; web placeholders, icons and blank frames have a handful.
FEW_COLOURS = 64


# Images with a side under MIN_SIDE carry nothing to classify; images over MAX_PIXELS (read from the
# header, before decoding) would take gigabytes to decode: both are skipped and reported.
MIN_SIDE = 8


MAX_PIXELS = 100 * 10**6


def _colour_count(image: np.ndarray) -> int:
    """Distinct colours in a 64x64 nearest-neighbour thumbnail (the pixels `tf.image.resize(...,
    "nearest")` picks), in NumPy: per image, TensorFlow's eager ops cost five times the work."""
    height, width = image.shape[0], image.shape[1]
    rows = np.minimum(((np.arange(64) + 0.5) * (height / 64)).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(64) + 0.5) * (width / 64)).astype(np.int64), width - 1)
    thumb = np.asarray(image)[rows[:, None], cols[None, :]].astype(np.int32)
    return len(np.unique(thumb[..., 0] * 65536 + thumb[..., 1] * 256 + thumb[..., 2]))


def _check_one(path: str, image_size: int, keep: bool, crop_to_aspect_ratio: bool):
    """Decodes one file; returns (pixels or None, error or None, warning or None)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})", None
    if not raw:
        return None, "empty file (0 bytes)", None
    size = declared_size(raw)
    if size and size[0] * size[1] > MAX_PIXELS:
        return None, (f"too large: {size[0]}x{size[1]} px is over {MAX_PIXELS // 10**6} megapixels; "
                      "downscale it to use it"), None
    try:
        image = decode_file(raw)  # invalid, truncated or oversized image data: the reason says which
    except ValueError as err:
        return None, str(err), None
    height, width = image.shape[0], image.shape[1]
    if min(height, width) < MIN_SIDE:
        return None, f"too small: {width}x{height} px (under {MIN_SIDE} px on a side)", None
    notes = []
    colours = _colour_count(image)
    if colours < FEW_COLOURS:
        notes.append(f"only {colours} distinct colours: looks like a graphic or placeholder, not a photograph; "
                     "check that it belongs to its class")
    orientation = exif_orientation(raw)
    if orientation not in (0, 1):
        notes.append(f"EXIF orientation {orientation} (rotated or mirrored when shown) is ignored, as TensorFlow "
                     "decodes it: used as stored; re-save it upright if it looks sideways")
    pixels = None
    if keep:
        pixels = resize_uint8(image, image_size, crop_to_aspect_ratio).numpy()
    return pixels, None, "; ".join(notes) or None
