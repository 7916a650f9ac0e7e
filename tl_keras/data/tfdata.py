"""tf.data input: data that lives in TFRecords or TFDS, given as `(uint8 image, integer label)` elements.

`tl_keras.train(dataset=train_ds, val_dataset=val_ds, class_names=[...])` reads each dataset once,
resizes every image to the backbone's size exactly as image files are resized, and keeps the pixels
in memory (an `ImageFolder` whose paths are `train[i]` / `val[i]`), so both caches, the reports and
the export work as for folders. Without `val_dataset` a seeded, stratified share of `dataset` is
held out. A dataset larger than `memory_limit` once resized is an error that says how to proceed.

Examples:
    >>> import tensorflow_datasets as tfds                                      # doctest: +SKIP
    >>> train_ds, val_ds = tfds.load("tf_flowers", split=["train[:80%]", "train[80%:]"], as_supervised=True)  # doctest: +SKIP
    >>> tl_keras.train(dataset=train_ds, val_dataset=val_ds, class_names=["dandelion", "daisy", "tulips",
    ...                "sunflowers", "roses"])                                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from tl_keras.data.folder import (
    DEFAULT_MEMORY_LIMIT,
    ImageFolder,
    _at_most_per_class,
    assemble_in_memory,
    require_fraction,
)
from tl_keras.data.samples import Sample
from tl_keras.images.codec import resize_uint8


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Training (and optionally validation) `tf.data.Dataset`s of `(uint8 image [h, w, 3], integer
    label)` elements (batched elements are unbatched), and the class names, label `i` -> `class_names[i]`."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    class_names: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.train, tf.data.Dataset):
            raise TypeError(f"`dataset` must be a tf.data.Dataset. Received: {type(self.train).__name__}")
        if self.val is not None and not isinstance(self.val, tf.data.Dataset):
            raise TypeError(f"`val_dataset` must be a tf.data.Dataset. Received: {type(self.val).__name__}")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError("`class_names` must name at least 2 distinct classes, label i -> class_names[i]. "
                             f"Received: class_names={list(self.class_names)!r}")
        for name, ds in (("dataset", self.train), ("val_dataset", self.val)):
            if ds is not None:
                _check_spec(name, ds)

    @property
    def root(self) -> str:
        return "tf.data.Dataset"


def _check_spec(name: str, ds: tf.data.Dataset) -> None:
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"`{name}` must yield (image, label) pairs (e.g. tfds.load(..., as_supervised=True)). "
                         f"Received elements: {spec}")
    image, label = spec
    if image.dtype != tf.uint8 or image.shape.rank not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"`{name}` images must be uint8 RGB [height, width, 3] (0-255; batched is fine): "
                         f"cast or convert them first. Received: {image}")
    if not label.dtype.is_integer:
        raise ValueError(f"`{name}` labels must be integer class indices into class_names. Received: {label}")


def _read(name: str, ds: tf.data.Dataset, image_size: int, num_classes: int, memory_limit: int,
          crop_to_aspect_ratio: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every element, framed and resized to `image_size` as files are (`tl_keras.data.resize_uint8`)."""
    if ds.element_spec[0].shape.rank == 4:
        ds = ds.unbatch()

    def resize(image, label):
        return resize_uint8(image, image_size, crop_to_aspect_ratio), tf.cast(label, tf.int32)

    limit = max(1, memory_limit // (image_size * image_size * 3))
    images, labels = [], []
    for batch_images, batch_labels in ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE).batch(256).prefetch(2):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(len(b) for b in labels) > limit:
            raise ValueError(f"`{name}` holds more than {limit} images, over the memory limit "
                             f"({memory_limit / 2**30:.1f} GiB at {image_size} px): write it out as image files or "
                             "a label file (tl_keras streams those), or pass a subset.")
    if not labels:
        raise ValueError(f"`{name}` is empty.")
    images, labels = np.concatenate(images), np.concatenate(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(f"`{name}` element {int(bad[0])} has label {int(labels[bad[0]])}, outside 0..{num_classes - 1} "
                         f"({num_classes} class_names): {bad.size} such elements.")
    return images, labels


def load_datasets(
    source: DatasetSource,
    *,
    image_size: int = 224,
    crop_to_aspect_ratio: bool = True,
    validation_split: float = 0.2,
    seed: int = 42,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    max_per_class: int | None = None,
    exif_orientation: bool = True,
) -> ImageFolder:
    """Reads a `DatasetSource` into an in-memory `ImageFolder` (arguments as `load_image_folder`'s;
    `exif_orientation` does not apply: tf.data elements are pixels, not files)."""
    require_fraction(validation_split)
    splits = {"train": source.train} if source.val is None else {"train": source.train, "val": source.val}
    candidates, pixels = {}, {}
    for split, ds in splits.items():
        images, labels = _read("dataset" if split == "train" else "val_dataset", ds, image_size,
                               len(source.class_names), memory_limit, crop_to_aspect_ratio)
        samples = [Sample(f"{split}[{i}]", int(label)) for i, label in enumerate(labels)]
        if max_per_class is not None:
            samples = _at_most_per_class(samples, max_per_class, seed)
        candidates[split] = samples
        pixels.update({s.path: images[int(s.path[len(split) + 1:-1])] for s in samples})
    return assemble_in_memory(source.root, list(source.class_names), candidates, pixels, image_size=image_size,
                              validation_split=validation_split, seed=seed, crop_to_aspect_ratio=crop_to_aspect_ratio)


def count_labels(source: DatasetSource) -> dict[str, int]:
    """Training elements per class (reads the labels once)."""
    ds = source.train.unbatch() if source.train.element_spec[0].shape.rank == 4 else source.train
    counts = np.zeros(len(source.class_names), np.int64)
    for label in ds.map(lambda x, y: y).as_numpy_iterator():
        if 0 <= int(label) < len(counts):
            counts[int(label)] += 1
    return {name: int(n) for name, n in zip(source.class_names, counts)}


def class_names_of(names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        raise ValueError("`class_names` is required with `dataset`: the name of label i is class_names[i].")
    return tuple(str(n) for n in names)
