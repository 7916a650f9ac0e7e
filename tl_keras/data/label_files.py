"""Label files: images listed with their labels in a CSV file, a pandas DataFrame or a list of rows.

The columns are `path,label[,split]`. A label written `a;b` gives the image several labels, and then
the file is **multi-label** (one sigmoid output per class, see `ImageClassifier`): instead of `label`, one 0/1 column per class
(`path,cat,dog[,split]`) says the same, and a row of zeros is an image with none of the labels.
Paths are relative to the CSV file's folder (for a DataFrame
or a list, to the current folder, or to `root`). `split` is `train`, `val` (or `validation`,
`valid`) or `test`; without it (or without any `val` row) a seeded, stratified share of the training
rows is held out for validation, as for folders. Rows go through the same checks as a folder's files
(content sniffing, decoding, size): every listed row is either used or skipped with its reason, so
`num_used + len(skipped) == num_found == rows listed`.

Examples:
    >>> from tl_keras.data.label_files import load_label_file
    >>> folder = load_label_file("photos/labels.csv", image_size=224)   # doctest: +SKIP
    >>> folder.class_names, folder.num_found                             # doctest: +SKIP
    (['ants', 'bees'], 398)
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Sequence

from tl_keras.data.folder import (
    DEFAULT_MEMORY_LIMIT,
    VAL_DIR_NAMES,
    ImageFolder,
    _at_most_per_class,
    assemble,
    require_fraction,
)
from tl_keras.data.samples import Sample
from tl_keras.images.sniff import skip_reason

SPLITS = {"train": "train", "test": "test", **{name: "val" for name in VAL_DIR_NAMES}}


@dataclasses.dataclass(frozen=True)
class LabelFile:
    """A CSV label file whose columns are not `path,label`, as Kaggle writes them.

    Args:
        path: the CSV file.
        path_column: the column naming each image. Defaults to `"path"`.
        label_column: the column holding its label (`a;b` for several). Defaults to `"label"`.
        path_format: how a `path_column` value becomes a file path, relative to the CSV's folder,
            with `{}` for the value: Kaggle's dog-breed `labels.csv` (`id,breed`, images at
            `train/<id>.jpg`) is `LabelFile("labels.csv", "id", "breed", "train/{}.jpg")`. Defaults
            to None (the value is the path).

    `tl_keras.train(path, path_column=..., label_column=..., path_format=...)` and the CLI's
    `--path-column`, `--label-column`, `--path-format` make one.

    Examples:
        >>> LabelFile("labels.csv", path_column="id", label_column="breed", path_format="train/{}.jpg").root
        'labels.csv'
    """

    path: str
    path_column: str = "path"
    label_column: str = "label"
    path_format: str | None = None

    def __post_init__(self):
        if not isinstance(self.path, str) or not self.path.lower().endswith(".csv"):
            raise ValueError(f"`path_column`, `label_column` and `path_format` read a .csv label file. Received: {self.path!r}")
        if self.path_format is not None and self.path_format.count("{}") != 1:
            raise ValueError(f"`path_format` must hold `{{}}` once, where each {self.path_column!r} value goes "
                             f"(like 'train/{{}}.jpg'). Received: path_format={self.path_format!r}")

    @property
    def root(self) -> str:
        """The CSV file, as a label file's `ImageFolder.root` is."""
        return self.path


def is_label_source(data: Any) -> bool:
    """Whether `data` is a label file (a `.csv` path or a `LabelFile`), a DataFrame or a list of
    rows, not a folder."""
    if isinstance(data, LabelFile):
        return True
    if isinstance(data, str):
        return data.lower().endswith(".csv")
    return hasattr(data, "columns") or isinstance(data, (list, tuple))


def _describe(data: Any) -> str:
    return data.path if isinstance(data, LabelFile) else data if isinstance(data, str) else type(data).__name__


Row = tuple  # (absolute path, labels: tuple of class names, split or None)


def read_rows(data: Any, root: str | None = None) -> tuple[list[Row], str, list[str] | None]:
    """`(rows, where, class_columns)`: every row as `(absolute path, labels, split or None)` (`labels`
    a tuple of class names: one, or several for a multi-label row), the source's name for messages,
    and the class columns of a 0/1-column file (None for a label column). Raises a
    `ValueError` naming the file, the row and the fix for a missing column, an empty path or label,
    a class column that is not 0/1, or an unknown split."""
    where = _describe(data)
    spec = data if isinstance(data, LabelFile) else None
    if spec is not None:
        data = spec.path
    if isinstance(data, str):
        if not os.path.isfile(data):
            raise ValueError(f"Label file not found: {data!r}")
        root = os.path.dirname(os.path.abspath(data)) if root is None else root
        with open(data, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            records = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
        if spec is not None:
            columns, records = _named_columns(spec, columns, records)
    elif hasattr(data, "columns"):  # a pandas DataFrame
        columns = [str(c) for c in data.columns]
        records = [{str(k): "" if v is None else str(v).strip() for k, v in r.items()} for r in data.to_dict("records")]
    else:
        columns = ["path", "label", "split"]
        records = []
        for i, row in enumerate(data):
            if not isinstance(row, (list, tuple)) or len(row) not in (2, 3):
                raise ValueError(f"Row {i} of the list must be (path, label) or (path, label, split). Received: {row!r}")
            records.append(dict(zip(columns, [str(v).strip() for v in row])))
    class_columns = [c for c in columns if c not in ("path", "label", "split")] if "label" not in columns else []
    missing = [c for c in ("path", "label") if c not in columns and not (c == "label" and len(class_columns) >= 2)]
    if missing:
        raise ValueError(f"{where!r} must have the columns path,label[,split] (or path and one 0/1 column per "
                         f"class); {', '.join(missing)} missing (found: {', '.join(columns) or 'no header'}).")
    root = root or os.getcwd()
    rows = []
    for number, record in enumerate(records, start=2 if isinstance(data, str) else 0):  # CSV: line numbers
        path, split = record.get("path", ""), record.get("split") or None
        name = f"{where!r} {'line' if isinstance(data, str) else 'row'} {number}"
        labels = _class_flags(record, class_columns, name) if class_columns else _labels(record.get("label", ""))
        if not path or not (labels or class_columns):
            raise ValueError(f"{name} has an empty {'path' if not path else 'label'}: every row needs both.")
        if split is not None and split.lower() not in SPLITS:
            raise ValueError(f"{name} has split {split!r}: use train, val or test (or leave it empty).")
        rows.append((os.path.normpath(os.path.join(root, path)), labels, SPLITS[split.lower()] if split else None))
    if not rows:
        raise ValueError(f"{where!r} lists no image: add rows path,label.")
    return rows, where, class_columns or None


def _named_columns(spec: LabelFile, columns: list[str], records: list[dict]) -> tuple[list[str], list[dict]]:
    """The records of a `LabelFile` under the names tl_keras reads (`path`, `label`), its path
    column's values put through `path_format`."""
    named = {"path": spec.path_column, "label": spec.label_column}
    missing = [f"{option}={column!r}" for option, column in (("path_column", spec.path_column), ("label_column", spec.label_column))
               if column not in columns]
    if missing:
        raise ValueError(f"{spec.path!r} has no column {' or '.join(missing)} (its columns: {', '.join(columns) or 'no header'}). "
                         "Name the file's columns with --path-column and --label-column.")
    kept = [c for c in columns if c not in named.values() and c not in named]
    out = []
    for record in records:
        value = record.get(spec.path_column, "")
        path = spec.path_format.format(value) if spec.path_format is not None and value else value
        out.append({**{c: record[c] for c in kept if c in record}, "path": path, "label": record.get(spec.label_column, "")})
    return kept + ["path", "label"], out


def _labels(text: str) -> tuple[str, ...]:
    """`"a;b"` -> `("a", "b")`: a row's labels, stripped, empty and repeated ones dropped."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(";") if part.strip()))


def _class_flags(record: dict, class_columns: list[str], name: str) -> tuple[str, ...]:
    flags = {c: record.get(c, "") for c in class_columns}
    bad = {c: v for c, v in flags.items() if v not in ("0", "1", "0.0", "1.0")}
    if bad:
        raise ValueError(f"{name}: the class columns must hold 0 or 1; {', '.join(f'{c}={v!r}' for c, v in bad.items())}.")
    return tuple(c for c, v in flags.items() if v in ("1", "1.0"))


def is_multi_label(rows: list[Row], class_columns: list[str] | None) -> bool:
    """Whether the rows give some image several labels, or name the classes by 0/1 columns."""
    return class_columns is not None or any(len(labels) != 1 for _, labels, _ in rows)


def check_label_rows(data: Any, root: str | None = None) -> list[str]:
    """The label source's class names (sorted), after the checks that need no decoding: columns, at
    least two classes, a training row for each class."""
    return _class_names(*read_rows(data, root))


def count_rows(data: Any, root: str | None = None) -> dict[str, int]:
    """Training rows per class (rows without a split count as training rows), after the checks of
    `check_label_rows`; the file is read once. A multi-label row counts for each of its classes."""
    rows, where, columns = read_rows(data, root)
    return {name: sum(1 for _, labels, split in rows if name in labels and split in (None, "train"))
            for name in _class_names(rows, where, columns)}


def _class_names(rows: list[Row], where: str, class_columns: list[str] | None = None) -> list[str]:
    class_names = class_columns or sorted({label for _, labels, _ in rows for label in labels})
    if len(class_names) < 2:
        raise ValueError(f"{where!r} must list at least 2 classes. Received: {len(class_names)} ({', '.join(class_names)}).")
    trained = {label for _, labels, split in rows if split in (None, "train") for label in labels}
    for name in class_names:
        if name not in trained:
            raise ValueError(f"Class {name!r} has no training row in {where!r}: add rows or drop the class.")
    return class_names


def load_label_file(
    data: str | Sequence | Any,
    *,
    image_size: int = 224,
    crop_to_aspect_ratio: bool = True,
    validation_split: float = 0.2,
    seed: int = 42,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    max_per_class: int | None = None,
    root: str | None = None,
    exif_orientation: bool = True,
) -> ImageFolder:
    """Reads, checks and decodes the images a label source lists; the arguments are
    `load_image_folder`'s, plus `root` (the folder relative paths start from). Returns an
    `ImageFolder` whose `root` is the CSV path (or the DataFrame's type name)."""
    require_fraction(validation_split)
    rows, where, columns = read_rows(data, root)
    class_names = _class_names(rows, where, columns)
    multi = is_multi_label(rows, columns)
    index = {name: i for i, name in enumerate(class_names)}
    has_val = any(split == "val" for _, _, split in rows)
    candidates: dict[str, list[Sample]] = {"train": []}
    if has_val:
        candidates["val"] = []
    skipped = []
    for path, labels, split in rows:
        split = split or "train"
        reason = skip_reason(path) if os.path.lexists(path) else f"listed in {where!r} but not found"
        if reason:
            skipped.append((path, reason))
        else:
            label = tuple(int(name in labels) for name in class_names) if multi else index[labels[0]]
            candidates.setdefault(split, []).append(Sample(path, label))
    if max_per_class is not None:
        candidates = {k: _at_most_per_class(v, max_per_class, seed) for k, v in candidates.items()}
    num_found = sum(len(v) for v in candidates.values()) + len(skipped)
    return assemble(_describe(data), class_names, candidates, skipped, num_found, image_size=image_size,
                    crop_to_aspect_ratio=crop_to_aspect_ratio, validation_split=validation_split, seed=seed, memory_limit=memory_limit,
                    where=lambda name: where, fix="add rows with readable images or drop the class", exif_orientation=exif_orientation)
