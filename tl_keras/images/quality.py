"""Why a file met in a folder is not used, or is used with a warning: not an image, hidden, a broken
link, unreadable, empty, too small or too large, undecodable; few colours (a placeholder, not a
photograph), an EXIF rotation. Every file is judged by its content; nothing is skipped silently."""

from __future__ import annotations

import os
import stat

import numpy as np

from tl_keras.images import codec
from tl_keras.images.codec import (
    FORMAT_NAMES,
    IMAGE_EXTENSIONS,
    declared_size,
    decode_file,
    exif_orientation,
    image_format,
    resize_uint8,
)

# Images with fewer distinct colours than this (on a 64x64 nearest-neighbour thumbnail) are kept but
# flagged: photographs have hundreds; web placeholders, icons and blank frames have a handful.
FEW_COLOURS = 64


# Images with a side under MIN_SIDE carry nothing to classify; images over MAX_PIXELS (read from the
# header, before decoding) would take gigabytes to decode: both are skipped and reported.
MIN_SIDE = 8


MAX_PIXELS = 100 * 10**6


def skip_reason(path: str) -> str | None:
    """Why a file met in a folder is not a candidate image, or None. Judged by its content: an image
    is used whatever its name; a file with an image's name but other content is a candidate whose
    decoding fails with a reason."""
    name = os.path.basename(path)
    if name.startswith("."):
        return "hidden file"
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken symbolic link: its target {os.readlink(path)!r} does not exist"
    try:
        mode = os.stat(path).st_mode  # follows links: what would be opened
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if not stat.S_ISREG(mode):  # opening a FIFO waits for a writer forever; a device never ends
        return f"{_kind(mode)}, not a regular file: not opened"
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    kind = image_format(head)
    if kind == "TIFF" and codec.pillow_missing():  # looked up here, so a test can stand in for it
        return "TIFF image: TensorFlow does not decode TIFF; `pip install pillow` to use it"
    if kind is None and not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file type (neither its content nor its extension is {FORMAT_NAMES.replace(', TIFF', ' or TIFF')})"
    return None


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "a special file"


# Folders notebooks, operating systems and NAS boxes write beside images: never read as images.
JUNK_FOLDERS = (".ipynb_checkpoints", "__MACOSX", "@eaDir", "__pycache__", ".Trashes", ".Spotlight-V100", ".fseventsd")


def folder_skip_reason(path: str) -> str | None:
    """Why a folder met inside a class folder is not searched for images, or None: a notebook's or an
    operating system's own folder (`JUNK_FOLDERS`: copies and thumbnails, not images of the class), a
    hidden folder, or a folder named like an image file."""
    name = os.path.basename(os.path.normpath(path))
    if name in JUNK_FOLDERS:
        return f"a folder {name!r} that notebooks or the operating system write (copies or thumbnails): not read"
    if name.startswith("."):
        return "hidden folder: not read"
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return "a folder named like an image file: not read (move the images in it up to use them)"
    return None


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
