"""Label files: images listed with their labels in a CSV file, a pandas DataFrame or a list of rows.

The columns are `path,label[,split]`. Paths are relative to the CSV file's folder (for a DataFrame
or a list, to the current folder, or to `root`). `split` is `train`, `val` (or `validation`,
`valid`) or `test`; without it (or without any `val` row) a seeded, stratified share of the training
rows is held out for validation, as for folders. Rows go through the same checks as a folder's files
(content sniffing, decoding, size): every listed row is either used or skipped with its reason, so
`num_used + len(skipped) == num_found == rows listed`.

Example:

>>> from tl_keras.label_files import load_label_file
>>> folder = load_label_file("photos/labels.csv", image_size=224)   # doctest: +SKIP
>>> folder.class_names, folder.num_found                             # doctest: +SKIP
(['ants', 'bees'], 398)
"""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

from tl_keras.data import (
    DEFAULT_MEMORY_LIMIT, VAL_DIR_NAMES, ImageFolder, Sample, _at_most_per_class, assemble, require_fraction, skip_reason,
)

SPLITS = {"train": "train", "test": "test", **{name: "val" for name in VAL_DIR_NAMES}}


def is_label_source(data: Any) -> bool:
    """Whether `data` is a label file (a `.csv` path), a DataFrame or a list of rows, not a folder."""
    if isinstance(data, str):
        return data.lower().endswith(".csv")
    return hasattr(data, "columns") or isinstance(data, (list, tuple))


def _describe(data: Any) -> str:
    return data if isinstance(data, str) else type(data).__name__


def read_rows(data: Any, root: str | None = None) -> tuple[list[tuple[str, str, str | None]], str]:
    """`(rows, where)`: every row as `(absolute path, label, split or None)`, and the source's name
    for messages. Raises a `ValueError` naming the file, the row and the fix for a missing column, an
    empty path or label, an unknown split or a multi-label row."""
    where = _describe(data)
    if isinstance(data, str):
        if not os.path.isfile(data):
            raise ValueError(f"Label file not found: {data!r}")
        root = os.path.dirname(os.path.abspath(data)) if root is None else root
        with open(data, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            records = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
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
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise ValueError(f"{where!r} must have the columns path,label[,split]; {', '.join(missing)} missing "
                         f"(found: {', '.join(columns) or 'no header'}).")
    root = root or os.getcwd()
    rows = []
    for number, record in enumerate(records, start=2 if isinstance(data, str) else 0):  # CSV: line numbers
        path, label, split = record.get("path", ""), record.get("label", ""), record.get("split") or None
        name = f"{where!r} {'line' if isinstance(data, str) else 'row'} {number}"
        if not path or not label:
            raise ValueError(f"{name} has an empty {'path' if not path else 'label'}: every row needs both.")
        if ";" in label:
            raise ValueError(f"{name} has several labels ({label!r}): multi-label training is not supported; "
                             "give each image one label.")
        if split is not None and split.lower() not in SPLITS:
            raise ValueError(f"{name} has split {split!r}: use train, val or test (or leave it empty).")
        rows.append((os.path.normpath(os.path.join(root, path)), label, SPLITS[split.lower()] if split else None))
    if not rows:
        raise ValueError(f"{where!r} lists no image: add rows path,label.")
    return rows, where


def check_label_rows(data: Any, root: str | None = None) -> list[str]:
    """The label source's class names (sorted), after the checks that need no decoding: columns, at
    least two classes, a training row for each class."""
    return _class_names(*read_rows(data, root))


def count_rows(data: Any, root: str | None = None) -> dict[str, int]:
    """Training rows per class (rows without a split count as training rows), after the checks of
    `check_label_rows`; the file is read once."""
    rows, where = read_rows(data, root)
    return {name: sum(1 for _, label, split in rows if label == name and split in (None, "train"))
            for name in _class_names(rows, where)}


def _class_names(rows: list[tuple[str, str, str | None]], where: str) -> list[str]:
    class_names = sorted({label for _, label, _ in rows})
    if len(class_names) < 2:
        raise ValueError(f"{where!r} must list at least 2 classes. Received: {len(class_names)} ({', '.join(class_names)}).")
    trained = {label for _, label, split in rows if split in (None, "train")}
    for name in class_names:
        if name not in trained:
            raise ValueError(f"Class {name!r} has no training row in {where!r}: add rows or drop the class.")
    return class_names


def load_label_file(
    data: str | Sequence | Any,
    *,
    image_size: int = 224,
    validation_split: float = 0.2,
    seed: int = 42,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    max_per_class: int | None = None,
    root: str | None = None,
) -> ImageFolder:
    """Reads, checks and decodes the images a label source lists; the arguments are
    `load_image_folder`'s, plus `root` (the folder relative paths start from). Returns an
    `ImageFolder` whose `root` is the CSV path (or the DataFrame's type name)."""
    require_fraction(validation_split)
    rows, where = read_rows(data, root)
    class_names = _class_names(rows, where)
    index = {name: i for i, name in enumerate(class_names)}
    has_val = any(split == "val" for _, _, split in rows)
    candidates: dict[str, list[Sample]] = {"train": []}
    if has_val:
        candidates["val"] = []
    skipped = []
    for path, label, split in rows:
        split = split or "train"
        reason = skip_reason(path) if os.path.lexists(path) else f"listed in {where!r} but not found"
        if reason:
            skipped.append((path, reason))
        else:
            candidates.setdefault(split, []).append(Sample(path, index[label]))
    if max_per_class is not None:
        candidates = {k: _at_most_per_class(v, max_per_class, seed) for k, v in candidates.items()}
    num_found = sum(len(v) for v in candidates.values()) + len(skipped)
    return assemble(_describe(data), class_names, candidates, skipped, num_found, image_size=image_size,
                    validation_split=validation_split, seed=seed, memory_limit=memory_limit,
                    where=lambda name: where, fix="add rows with readable images or drop the class")
