"""Why a file met in a folder is not used, or is used with a warning: not an image, hidden, a broken
link, unreadable, empty, too small or too large, undecodable; few colours (a placeholder, not a
photograph), an EXIF rotation. Every file is judged by its content; nothing is skipped silently."""

from __future__ import annotations

import hashlib

import numpy as np

from tl_keras.images.codec import (
    JPEG_BOMB_PIXELS,
    declared_size,
    decode_file,
    exif_orientation,
    orient,
    orientation_of,
    resize_uint8,
)
from tl_keras.images.sniff import PILLOW_FORMATS, image_format

# Images with fewer distinct colours than this (on a 64x64 nearest-neighbour thumbnail) are kept but
# flagged: photographs have hundreds; web placeholders, icons and blank frames have a handful.
FEW_COLOURS = 64


# Images with a side under MIN_SIDE carry nothing to classify; images over MAX_PIXELS (read from the
# header, before decoding) would take gigabytes to decode: both are skipped and reported.
MIN_SIDE = 8


MAX_PIXELS = 100 * 10**6


def too_large(raw: bytes, size: tuple[int, int]) -> str | None:
    """Why an image declaring `size` (width, height) is not decoded, or None: over `MAX_PIXELS`, except
    a JPEG, which is decoded reduced up to `JPEG_BOMB_PIXELS` (see `tl_keras.images.codec`)."""
    pixels, limit = size[0] * size[1], MAX_PIXELS
    if raw[:3] == b"\xff\xd8\xff":
        limit = JPEG_BOMB_PIXELS
    if pixels <= limit:
        return None
    return (f"too large: {size[0]}x{size[1]} px is over {limit // 10**6} megapixels"
            f"{' even decoded at 1/8 of each side' if limit == JPEG_BOMB_PIXELS else ''}; downscale it to use it")


def _colour_count(image: np.ndarray) -> int:
    """Distinct colours in a 64x64 nearest-neighbour thumbnail (the pixels `tf.image.resize(...,
    "nearest")` picks), in NumPy: per image, TensorFlow's eager ops cost five times the work."""
    height, width = image.shape[0], image.shape[1]
    rows = np.minimum(((np.arange(64) + 0.5) * (height / 64)).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(64) + 0.5) * (width / 64)).astype(np.int64), width - 1)
    thumb = np.asarray(image)[rows[:, None], cols[None, :]].astype(np.int32)
    return len(np.unique(thumb[..., 0] * 65536 + thumb[..., 1] * 256 + thumb[..., 2]))


def _check_one(path: str, image_size: int, keep: bool, crop_to_aspect_ratio: bool, apply_exif: bool = True):
    """Decodes one file; returns (pixels or None, error or None, warning or None, the EXIF orientation
    its pixels are turned by: 1 when as stored, the SHA-1 of its bytes or None). The pixels are turned upright by the file's EXIF
    orientation unless `apply_exif=False`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})", None, 1, None
    if not raw:
        return None, "empty file (0 bytes)", None, 1, None
    size = declared_size(raw)
    if size and too_large(raw, size):
        return None, too_large(raw, size), None, 1, None
    try:
        # Pillow's formats are turned upright as they decode; a JPEG's turn comes after the resize, as
        # in the streamed pipeline and `decode_file`, so both give the same pixels to the bit.
        image = decode_file(raw, apply_exif=apply_exif and image_format(raw[:16]) in PILLOW_FORMATS)  # invalid, truncated or oversized image data: the reason says which
    except ValueError as err:
        return None, str(err), None, 1, None
    height, width = image.shape[0], image.shape[1]
    if min(height, width) < MIN_SIDE:
        return None, f"too small: {width}x{height} px (under {MIN_SIDE} px on a side)", None, 1, None
    notes = []
    colours = _colour_count(image)
    if colours < FEW_COLOURS:
        notes.append(f"only {colours} distinct colours: looks like a graphic or placeholder, not a photograph; "
                     "check that it belongs to its class")
    orientation = orientation_of(raw) if apply_exif else 1
    if not apply_exif and orientation_of(raw) != 1:
        notes.append(f"EXIF orientation {exif_orientation(raw)} (rotated or mirrored when shown) is not applied "
                     "(exif_orientation=False): used as stored")
    pixels = None
    if keep:
        pixels = orient(resize_uint8(image, image_size, crop_to_aspect_ratio).numpy(), orientation)
    return pixels, None, "; ".join(notes) or None, orientation, hashlib.sha1(raw).hexdigest()
