"""Reading image files for prediction and serving: files, folders (recursively) and glob patterns,
decoded in parallel and framed as the training images were, each bad file with its reason; and the
sizes their headers declare, without decoding (`short_sides`, what the run's input size is chosen from)."""

from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from tl_keras.images.codec import declared_size, decode_file
from tl_keras.images.quality import too_large
from tl_keras.images.sniff import FORMAT_NAMES, folder_skip_reason, skip_reason


def _require_file(path: str) -> None:
    """A regular file, or a clear error: a FIFO or device is never opened (reading it could wait forever)."""
    if os.path.isfile(path):
        return
    if os.path.islink(path) or not os.path.lexists(path):
        reason = skip_reason(path) if os.path.islink(path) else None
        raise ValueError(f"Image file not found: {path!r}" + (f" ({reason})" if reason else ""))
    raise ValueError(f"{path!r} is not an image file: {skip_reason(path)}")


def _read_image(path: str, image_size: int | None, crop_to_aspect_ratio: bool, exif_orientation: bool = True) -> np.ndarray:
    _require_file(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ValueError(f"{path!r} cannot be read ({err.strerror or err})") from err
    size = declared_size(raw)
    if size and too_large(raw, size):
        raise ValueError(f"{path!r} is {too_large(raw, size)}.")
    try:
        return decode_file(raw, image_size, crop_to_aspect_ratio, apply_exif=exif_orientation)
    except ValueError as err:
        raise ValueError(f"{path!r} {err}; tl_keras reads {FORMAT_NAMES}") from err


def short_sides(paths: Sequence[str], header_bytes: int = 1 << 18) -> list[int]:
    """The shorter side, in pixels, of each image whose header declares its size, read without
    decoding (the first `header_bytes`, the whole file if its header runs longer): JPEG, PNG, GIF
    and BMP by their headers, other formats through Pillow when it is installed. Files whose size
    cannot be read this way are left out; the result is for a statistic, not one per file."""
    sides = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read(header_bytes)
                size = declared_size(raw) or (declared_size(raw + f.read()) if len(raw) == header_bytes else None)
        except OSError:
            continue
        size = size or _pillow_size(path)
        if size:
            sides.append(int(min(size)))
    return sides


def _pillow_size(path: str) -> tuple[int, int] | None:
    """(width, height) from Pillow's lazy open (header only), for WebP, TIFF, HEIC, AVIF; None without Pillow."""
    try:
        from PIL import Image

        from tl_keras.images.pillow import register_heif
    except ImportError:
        return None
    register_heif()
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - any unreadable header means "size unknown", which the caller handles
        return None


def read_images(paths: Sequence[str], image_size: int | None = None, workers: int | None = None,
                crop_to_aspect_ratio: bool = True, exif_orientation: bool = True) -> list[np.ndarray]:
    """Reads and decodes image files to uint8 RGB arrays (in parallel), with a clear error per bad file,
    each turned upright by its EXIF orientation tag unless `exif_orientation=False`.

    With `image_size` every image is resized to that square exactly as training data is (framed by
    `crop_to_aspect_ratio`, see `resize_uint8`), so a list of files becomes one batchable stack;
    without it images keep their own size.
    """
    for path in paths:
        _require_file(path)
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(lambda p: _read_image(p, image_size, crop_to_aspect_ratio, exif_orientation), paths))


def try_read_images(
    paths: Sequence[str], image_size: int | None = None, workers: int | None = None, crop_to_aspect_ratio: bool = True,
    exif_orientation: bool = True,
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Like `read_images`, but a bad file does not stop the rest: returns `(images, errors)`, where a
    bad file's image is None and its error the reason, and a good file's error is None."""

    def attempt(path: str):
        try:
            return _read_image(path, image_size, crop_to_aspect_ratio, exif_orientation), None
        except ValueError as err:
            return None, str(err)

    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        pairs = list(pool.map(attempt, paths))
    return [image for image, _ in pairs], [error for _, error in pairs]


def expand_image_paths(items: Sequence[str], *, report_missing: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files named directly, found under folders (recursively, sorted), or matched by glob
    patterns (`**` included); returns `(paths, skipped)` where `skipped` lists the hidden and
    non-image files met in folders and globs, with the reason (judged by content, see `skip_reason`).

    Raises:
        ValueError: an item that is neither an existing file, a folder, nor a pattern matching
            something; with `report_missing=True` it is listed in `skipped` instead.
    """
    paths, skipped = [], []

    def consider(path: str) -> None:
        reason = skip_reason(path)
        if reason:
            skipped.append((path, reason))
        else:
            paths.append(path)

    def missing(item: str, reason: str) -> None:
        if not report_missing:
            raise ValueError(f"{reason}: {item!r}")
        skipped.append((item, reason))

    for item in items:
        if os.path.isfile(item):
            paths.append(item)  # named explicitly: used whatever its name
        elif os.path.isdir(item):
            for dirpath, dirnames, filenames in os.walk(item, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not folder_skip_reason(os.path.join(dirpath, d)))
                for filename in sorted(filenames):
                    consider(os.path.join(dirpath, filename))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                missing(item, "no file matches this pattern")
            for match in matches:
                consider(match)
        elif os.path.islink(item) or os.path.exists(item):  # a broken link, a FIFO, a device: never opened
            missing(item, skip_reason(item) or "cannot be read")
        else:
            missing(item, "image file or folder not found")
    return paths, skipped
