"""The one dispatcher over data sources: an image folder, a label file (CSV, DataFrame, rows), or
tf.data datasets (`load_data`), and the checks, counts and names that need only listing
(`check_source`, `count_images`, `source_name`), plus arrays of one split for checking exports.

Examples:
    >>> from tl_keras.data import load_data
    >>> folder = load_data("../shared/assets/datasets/hymenoptera", image_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

from tl_keras.data.folder import (
    ImageFolder,
    _class_dirs,
    _list_files,
    _train_dir,
    check_layout,
    load_image_folder,
)
from tl_keras.data.label_files import (
    LabelFile,
    check_label_rows,
    count_rows,
    is_label_source,
    load_label_file,
    read_rows,
)


def load_data(source, **kwargs) -> ImageFolder:
    """An image folder (`load_image_folder`), a label source: a `.csv` file, a pandas DataFrame or a
    list of `(path, label[, split])` rows (`tl_keras.data.label_files.load_label_file`), or tf.data
    datasets (`tl_keras.data.tfdata.DatasetSource`), loaded and checked with `kwargs`; an `ImageFolder` is
    returned as it is."""
    if isinstance(source, ImageFolder):
        return source
    if _is_dataset_source(source):
        from tl_keras.data.tfdata import load_datasets

        return load_datasets(source, **kwargs)
    if is_label_source(source):
        return load_label_file(source, **kwargs)
    return load_image_folder(source, **kwargs)


def with_columns(data, path_column: str | None = None, label_column: str | None = None,
                 path_format: str | None = None):
    """`data`, or, when a column setting is given, the label file it names read through them (a
    `tl_keras.data.label_files.LabelFile`): how `train(..., path_column=, label_column=,
    path_format=)` and the CLI's `--path-column`, `--label-column`, `--path-format` reach the data."""
    if path_column is None and label_column is None and path_format is None:
        return data
    if isinstance(data, LabelFile):
        return data
    if not isinstance(data, str) or not data.lower().endswith(".csv"):
        raise ValueError(f"`path_column`, `label_column` and `path_format` read a .csv label file; the data is {data!r}.")
    return LabelFile(data, path_column or "path", label_column or "label", path_format)


def _is_dataset_source(source) -> bool:
    """Whether `source` is a `tl_keras.data.tfdata.DatasetSource`, without importing TensorFlow (a
    DatasetSource cannot exist before its module, and TensorFlow with it, was imported)."""
    tfdata = sys.modules.get("tl_keras.data.tfdata")
    return tfdata is not None and isinstance(source, tfdata.DatasetSource)


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
    """`check_layout` for a folder, `tl_keras.data.label_files.check_label_rows` for a label source: the
    checks that need no decoding. Returns the class names."""
    if isinstance(source, ImageFolder) or _is_dataset_source(source):  # a DatasetSource checks itself when it is made
        return list(source.class_names)
    return check_label_rows(source) if is_label_source(source) else check_layout(source)


def source_name(source) -> str:
    """A short name for a data source, for output folders: the folder's name, a label file's folder's
    name, else "model"."""
    root = getattr(source, "root", source)  # an ImageFolder's folder or CSV, a LabelFile's CSV
    if not isinstance(root, str) or not os.path.exists(root):
        return "model"
    if os.path.isfile(root):
        root = os.path.dirname(os.path.abspath(root))
    return os.path.basename(os.path.normpath(root)) or "model"


def training_files(source) -> list[str]:
    """The training image files of a folder (`train/`, or the folder itself) or a label source (its
    rows without a split or with `train`), by listing only; none for tf.data datasets or a loaded
    `ImageFolder`, whose images are already decoded."""
    if isinstance(source, ImageFolder) or _is_dataset_source(source):
        return []
    if is_label_source(source):
        rows, _, _ = read_rows(source)
        return [path for path, _, split in rows if split in (None, "train")]
    return [s.path for s in _training_samples(source)[0]]


def count_images(data_dir) -> dict[str, int]:
    """Image files per class in the training files (`train/`, or the folder itself; a label source's
    training rows), by listing only:
    nothing is decoded, so it is cheap on any size of dataset. Hidden and non-image files do not count."""
    if _is_dataset_source(data_dir):
        from tl_keras.data.tfdata import count_labels

        return count_labels(data_dir)
    if is_label_source(data_dir):
        return count_rows(data_dir)
    samples, class_names = _training_samples(data_dir)
    counts = np.bincount([s.label for s in samples], minlength=len(class_names))
    return {name: int(n) for name, n in zip(class_names, counts)}


def _training_samples(data_dir: str):
    """The training files of an image folder (`train/`, or the folder itself) as samples, and the
    class names, by listing only."""
    train_dir = _train_dir(data_dir)
    class_names = _class_dirs(train_dir) if os.path.isdir(train_dir) else []
    if len(class_names) < 2:
        raise ValueError(f"{train_dir!r} must hold one subfolder per class, at least 2 classes.")
    return _list_files(train_dir, class_names)[0], class_names
