"""Image folders -> checked file lists (`ImageFolder`): listing, checking, splitting, k folds.

A dataset folder holds one subfolder per class, or `train/`, `val/` (or `validation/`) and optionally
`test/` subfolders of that shape. Every file is accounted for: each one found is either used or listed
in `ImageFolder.skipped` with the reason, so `num_used + len(skipped) == num_found`.

Examples:
    >>> from tl_keras.data import load_image_folder
    >>> folder = load_image_folder("../shared/assets/datasets/hymenoptera", image_size=96)
    >>> folder.class_names, len(folder.train) + len(folder.skipped) >= 244
    (['ants', 'bees'], True)
    >>> train_ds = folder.dataset("train", batch_size=32, training=True)
"""

from __future__ import annotations

import dataclasses
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from tl_keras.data.samples import Sample, Split, has_class
from tl_keras.images.sniff import JUNK_FOLDERS, folder_skip_reason, skip_reason
from tl_keras.utils.checks import require_int
from tl_keras.utils.progress import Progress

if TYPE_CHECKING:
    import tensorflow as tf

VAL_DIR_NAMES = ("val", "validation", "valid")
# Decoded, resized images are kept in memory up to this many bytes; past it, files are decoded anew
# each epoch by a parallel tf.data pipeline.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3


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
    exif_orientation: bool = True

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
        crop of 80-100% of the side; `"strong"`: also RandAugment, see `tl_keras.data.augment`; `"none"`
        or False: not augmented), with new random draws on every pass; evaluation data is neither.
        The batch mixes of `"strong"` (MixUp, CutMix) are not applied here: see
        `tl_keras.data.augment.mix_batches`.
        """
        if split not in self.splits:
            raise ValueError(f"`split` must be one of {sorted(self.splits)}. Received: split={split!r}")
        from tl_keras.data.pipeline import (
            make_dataset,  # TensorFlow, imported when a pipeline is made
        )

        return make_dataset(
            self.splits[split], self.image_size, batch_size=batch_size, training=training,
            augment=augment, shuffle=shuffle, seed=self.seed, crop_to_aspect_ratio=self.crop_to_aspect_ratio,
            exif_orientation=self.exif_orientation,
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
        lines += ["  " + line for line in skip_lines(self.skipped)]
        lines += [f"  warning {path}: {message}" for path, message in self.warnings]
        return "\n".join(lines)


def skip_lines(skipped: Sequence[tuple[str, str]], most: int = 5, first: int = 3) -> list[str]:
    """Lines that report skipped files: `skipped PATH: REASON` each, except that a reason met more
    than `most` times is one line with the count and the first `first` paths (a label file listing
    9,222 images that are not there is one line, not 9,222).

    Examples:
        >>> skip_lines([(f"{i}.jpg", "listed in 'labels.csv' but not found") for i in range(7)])
        ["skipped 7 files: listed in 'labels.csv' but not found (the first: 0.jpg, 1.jpg, 2.jpg)"]
    """
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    lines = []
    for path, reason in skipped:
        paths = by_reason[reason]
        if len(paths) <= most:
            lines.append(f"skipped {path}: {reason}")
        elif paths[0] == path:
            lines.append(f"skipped {len(paths)} files: {reason} (the first: {', '.join(paths[:first])})")
    return lines


def _visible(names: Iterable[str]) -> list[str]:
    """Names that can be classes or splits: not hidden, not a notebook's or the system's own folder."""
    return sorted(n for n in names if not n.startswith(".") and n not in JUNK_FOLDERS)


def _class_dirs(folder: str) -> list[str]:
    return [d for d in _visible(os.listdir(folder)) if os.path.isdir(os.path.join(folder, d))]


def _list_files(folder: str, class_names: Sequence[str]) -> tuple[list[Sample], list[tuple[str, str]]]:
    """All files under each class folder (recursively): candidates, and the files and folders skipped
    (non-image and special files; junk, hidden and image-named folders, which are not searched)."""
    samples, skipped = [], []
    with Progress(f"listing {folder}") as bar:
        for label, name in enumerate(class_names):
            _list_class(os.path.join(folder, name), label, samples, skipped, bar)
    return samples, skipped


def _list_class(class_dir: str, label: int, samples: list[Sample], skipped: list, bar: Progress) -> None:
    """`_list_files` for one class folder, recursively: appends to `samples` and `skipped`."""
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        searched = []
        for dirname in sorted(dirnames):
            reason = folder_skip_reason(os.path.join(dirpath, dirname))
            if reason:
                skipped.append((os.path.join(dirpath, dirname), reason))
            else:
                searched.append(dirname)
        dirnames[:] = searched
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            reason = skip_reason(path)
            if reason:
                skipped.append((path, reason))
            else:
                samples.append(Sample(path, label))
            bar.advance()


def require_fraction(validation_split: float) -> None:
    """`validation_split` must be in (0, 1): checked before any image is read."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1). Received: validation_split={validation_split!r}")


def check_images(
    samples: Sequence[Sample], image_size: int, *, keep: bool = True, workers: int | None = None,
    crop_to_aspect_ratio: bool = True, exif_orientation: bool = True,
) -> tuple[Split, list[tuple[str, str]], list[tuple[str, str]]]:
    """Decodes every file once (in parallel); returns the usable ones, the skipped, and the warnings.

    With `keep=True` the resized pixels are returned in the `Split` so no epoch decodes again. Each
    usable sample records the EXIF orientation its pixels are turned by (`Sample.orientation`; all 1
    with `exif_orientation=False`), which a streamed pipeline applies when it decodes the file again.
    """
    # Decoding needs TensorFlow, imported here: listing and checking a folder's layout do not.
    from tl_keras.images.quality import _check_one

    workers = workers or min(8, (os.cpu_count() or 2) * 2)

    def check(sample: Sample):
        result = _check_one(sample.path, image_size, keep, crop_to_aspect_ratio, exif_orientation)
        bar.advance()
        return result

    with Progress("checking and decoding images", len(samples)) as bar, ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(check, samples))
    good, pixels, skipped, warnings = [], [], [], []
    for sample, (image, error, warning, orientation, digest) in zip(samples, results):
        if error:
            skipped.append((sample.path, error))
            continue
        good.append(dataclasses.replace(sample, orientation=orientation, digest=digest))
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
    exif_orientation: bool = True,
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
        exif_orientation: turn each photo upright by its EXIF orientation tag (as phones store
            them: sideways, with a tag), as a viewer shows it. False keeps the stored pixels.
            Defaults to True.

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
                    where=lambda name: os.path.join(split_dirs["train"], name), exif_orientation=exif_orientation)


def assemble(root: str, class_names: list[str], candidates: dict[str, list[Sample]], skipped: list[tuple[str, str]],
             num_found: int, *, image_size: int, validation_split: float, seed: int, memory_limit: int,
             where: Callable[[str], str], fix: str = "add images or remove the folder",
             crop_to_aspect_ratio: bool = True, exif_orientation: bool = True) -> ImageFolder:
    """Decodes and checks the candidate files of each split (`check_images`), makes sure every class
    kept a training image (else an error naming `where(class_name)` and the `fix`), splits off validation
    images when there is no `val` split, and returns the `ImageFolder`."""
    total = sum(len(v) for v in candidates.values())
    keep = total * image_size * image_size * 3 <= memory_limit
    splits, warnings = {}, []
    for split, samples in candidates.items():
        checked, bad, warn = check_images(samples, image_size, keep=keep, crop_to_aspect_ratio=crop_to_aspect_ratio,
                                          exif_orientation=exif_orientation)
        splits[split] = checked
        skipped += bad
        warnings += warn
    label_of = {s.path: s.label for samples in candidates.values() for s in samples}
    return _folder(root, class_names, splits, skipped, warnings, num_found, image_size=image_size,
                   validation_split=validation_split, seed=seed, where=where, fix=fix, label_of=label_of,
                   crop_to_aspect_ratio=crop_to_aspect_ratio, exif_orientation=exif_orientation)


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
            label_of: dict[str, int], crop_to_aspect_ratio: bool, exif_orientation: bool = True) -> ImageFolder:
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
        exif_orientation=exif_orientation,
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


def _subset(split: Split, samples: list[Sample]) -> Split:
    if split.images is None:
        return Split(samples)
    index = {s.path: i for i, s in enumerate(split.samples)}
    return Split(samples, split.images[[index[s.path] for s in samples]] if samples else split.images[:0])


