"""The records every data source produces: a `Sample` (a path and its label, or multi-label
flags) and a `Split` (the samples of one split, with their decoded pixels when held in memory)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class Sample:
    path: str
    label: int | tuple[int, ...]  # a class index; for multi-label data, one 0/1 flag per class
    # Set when the file is checked: the EXIF orientation to apply when it is decoded (1: as stored),
    # and the SHA-1 of its bytes (what the data check groups copies by; None until read).
    orientation: int = 1
    digest: str | None = None


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

    def held_pixels(self, i: int) -> np.ndarray | None:
        """The `i`-th image's pixels when it is no file (a tf.data element, named like `train[3]`)
        and the split holds them; else None (read it from its file)."""
        if self.images is None or os.path.isfile(self.samples[i].path):
            return None
        return self.images[i]

    @property
    def labels(self) -> np.ndarray:
        """int32 `[n]` class indices, or for multi-label data float32 `[n, classes]` 0/1 flags."""
        if self.samples and isinstance(self.samples[0].label, tuple):
            return np.array([s.label for s in self.samples], dtype=np.float32)
        return np.array([s.label for s in self.samples], dtype=np.int32)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.samples]

    @property
    def orientations(self) -> np.ndarray:
        """int32 `[n]`: the EXIF orientation each image is turned by when decoded (1: as stored)."""
        return np.array([s.orientation for s in self.samples], dtype=np.int32)
