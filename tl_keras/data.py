"""Image folders -> checked file lists -> tf.data pipelines. Imports nothing from training or export.

A dataset folder holds one subfolder per class, or `train/`, `val/` (or `validation/`) and optionally
`test/` subfolders of that shape. Every file is accounted for: each one found is either used or listed
in `ImageFolder.skipped` with the reason, so `num_used + len(skipped) == num_found`.

Example:

>>> from tl_keras.data import load_image_folder
>>> folder = load_image_folder("../shared/assets/datasets/hymenoptera", image_size=96)
>>> folder.class_names, len(folder.train) + len(folder.skipped) >= 244
(['ants', 'bees'], True)
>>> train_ds = folder.dataset("train", batch_size=32, training=True)
"""

from __future__ import annotations

import dataclasses
import glob
import os
import random
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tl_keras.checks import require_int
from tl_keras.augment import StrongAugment, augment_image, augment_policy

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".jxl", ".tif", ".tiff")
# A file is used for what its first bytes say it is, whatever its name (a WebP named .jpg is used).
# TensorFlow decodes all of these but TIFF, which is read through Pillow when it is installed.
FORMAT_NAMES = "JPEG, PNG, GIF, BMP, WebP, JPEG XL, TIFF"
VAL_DIR_NAMES = ("val", "validation", "valid")
# Images with fewer distinct colours than this (on a 64x64 nearest-neighbour thumbnail) are kept but
# flagged: photographs have hundreds; web placeholders, icons and blank frames have a handful.
FEW_COLOURS = 64
# Decoded, resized images are kept in memory up to this many bytes; past it, files are decoded anew
# each epoch by a parallel tf.data pipeline.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3
# Images with a side under MIN_SIDE carry nothing to classify; images over MAX_PIXELS (read from the
# header, before decoding) would take gigabytes to decode: both are skipped and reported.
MIN_SIDE = 8
MAX_PIXELS = 100 * 10**6


@dataclasses.dataclass(frozen=True)
class Sample:
    path: str
    label: int | tuple[int, ...]  # a class index; for multi-label data, one 0/1 flag per class


def has_class(sample: Sample, label: int) -> bool:
    """Whether `sample` is labelled with class `label` (its class, or one of its multi-label flags)."""
    return bool(sample.label[label]) if isinstance(sample.label, tuple) else sample.label == label


@dataclasses.dataclass
class Split:
    """The usable images of one split: file paths, labels and (when cached) decoded pixels."""

    samples: list[Sample]
    images: np.ndarray | None = None  # uint8 [n, size, size, 3] when held in memory

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """int32 `[n]` class indices, or for multi-label data float32 `[n, classes]` 0/1 flags."""
        if self.samples and isinstance(self.samples[0].label, tuple):
            return np.array([s.label for s in self.samples], dtype=np.float32)
        return np.array([s.label for s in self.samples], dtype=np.int32)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.samples]


@dataclasses.dataclass
class ImageFolder:
    """A scanned, checked image folder. Build it with `load_image_folder`.

    Attributes:
        root: the folder given.
        class_names: class folder names, sorted; index = label.
        image_size: the size images are resized to.
        crop_to_aspect_ratio: whether each image was cut to its centred square before the resize
            (aspect kept) rather than squeezed whole (see `resize_uint8`).
        splits: `"train"`, `"val"` and maybe `"test"` -> `Split`.
        skipped: `(path, reason)` for every file found but not used.
        warnings: `(path, message)` for files used but worth a look (e.g. placeholders).
        num_found: every file found under the class folders.
        validation_source: `"folder"` (a val/ folder) or `"split"` (a seeded split of train).
    """

    root: str
    class_names: list[str]
    image_size: int
    splits: dict[str, Split]
    skipped: list[tuple[str, str]]
    warnings: list[tuple[str, str]]
    num_found: int
    validation_source: str
    seed: int
    crop_to_aspect_ratio: bool = True

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def num_used(self) -> int:
        return sum(len(s) for s in self.splits.values())

    @property
    def multi_label(self) -> bool:
        """Whether an image may have several labels (a label file with `a;b` labels or 0/1 columns)."""
        return bool(self.train.samples) and isinstance(self.train.samples[0].label, tuple)

    def dataset(
        self,
        split: str = "train",
        *,
        batch_size: int = 32,
        training: bool = False,
        augment: bool | str = True,
        shuffle: bool | None = None,
    ) -> tf.data.Dataset:
        """A batched `tf.data.Dataset` of `(float32 images 0-255 [b, s, s, 3], int32 labels [b])`.

        With `training=True` the data is shuffled each epoch (seeded; `shuffle=False` keeps file
        order) and augmented by the policy `augment` (`"light"` or True: horizontal flip, a random
        crop of 80-100% of the side; `"strong"`: also RandAugment, see `tl_keras.augment`; `"none"`
        or False: not augmented), with new random draws on every pass; evaluation data is neither.
        The batch mixes of `"strong"` (MixUp, CutMix) are not applied here: see
        `tl_keras.augment.mix_batches`.
        """
        if split not in self.splits:
            raise ValueError(f"`split` must be one of {sorted(self.splits)}. Received: split={split!r}")
        return make_dataset(
            self.splits[split], self.image_size, batch_size=batch_size, training=training,
            augment=augment, shuffle=shuffle, seed=self.seed, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
        )

    def folds(self, k: int) -> list["ImageFolder"]:
        """`k` copies of this folder for k-fold cross-validation: the training and validation images
        pooled, dealt into `k` stratified folds (seeded), each fold the `val` split of one copy and
        the rest its `train`. A `test` split stays as it is. Decoded images are shared, not re-read.
        """
        require_int("folds", k, 2)
        if self.multi_label:
            raise ValueError("k-fold cross-validation deals single-label classes into folds; this data is "
                             "multi-label. Train once, or hold out a split in the label file.")
        pool = _concat(self.train, self.val)
        smallest = min(np.bincount(pool.labels, minlength=len(self.class_names)))
        if smallest < k:
            raise ValueError(
                f"`folds={k}` needs at least {k} images of every class; the smallest class has {smallest}. "
                "Use fewer folds."
            )
        rng = random.Random(self.seed)
        fold_of = np.zeros(len(pool), np.int64)
        for label in range(len(self.class_names)):
            members = [i for i, sample in enumerate(pool.samples) if sample.label == label]
            rng.shuffle(members)
            for rank, i in enumerate(members):
                fold_of[i] = rank % k
        folders = []
        for fold in range(k):
            train = [s for s, f in zip(pool.samples, fold_of) if f != fold]
            val = [s for s, f in zip(pool.samples, fold_of) if f == fold]
            splits = {"train": _subset(pool, train), "val": _subset(pool, val)}
            if "test" in self.splits:
                splits["test"] = self.splits["test"]
            folders.append(dataclasses.replace(self, splits=splits, validation_source=f"fold {fold + 1} of {k}"))
        return folders

    def summary(self) -> str:
        lines = [f"{self.root}: {len(self.class_names)} classes ({', '.join(self.class_names)})"]
        lines.append(
            "  " + ", ".join(f"{name} {len(split)} images" for name, split in self.splits.items())
            + f" (validation from {self.validation_source})"
        )
        lines.append(f"  found {self.num_found} files, used {self.num_used}, skipped {len(self.skipped)}")
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped]
        lines += [f"  warning {path}: {message}" for path, message in self.warnings]
        return "\n".join(lines)


def _visible(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def _class_dirs(folder: str) -> list[str]:
    return [d for d in _visible(os.listdir(folder)) if os.path.isdir(os.path.join(folder, d))]


def _list_files(folder: str, class_names: Sequence[str]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """All files under each class folder (recursively): candidates, and non-image files skipped."""
    samples, skipped = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames.sort()
            for filename in sorted(filenames):
                path = os.path.join(dirpath, filename)
                reason = skip_reason(path)
                if reason:
                    skipped.append((path, reason))
                else:
                    samples.append(Sample(path, label))
    return samples, skipped


def image_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce ("JPEG", "PNG", "GIF", "BMP", "WebP",
    "JPEG XL", "TIFF"), or None."""
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
    return None


def _pillow_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("PIL") is None


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
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    kind = image_format(head)
    if kind == "TIFF" and _pillow_missing():
        return "TIFF image: TensorFlow does not decode TIFF; `pip install pillow` to use it"
    if kind is None and not name.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file type (neither its content nor its extension is {FORMAT_NAMES.replace(', TIFF', ' or TIFF')})"
    return None


def _decode_tiff(raw: bytes) -> np.ndarray:
    """A TIFF's first page as uint8 RGB, through Pillow."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            return np.asarray(image.convert("RGB"), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot be decoded as a TIFF image ({err})") from err


def decode_file(raw: bytes, image_size: int | None = None, crop_to_aspect_ratio: bool = True) -> np.ndarray:
    """Eagerly decodes an image file's bytes as `decode_image` does, TIFF included (through Pillow).

    Raises:
        ValueError: the bytes are no image tl_keras reads, or TIFF without Pillow.
    """
    if image_format(raw[:16]) == "TIFF":
        if _pillow_missing():
            raise ValueError("TIFF image: TensorFlow does not decode TIFF; `pip install pillow` to use it")
        image = _decode_tiff(raw)
        if image_size is None:
            return image
        return resize_uint8(image, image_size, crop_to_aspect_ratio).numpy()
    try:
        return decode_image(raw, image_size, crop_to_aspect_ratio).numpy()
    except tf.errors.OpError as err:
        raise ValueError(f"cannot be decoded as an image ({_tf_message(err)})") from err


def decode_image(contents: tf.Tensor, image_size: int | None = None, crop_to_aspect_ratio: bool = True) -> tf.Tensor:
    """Decodes JPEG/PNG/BMP/GIF/WebP/JPEG XL bytes to uint8 RGB in the graph (grayscale and RGBA
    become RGB; a GIF gives its first frame), optionally resized to `image_size` squared as
    `resize_uint8` does. TIFF needs `decode_file` (eager, through Pillow)."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image if image_size is None else resize_uint8(image, image_size, crop_to_aspect_ratio)


def resize_uint8(image, image_size: int, crop_to_aspect_ratio: bool = True) -> tf.Tensor:
    """The one resize every image goes through (files, tf.data elements, serving bytes): with
    `crop_to_aspect_ratio` (the default) the image is first cut to its centred square, the full short
    side (`centre_square`), so shapes keep their proportions; else it is squeezed whole. Then bilinear,
    antialiased, to `image_size` squared, rounded back to uint8."""
    if crop_to_aspect_ratio:
        image = centre_square(image)
    resized = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def centre_square(image) -> tf.Tensor:
    """The centred square of an image (`[h, w, c]` or `[b, h, w, c]`) whose side is the short side:
    the box `keras.layers.Resizing(crop_to_aspect_ratio=True)` takes, the classifier's `resize` layer,
    so raw images given to a model or its export are framed as the training images were."""
    if isinstance(image, np.ndarray):  # a decoded file: sliced in NumPy (eager TF ops cost ~2 ms an image)
        height, width = image.shape[-3], image.shape[-2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return image[..., top:top + side, left:left + side, :]
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[..., top:top + side, left:left + side, :]


def require_fraction(validation_split: float) -> None:
    """`validation_split` must be in (0, 1): checked before any image is read."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1). Received: validation_split={validation_split!r}")


def decode_streamed(contents: tf.Tensor, image_size: int, crop_to_aspect_ratio: bool = True) -> tf.Tensor:
    """`decode_image` for input pipelines that read files each epoch: TIFF (by its first bytes) goes
    through Pillow in a `tf.numpy_function`, which serving signatures cannot hold."""
    head = tf.strings.substr(contents, 0, 4)
    is_tiff = tf.logical_or(tf.equal(head, b"II*\x00"), tf.equal(head, b"MM\x00*"))

    def tiff():
        image = tf.numpy_function(lambda raw: decode_file(bytes(raw), image_size, crop_to_aspect_ratio), [contents], tf.uint8)
        image.set_shape([image_size, image_size, 3])
        return image

    return tf.cond(is_tiff, tiff, lambda: decode_image(contents, image_size, crop_to_aspect_ratio))


def _tf_message(err: tf.errors.OpError) -> str:
    """TensorFlow's error text without its `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", err.message or type(err).__name__)
    return text.split(" [Op:")[0].strip().splitlines()[0]


def _colour_count(image: np.ndarray) -> int:
    """Distinct colours in a 64x64 nearest-neighbour thumbnail (the pixels `tf.image.resize(...,
    "nearest")` picks), in NumPy: per image, TensorFlow's eager ops cost five times the work."""
    height, width = image.shape[0], image.shape[1]
    rows = np.minimum(((np.arange(64) + 0.5) * (height / 64)).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(64) + 0.5) * (width / 64)).astype(np.int64), width - 1)
    thumb = np.asarray(image)[rows[:, None], cols[None, :]].astype(np.int32)
    return len(np.unique(thumb[..., 0] * 65536 + thumb[..., 1] * 256 + thumb[..., 2]))


def declared_size(contents: bytes) -> tuple[int, int] | None:
    """`(width, height)` from an image's header, without decoding it (None if not recognised)."""
    try:
        if contents[:8] == b"\x89PNG\r\n\x1a\n" and contents[12:16] == b"IHDR":
            return struct.unpack(">II", contents[16:24])
        if contents[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", contents[6:10])
        if contents[:2] == b"BM":
            width, height = struct.unpack("<ii", contents[18:26])
            return abs(width), abs(height)
        if contents[:3] == b"\xff\xd8\xff":
            height, width, _ = tf.image.extract_jpeg_shape(contents).numpy().tolist()
            return width, height
    except (struct.error, tf.errors.OpError):
        return None
    return None


def exif_orientation(contents: bytes) -> int:
    """A JPEG's EXIF orientation tag (1 = upright; 2-8 = mirrored and/or rotated), 1 when absent."""
    if contents[:2] != b"\xff\xd8":
        return 1
    try:
        i = 2
        while i + 4 <= len(contents) and contents[i] == 0xFF:
            marker, length = contents[i + 1], struct.unpack(">H", contents[i + 2:i + 4])[0]
            if marker == 0xDA:  # start of the image data: no more metadata
                return 1
            if marker == 0xE1 and contents[i + 4:i + 10] == b"Exif\0\0":
                tiff = contents[i + 10:i + 2 + length]
                order = "<" if tiff[:2] == b"II" else ">"
                ifd = struct.unpack(order + "I", tiff[4:8])[0]
                for k in range(struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]):
                    entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
                    if struct.unpack(order + "H", entry[:2])[0] == 0x0112:
                        return struct.unpack(order + "H", entry[8:10])[0]
                return 1
            i += 2 + length
    except struct.error:
        return 1
    return 1


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


def check_images(
    samples: Sequence[Sample], image_size: int, *, keep: bool = True, workers: int | None = None,
    crop_to_aspect_ratio: bool = True,
) -> tuple[Split, list[tuple[str, str]], list[tuple[str, str]]]:
    """Decodes every file once (in parallel); returns the usable ones, the skipped, and the warnings.

    With `keep=True` the resized pixels are returned in the `Split` so no epoch decodes again.
    """
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda s: _check_one(s.path, image_size, keep, crop_to_aspect_ratio), samples))
    good, pixels, skipped, warnings = [], [], [], []
    for sample, (image, error, warning) in zip(samples, results):
        if error:
            skipped.append((sample.path, error))
            continue
        good.append(sample)
        if keep:
            pixels.append(image)
        if warning:
            warnings.append((sample.path, warning))
    images = None
    if keep:
        images = np.stack(pixels) if pixels else np.zeros((0, image_size, image_size, 3), np.uint8)
    return Split(good, images), skipped, warnings


def _by_label(samples: list[Sample]) -> dict[int, list[Sample]]:
    """Samples grouped by class index, in order of first appearance."""
    groups: dict[int, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.label, []).append(sample)
    return groups


def _at_most_per_class(samples: list[Sample], limit: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    by_label = _by_label(samples)
    kept = set()
    for group in by_label.values():
        kept.update(s.path for s in (rng.sample(group, limit) if len(group) > limit else group))
    return [s for s in samples if s.path in kept]


def _stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    rng = random.Random(seed)
    by_label = _by_label(samples)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: s.path)
        rng.shuffle(group)
        n_val = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
        val += group[:n_val]
        train += group[n_val:]
    return train, val


def load_image_folder(
    data_dir: str,
    *,
    image_size: int = 224,
    crop_to_aspect_ratio: bool = True,
    validation_split: float = 0.2,
    seed: int = 42,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    max_per_class: int | None = None,
) -> ImageFolder:
    """Scans and checks an image folder; see the module docstring for the layouts accepted.

    Args:
        data_dir: the dataset folder.
        image_size: images are resized to `image_size` squared. Defaults to 224.
        crop_to_aspect_ratio: cut each image to its centred square before the resize (aspect kept,
            the edges of a long side lost), as ImageNet backbones saw their training images; False
            squeezes the whole image. Defaults to True.
        validation_split: fraction of each class held out for validation when there is no `val/`
            folder (seeded, stratified, deterministic). Defaults to 0.2.
        seed: seed of the split and of shuffling/augmentation. Defaults to 42.
        memory_limit: keep decoded images in memory if they fit in this many bytes. Defaults to 2 GiB.
        max_per_class: decode at most this many files per class and split, drawn at random (seeded),
            for a quick look at a large folder; `num_found` then counts the files drawn. Defaults to
            None (all files).

    Raises:
        ValueError: no such folder, fewer than two classes, a class without usable images, or `val/`
            classes that differ from `train/`'s.
    """
    split_dirs, class_names = _layout(data_dir)
    require_fraction(validation_split)

    candidates, skipped = {}, []
    num_found = 0
    for split, folder in split_dirs.items():
        samples, split_skipped = _list_files(folder, class_names)
        if max_per_class is not None:
            samples = _at_most_per_class(samples, max_per_class, seed)
        candidates[split] = samples
        skipped += split_skipped
        num_found += len(samples) + len(split_skipped)
    return assemble(data_dir, class_names, candidates, skipped, num_found, image_size=image_size,
                    crop_to_aspect_ratio=crop_to_aspect_ratio, validation_split=validation_split, seed=seed, memory_limit=memory_limit,
                    where=lambda name: os.path.join(split_dirs["train"], name))


def assemble(root: str, class_names: list[str], candidates: dict[str, list[Sample]], skipped: list[tuple[str, str]],
             num_found: int, *, image_size: int, validation_split: float, seed: int, memory_limit: int,
             where: Callable[[str], str], fix: str = "add images or remove the folder",
             crop_to_aspect_ratio: bool = True) -> ImageFolder:
    """Decodes and checks the candidate files of each split (`check_images`), makes sure every class
    kept a training image (else an error naming `where(class_name)` and the `fix`), splits off validation
    images when there is no `val` split, and returns the `ImageFolder`."""
    total = sum(len(v) for v in candidates.values())
    keep = total * image_size * image_size * 3 <= memory_limit
    splits, warnings = {}, []
    for split, samples in candidates.items():
        checked, bad, warn = check_images(samples, image_size, keep=keep, crop_to_aspect_ratio=crop_to_aspect_ratio)
        splits[split] = checked
        skipped += bad
        warnings += warn
    label_of = {s.path: s.label for samples in candidates.values() for s in samples}
    return _folder(root, class_names, splits, skipped, warnings, num_found, image_size=image_size,
                   validation_split=validation_split, seed=seed, where=where, fix=fix, label_of=label_of,
                   crop_to_aspect_ratio=crop_to_aspect_ratio)


def assemble_in_memory(root: str, class_names: list[str], candidates: dict[str, list[Sample]], pixels: dict[str, np.ndarray],
                       *, image_size: int, validation_split: float, seed: int, crop_to_aspect_ratio: bool) -> ImageFolder:
    """`assemble` for images already decoded and resized (`pixels[sample.path]`), e.g. read from a
    tf.data pipeline: nothing is skipped."""
    splits = {split: Split(samples, np.stack([pixels[s.path] for s in samples]) if samples
                           else np.zeros((0, image_size, image_size, 3), np.uint8))
              for split, samples in candidates.items()}
    return _folder(root, class_names, splits, [], [], sum(len(v) for v in candidates.values()), image_size=image_size,
                   validation_split=validation_split, seed=seed, where=lambda name: root,
                   fix="add elements with that label", label_of={}, crop_to_aspect_ratio=crop_to_aspect_ratio)


def _folder(root: str, class_names: list[str], splits: dict[str, Split], skipped: list, warnings: list, num_found: int,
            *, image_size: int, validation_split: float, seed: int, where: Callable[[str], str], fix: str,
            label_of: dict[str, int], crop_to_aspect_ratio: bool) -> ImageFolder:
    """The class check, the validation split and the `ImageFolder`, for both `assemble`s."""
    for label, name in enumerate(class_names):
        if not any(has_class(s, label) for s in splits["train"].samples):
            count = sum(1 for p, _ in skipped if label_of.get(p) == label or os.sep + name + os.sep in p)
            raise ValueError(f"Class {name!r} has no usable image in {where(name)!r}"
                             + (f" ({count} skipped)" if skipped else "") + f": {fix}.")
    validation_source = "folder"
    if "val" not in splits:
        validation_source = "split"
        train, val = _stratified_split(splits["train"].samples, validation_split, seed)
        splits["train"], splits["val"] = _subset(splits["train"], train), _subset(splits["train"], val)
    order = ["train", "val"] + (["test"] if "test" in splits else [])
    return ImageFolder(
        root=root, class_names=class_names, image_size=image_size,
        splits={k: splits[k] for k in order}, skipped=skipped, warnings=warnings,
        num_found=num_found, validation_source=validation_source, seed=seed, crop_to_aspect_ratio=crop_to_aspect_ratio,
    )


def _layout(data_dir: str) -> tuple[dict[str, str], list[str]]:
    """The split folders of a dataset folder and its class names, with the structural checks."""
    if not os.path.isdir(data_dir):
        raise ValueError(f"`data_dir` must be a folder of class subfolders. Received: data_dir={data_dir!r} (not a folder)")
    top = _class_dirs(data_dir)
    split_dirs = {"train": data_dir}
    if "train" in top:
        split_dirs = {"train": _train_dir(data_dir)}
        val_name = next((n for n in VAL_DIR_NAMES if n in top), None)
        if val_name:
            split_dirs["val"] = os.path.join(data_dir, val_name)
        if "test" in top:
            split_dirs["test"] = os.path.join(data_dir, "test")
    class_names = _class_dirs(split_dirs["train"])
    if len(class_names) < 2:
        raise ValueError(
            f"{split_dirs['train']!r} must hold one subfolder per class, at least 2 classes. "
            f"Received: {len(class_names)} ({', '.join(class_names) or 'none'})."
        )
    for split, folder in split_dirs.items():
        if split != "train" and _class_dirs(folder) != class_names:
            raise ValueError(
                f"The classes of {folder!r} ({', '.join(_class_dirs(folder))}) differ from those of "
                f"{split_dirs['train']!r} ({', '.join(class_names)}): give every split the same class folders."
            )
    return split_dirs, class_names


def check_layout(data_dir: str) -> list[str]:
    """Checks a dataset folder by listing only (nothing is decoded, so it is quick on any size):
    the layout, at least two classes, the same classes in every split, and at least one candidate
    image in each training class. Returns the class names. `tl_keras.train` runs it before it
    resolves (or downloads) a backbone, so a wrong folder is reported first.

    Raises:
        ValueError: the problem, naming the folder and the fix.
    """
    split_dirs, class_names = _layout(data_dir)
    samples, _ = _list_files(split_dirs["train"], class_names)
    counts = np.bincount([s.label for s in samples], minlength=len(class_names))
    for name, count in zip(class_names, counts):
        if not count:
            raise ValueError(f"Class {name!r} has no image file in {os.path.join(split_dirs['train'], name)!r}: "
                             "add images or remove the folder.")
    return class_names


def _concat(a: Split, b: Split) -> Split:
    images = None if a.images is None or b.images is None else np.concatenate([a.images, b.images])
    return Split(a.samples + b.samples, images)


def _train_dir(data_dir: str) -> str:
    """Where a dataset folder's training files are: its `train/` subfolder, or the folder itself."""
    has_train = os.path.isdir(data_dir) and "train" in _class_dirs(data_dir)
    return os.path.join(data_dir, "train") if has_train else data_dir


def load_data(source, **kwargs) -> ImageFolder:
    """An image folder (`load_image_folder`), a label source: a `.csv` file, a pandas DataFrame or a
    list of `(path, label[, split])` rows (`tl_keras.label_files.load_label_file`), or tf.data
    datasets (`tl_keras.tfdata.DatasetSource`), loaded and checked with `kwargs`; an `ImageFolder` is
    returned as it is."""
    from tl_keras.label_files import is_label_source, load_label_file
    from tl_keras.tfdata import DatasetSource, load_datasets

    if isinstance(source, ImageFolder):
        return source
    if isinstance(source, DatasetSource):
        return load_datasets(source, **kwargs)
    if is_label_source(source):
        return load_label_file(source, **kwargs)
    return load_image_folder(source, **kwargs)


def split_arrays(data, class_names: Sequence[str], image_size: int, split: str | None = None,
                 limit: int | None = None, seed: int = 0, *, crop_to_aspect_ratio: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, labels) of one split of a data source (`load_data`) at `image_size` and framing,
    for checking an exported model: `split` None is test, else val; at most `limit` images (a seeded
    draw). The source's classes must be `class_names`."""
    folder = load_data(data, image_size=image_size, crop_to_aspect_ratio=crop_to_aspect_ratio, validation_split=0.5)
    if list(folder.class_names) != list(class_names):
        raise ValueError(f"The classes of {data!r} ({', '.join(folder.class_names)}) differ from the model's ({', '.join(class_names)}).")
    split = split or ("test" if "test" in folder.splits else "val")
    if split not in folder.splits:
        raise ValueError(f"{data!r} has no {split!r} split; it has {sorted(folder.splits)}.")
    pairs = [(x.numpy(), y.numpy()) for x, y in folder.dataset(split, batch_size=64)]
    images, targets = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
    if limit is not None and limit < len(images):
        pick = np.sort(np.random.default_rng(seed).choice(len(images), limit, replace=False))
        images, targets = images[pick], targets[pick]
    return images, targets


def check_source(source) -> list[str]:
    """`check_layout` for a folder, `tl_keras.label_files.check_label_rows` for a label source: the
    checks that need no decoding. Returns the class names."""
    from tl_keras.label_files import check_label_rows, is_label_source
    from tl_keras.tfdata import DatasetSource

    if isinstance(source, (ImageFolder, DatasetSource)):  # a DatasetSource checks itself when it is made
        return list(source.class_names)
    return check_label_rows(source) if is_label_source(source) else check_layout(source)


def source_name(source) -> str:
    """A short name for a data source, for output folders: the folder's name, a label file's folder's
    name, else "model"."""
    root = getattr(source, "root", source)
    if not isinstance(root, str) or not os.path.exists(root):
        return "model"
    if os.path.isfile(root):
        root = os.path.dirname(os.path.abspath(root))
    return os.path.basename(os.path.normpath(root)) or "model"


def count_images(data_dir) -> dict[str, int]:
    """Image files per class in the training files (`train/`, or the folder itself; a label source's
    training rows), by listing only:
    nothing is decoded, so it is cheap on any size of dataset. Hidden and non-image files do not count."""
    from tl_keras.label_files import count_rows, is_label_source
    from tl_keras.tfdata import DatasetSource, count_labels

    if isinstance(data_dir, DatasetSource):
        return count_labels(data_dir)
    if is_label_source(data_dir):
        return count_rows(data_dir)
    train_dir = _train_dir(data_dir)
    class_names = _class_dirs(train_dir) if os.path.isdir(train_dir) else []
    if len(class_names) < 2:
        raise ValueError(f"{train_dir!r} must hold one subfolder per class, at least 2 classes.")
    samples, _ = _list_files(train_dir, class_names)
    counts = np.bincount([s.label for s in samples], minlength=len(class_names))
    return {name: int(n) for name, n in zip(class_names, counts)}


def _subset(split: Split, samples: list[Sample]) -> Split:
    if split.images is None:
        return Split(samples)
    index = {s.path: i for i, s in enumerate(split.samples)}
    return Split(samples, split.images[[index[s.path] for s in samples]] if samples else split.images[:0])


EPOCH_ATTRIBUTE = "_tl_keras_epoch"


def epoch_variable(dataset: tf.data.Dataset) -> tf.Variable | None:
    """The epoch counter of a dataset built by `make_dataset(training=True)` (None for others).

    Each pass over such a dataset draws its order and augmentation from `(seed, epoch)` and then
    advances the counter. Setting it before a pass (`tl_keras.fine_tune` does, at every epoch's start)
    makes epoch `e` see the same data whatever ran before: a resumed run repeats an uninterrupted one.
    """
    return getattr(dataset, EPOCH_ATTRIBUTE, None)


def epoch_indices(n: int, seed: int, shuffle: bool, epoch: tf.Variable) -> tf.data.Dataset:
    """`(index, epoch)` for one pass over `n` items: a permutation drawn from `(seed, epoch)` (or
    `0..n-1`), then the counter `epoch` advances. Stateless, so a pass depends only on its epoch."""

    def one_pass(_):
        e = epoch.assign_add(1) - 1
        if shuffle:
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), e]))
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(n)
        return tf.data.Dataset.from_tensor_slices((tf.cast(order, tf.int64), tf.fill([n], e)))

    return tf.data.Dataset.from_tensors(0).flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(n))


PREFETCH_BATCHES = 2


def finish(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batch, shard by data under tf.distribute, keep element order deterministic, prefetch.

    tf.data's autotuning is off: Keras makes a new iterator every epoch, and with autotuning on,
    tearing the last one down held up the first step of most phase-2 epochs (1.3 s each in
    `benchmarks/epoch_stalls.py`, up to 4-5 s in whole runs). Parallel maps asked for `AUTOTUNE`
    then run on min(16, cores) threads, and `PREFETCH_BATCHES` batches are prepared ahead."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    options.autotune.enabled = False
    return ds.batch(batch_size).with_options(options).prefetch(PREFETCH_BATCHES)


def make_dataset(
    split: Split,
    image_size: int,
    *,
    batch_size: int = 32,
    training: bool = False,
    augment: bool | str = True,
    shuffle: bool | None = None,
    seed: int = 42,
    crop_to_aspect_ratio: bool = True,
) -> tf.data.Dataset:
    """Builds the tf.data pipeline for a split (see `ImageFolder.dataset`).

    Training datasets carry an epoch counter (`epoch_variable`): their order and augmentation are a
    function of `(seed, epoch)` only.
    """
    require_int("batch_size", batch_size, 1)
    labels = split.labels
    if shuffle is None:
        shuffle = training
    if not training and not shuffle:  # evaluation: file order, no augmentation
        if split.images is not None:
            ds = tf.data.Dataset.from_tensor_slices((split.images, labels))
        else:
            ds = tf.data.Dataset.from_tensor_slices((split.paths, labels)).map(
                lambda p, y: (decode_streamed(tf.io.read_file(p), image_size, crop_to_aspect_ratio), y), num_parallel_calls=tf.data.AUTOTUNE)
        return finish(ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE), batch_size)

    if split.images is not None:
        pixels = tf.constant(split.images)

        def load(i):
            return tf.gather(pixels, i)
    else:
        paths = tf.constant(split.paths if split.paths else [""], tf.string)

        def load(i):
            return decode_streamed(tf.io.read_file(tf.gather(paths, i)), image_size, crop_to_aspect_ratio)

    label_table = tf.constant(labels)
    policy = augment_policy(augment) if training else "none"

    def element(i, e):
        image = augment_image(tf.cast(load(i), tf.float32), tf.cast(tf.stack([seed + 7919 * e, i]), tf.int32), image_size, policy)
        return image, tf.gather(label_table, i), i, e

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    ds = epoch_indices(len(split), seed, shuffle, epoch).map(element, num_parallel_calls=tf.data.AUTOTUNE)
    if policy == "strong":
        ds = ds.map(StrongAugment(seed))  # one call at a time: its calls share a random state
    ds = finish(ds.map(lambda image, label, *_: (image, label)), batch_size)
    setattr(ds, EPOCH_ATTRIBUTE, epoch)
    return ds


def _read_image(path: str, image_size: int | None, crop_to_aspect_ratio: bool) -> np.ndarray:
    if not os.path.isfile(path):
        reason = skip_reason(path) if os.path.islink(path) else None
        raise ValueError(f"Image file not found: {path!r}" + (f" ({reason})" if reason else ""))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ValueError(f"{path!r} cannot be read ({err.strerror or err})") from err
    size = declared_size(raw)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"{path!r} is too large: {size[0]}x{size[1]} px is over {MAX_PIXELS // 10**6} megapixels; downscale it.")
    try:
        return decode_file(raw, image_size, crop_to_aspect_ratio)
    except ValueError as err:
        raise ValueError(f"{path!r} {err}; tl_keras reads {FORMAT_NAMES}") from err


def read_images(paths: Sequence[str], image_size: int | None = None, workers: int | None = None,
                crop_to_aspect_ratio: bool = True) -> list[np.ndarray]:
    """Reads and decodes image files to uint8 RGB arrays (in parallel), with a clear error per bad file.

    With `image_size` every image is resized to that square exactly as training data is (framed by
    `crop_to_aspect_ratio`, see `resize_uint8`), so a list of files becomes one batchable stack;
    without it images keep their own size.
    """
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"Image file not found: {path!r}")
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(lambda p: _read_image(p, image_size, crop_to_aspect_ratio), paths))


def try_read_images(
    paths: Sequence[str], image_size: int | None = None, workers: int | None = None, crop_to_aspect_ratio: bool = True,
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Like `read_images`, but a bad file does not stop the rest: returns `(images, errors)`, where a
    bad file's image is None and its error the reason, and a good file's error is None."""

    def attempt(path: str):
        try:
            return _read_image(path, image_size, crop_to_aspect_ratio), None
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
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    consider(os.path.join(dirpath, filename))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if os.path.isfile(m))
            if not matches:
                missing(item, "no file matches this pattern")
            for match in matches:
                consider(match)
        elif os.path.islink(item):
            missing(item, skip_reason(item) or "cannot be read")
        else:
            missing(item, "image file or folder not found")
    return paths, skipped
