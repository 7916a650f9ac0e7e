"""What a file is, judged without decoding it and without TensorFlow: the image format its first
bytes announce, and why a file or folder met in a dataset is not used (hidden, a broken link, a FIFO
or device, not an image, a notebook's or the OS's own folder). Listing a folder or checking a label
file needs only this, so a wrong path fails before TensorFlow is imported.

Examples:
    >>> image_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    'PNG'
"""

from __future__ import annotations

import importlib.util
import os
import stat

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".jxl", ".tif", ".tiff", ".heic", ".heif", ".avif")
# A file is used for what its first bytes say it is, whatever its name (a WebP named .jpg is used).
# TensorFlow decodes all of these but TIFF, HEIC (the iPhone's default) and AVIF, which are read
# through Pillow (`PILLOW_FORMATS`) when it can: TIFF with Pillow, AVIF with a Pillow built with it
# (PyPI's wheels are), HEIC with pillow-heif (the `heif` extra).
FORMAT_NAMES = "JPEG, PNG, GIF, BMP, WebP, JPEG XL, TIFF, HEIC, AVIF"
PILLOW_FORMATS = ("TIFF", "HEIC", "AVIF")
_HEIC_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def image_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce ("JPEG", "PNG", "GIF", "BMP", "WebP",
    "JPEG XL", "TIFF", "HEIC", "AVIF"), or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":  # an ISO media file: its brand says which
        if head[8:12] in (b"avif", b"avis"):
            return "AVIF"
        if head[8:12] in _HEIC_BRANDS:
            return "HEIC"
    return None


def pillow_missing() -> bool:
    """Whether Pillow (which reads TIFF) is not installed."""
    return importlib.util.find_spec("PIL") is None


def unreadable(kind: str | None) -> str | None:
    """Why a file of format `kind` cannot be read here (with what to install), or None."""
    if kind not in PILLOW_FORMATS:
        return None
    if pillow_missing():
        return f"{kind} image: TensorFlow does not decode {kind}; `pip install pillow` to use it"
    if kind == "HEIC" and importlib.util.find_spec("pillow_heif") is None:
        return "HEIC image (the iPhone's default): `pip install \"tl_keras[heif]\"` (pillow-heif) to use it"
    if kind == "AVIF":
        from PIL import features

        if not features.check("avif"):
            return "AVIF image: this Pillow is built without AVIF; `pip install -U pillow` (PyPI's wheels read it) to use it"
    return None


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
    if unreadable(kind):  # TIFF, HEIC, AVIF without what reads them: the reason names what to install
        return unreadable(kind)
    if kind is None and not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file type (neither its content nor its extension is {FORMAT_NAMES.replace(', AVIF', ' or AVIF')})"
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
