"""What a data set holds that would corrupt the val accuracy every decision is made on, found by
content: the same bytes (for images read from tf.data, the same pixels) twice in one class (duplicates), under two classes (label conflicts), and in
training and evaluation splits (leaks); and the classes' sizes. Reads each used file once (a content
hash); nothing is decoded.

`train` runs it on every data set it loads and reports it in its summary and in
`metrics["data_check"]`; `on_leak` and `on_conflict` (`"warn"`, the default, `"drop"` or `"error"`)
say what to do. Nothing is dropped silently: a dropped file is listed in `ImageFolder.skipped` with
the copy that made it go.

Examples:
    >>> from tl_keras.data import load_image_folder
    >>> folder = load_image_folder("../shared/assets/datasets/hymenoptera", image_size=32)  # doctest: +SKIP
    >>> check_data(folder).to_dict()["leaks"]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from tl_keras.config import DATA_POLICIES as POLICIES
from tl_keras.data.folder import ImageFolder, _subset
from tl_keras.utils.files import file_digest
from tl_keras.utils.progress import Progress

# A class with fewer training images than this is reported: too few to learn or to validate on.
MIN_PER_CLASS = 10


@dataclasses.dataclass
class DataCheck:
    """What `check_data` found. Each group lists the paths that hold the same bytes.

    Attributes:
        duplicates: `{"paths", "class", "split"}`: copies within one class and split (they count twice).
        conflicts: `{"paths", "classes"}`: the same image labelled differently.
        leaks: `{"paths", "splits"}`: the same image in train and in val or test.
        class_counts: split -> class -> images.
        small_classes: classes with fewer than `MIN_PER_CLASS` training images.
        imbalance: the largest training class over the smallest.
        dropped: `(path, reason)` for each file a policy removed.
        near_duplicates: `{"paths", "splits", "distance"}`: a val or test image and a training image
            that look the same without being the same bytes (a perceptual hash at most
            `distance` of 256 bits apart; see `tl_keras.data.near_duplicates`); None when not
            checked, and `near_duplicate_check` says why.
        label_issues: images whose given class is likely wrong (`{"path", "given", "predicted",
            "confidence"}`, see `tl_keras.data.label_issues`), found on the features a run caches;
            None when not checked, and `label_check` says why.
    """

    duplicates: list[dict]
    conflicts: list[dict]
    leaks: list[dict]
    class_counts: dict[str, dict[str, int]]
    small_classes: list[str]
    imbalance: float | None
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    near_duplicates: list[dict] | None = None
    near_duplicate_check: str | None = None
    label_issues: list[dict] | None = None
    label_check: str | None = None

    def to_dict(self) -> dict:
        return {"duplicates": self.duplicates, "conflicts": self.conflicts, "leaks": self.leaks,
                "class_counts": self.class_counts, "small_classes": self.small_classes, "imbalance": self.imbalance,
                "dropped": [{"path": p, "reason": r} for p, r in self.dropped],
                "near_duplicates": self.near_duplicates, "near_duplicate_check": self.near_duplicate_check,
                "label_issues": self.label_issues, "label_check": self.label_check}

    @classmethod
    def from_dict(cls, data: dict) -> DataCheck:
        """The inverse of `to_dict` (e.g. from `metrics["data_check"]`)."""
        fields = {k: data[k] for k in ("duplicates", "conflicts", "leaks", "class_counts", "small_classes", "imbalance")}
        return cls(**fields, dropped=[(d["path"], d["reason"]) for d in data.get("dropped", [])],
                   near_duplicates=data.get("near_duplicates"), near_duplicate_check=data.get("near_duplicate_check"),
                   label_issues=data.get("label_issues"), label_check=data.get("label_check"))

    def lines(self, first: int = 3) -> list[str]:
        """A few lines for a person: the counts, and the first groups of each kind."""
        out = [f"data check: {len(self.duplicates)} duplicate groups, {len(self.conflicts)} label conflicts, "
               f"{len(self.leaks)} train/val leaks" + (f", imbalance {self.imbalance:.1f}x" if self.imbalance else "")]
        for kind, groups, what in (("conflict", self.conflicts, "classes"), ("leak", self.leaks, "splits"),
                                   ("duplicate", self.duplicates, "class")):
            out += [f"  {kind} ({', '.join(g[what]) if isinstance(g[what], list) else g[what]}): {', '.join(g['paths'])}"
                    for g in groups[:first]]
            if len(groups) > first:
                out.append(f"  ... {len(groups) - first} more {kind}s (metrics['data_check'] lists them all)")
        if self.near_duplicates is not None:
            out.append(f"  {len(self.near_duplicates)} near-duplicates across splits ({self.near_duplicate_check})")
            out += [f"  near-duplicate ({', '.join(g['splits'])}, {g['distance']} bits): {', '.join(g['paths'])}"
                    for g in self.near_duplicates[:first]]
        elif self.near_duplicate_check:
            out.append(f"  {self.near_duplicate_check}")
        if self.label_issues is not None:
            out.append(f"  {len(self.label_issues)} likely label errors ({self.label_check})")
            out += [f"  label? {i['path']}: given {i['given']}, looks like {i['predicted']} ({i['confidence']:.2f})"
                    for i in self.label_issues[:first]]
        elif self.label_check:
            out.append(f"  {self.label_check}")
        if self.small_classes:
            out.append(f"  classes with fewer than {MIN_PER_CLASS} training images: {', '.join(self.small_classes)}")
        out += [f"  dropped {path}: {reason}" for path, reason in self.dropped]
        return out


def _label_names(folder: ImageFolder, label) -> tuple[str, ...]:
    if isinstance(label, tuple):
        return tuple(name for name, flag in zip(folder.class_names, label) if flag)
    return (folder.class_names[label],)


def _digest(split, i: int) -> str | None:
    """The content digest of a split's `i`-th image: of its file's bytes (taken when the file was
    checked, else read now); for images that are no file (read from tf.data datasets, named like
    `train[3]`), of its decoded pixels; None when there are neither."""
    sample = split.samples[i]
    path = sample.path
    if sample.digest is not None:
        return sample.digest
    if os.path.isfile(path):
        return file_digest(path)
    pixels = split.held_pixels(i)
    return None if pixels is None else "pixels:" + hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def check_data(folder: ImageFolder) -> DataCheck:
    """Groups `folder`'s used images by content and counts its classes (see `DataCheck`)."""
    by_digest: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {}
    with Progress("hashing images", folder.num_used) as bar:
        for split_name, split in folder.splits.items():
            for i, sample in enumerate(split.samples):
                digest = _digest(split, i)
                if digest is not None:
                    by_digest.setdefault(digest, []).append((sample.path, split_name, _label_names(folder, sample.label)))
                bar.advance()
    duplicates, conflicts, leaks = [], [], []
    for copies in by_digest.values():
        if len(copies) < 2:
            continue
        paths = [p for p, _, _ in copies]
        labels = sorted({labels for _, _, labels in copies})
        splits = sorted({s for _, s, _ in copies})
        if len(labels) > 1:
            conflicts.append({"paths": paths, "classes": [";".join(lab) for lab in labels]})
        if "train" in splits and len(splits) > 1:
            leaks.append({"paths": paths, "splits": splits})
        if len(labels) == 1 and len(splits) == 1:
            duplicates.append({"paths": paths, "class": ";".join(labels[0]), "split": splits[0]})
    counts = {name: {c: 0 for c in folder.class_names} for name in folder.splits}
    for name, split in folder.splits.items():
        for sample in split.samples:
            for c in _label_names(folder, sample.label):
                counts[name][c] += 1
    train = counts["train"]
    small = [c for c, n in train.items() if n < MIN_PER_CLASS]
    imbalance = max(train.values()) / min(train.values()) if min(train.values()) > 0 else None
    return DataCheck(duplicates, conflicts, leaks, counts, small, round(imbalance, 2) if imbalance else None)


def apply_policies(folder: ImageFolder, check: DataCheck, on_leak: str = "warn", on_conflict: str = "warn") -> ImageFolder:
    """`folder` with the policies applied: `"warn"` keeps everything (the check reports it);
    `"drop"` removes a leak's training copies (val and test stay as they are, no longer leaked) and
    every copy of a conflicting image (its label is unknown); `"error"` raises. Dropped files are
    added to `skipped` with the reason, and to `check.dropped`."""
    for name, value in (("on_leak", on_leak), ("on_conflict", on_conflict)):
        if value not in POLICIES:
            raise ValueError(f"`{name}` must be one of {', '.join(POLICIES)}. Received: {name}={value!r}")
    for kind, groups, policy, flag in (("leak", check.leaks, on_leak, "--on-leak"),
                                       ("label conflict", check.conflicts, on_conflict, "--on-conflict")):
        if groups and policy == "error":
            shown = "; ".join(", ".join(g["paths"]) for g in groups[:3])
            raise ValueError(f"{len(groups)} {kind}{'s' if len(groups) > 1 else ''} in {folder.root!r} (the same image "
                             f"{'in training and evaluation splits' if kind == 'leak' else 'under different classes'}): "
                             f"{shown}. Remove the copies, or pass {flag} drop (or warn).")
    drop: dict[str, str] = {}
    if on_leak == "drop":
        in_train = set(folder.train.paths)
        for group in check.leaks:
            kept = [p for p in group["paths"] if p not in in_train]
            for path in group["paths"]:
                if path in in_train:
                    drop[path] = f"the same image as {os.path.basename(kept[0])} in {'/'.join(s for s in group['splits'] if s != 'train')}: dropped from train (on_leak=drop)"
    if on_conflict == "drop":
        for group in check.conflicts:
            for path in group["paths"]:
                drop[path] = f"the same image is labelled {' and '.join(group['classes'])}: dropped (on_conflict=drop)"
    if not drop:
        return folder
    splits = {name: _subset(split, [s for s in split.samples if s.path not in drop]) for name, split in folder.splits.items()}
    dropped = sorted(drop.items())
    check.dropped += dropped
    return dataclasses.replace(folder, splits=splits, skipped=folder.skipped + dropped)


def checked_folder(folder: ImageFolder, on_leak: str = "warn", on_conflict: str = "warn",
                   near_duplicates: bool = True) -> tuple[ImageFolder, DataCheck]:
    """`check_data` on `folder`, then the policies applied (`apply_policies`), then (unless
    `near_duplicates=False`) the near-duplicates across splits (`check_near_duplicates`): what
    `train`, `tl_keras.check` and `tl-keras check` run on the data they load."""
    check = check_data(folder)
    folder = apply_policies(folder, check, on_leak, on_conflict)
    if not near_duplicates:
        return folder, dataclasses.replace(check, near_duplicate_check="near-duplicates not checked: near_duplicate_check=False")
    return folder, check_near_duplicates(check, folder)


def check_near_duplicates(check: DataCheck, folder: ImageFolder) -> DataCheck:
    """`check` with the near-duplicates of `folder` across splits (reported, never dropped: a person
    judges them, e.g. in the HTML report); a missing `imagehash` is reported in `near_duplicate_check`."""
    from tl_keras.data.near_duplicates import MAX_DISTANCE, find_near_duplicates, missing_library

    why_not = missing_library()
    if why_not is not None:
        return dataclasses.replace(check, near_duplicate_check=why_not)
    exact = {frozenset((a, b)) for group in check.leaks for a in group["paths"] for b in group["paths"] if a != b}
    found = find_near_duplicates(folder, exact=exact)
    return dataclasses.replace(check, near_duplicates=found, near_duplicate_check=(
        f"perceptual hash within {MAX_DISTANCE} of 256 bits of a training image; reported, not dropped"))


def check_labels(check: DataCheck, folder: ImageFolder, features, enabled: bool = True) -> DataCheck:
    """`check` with the likely label errors of `folder`'s train and val images, judged on their cached
    backbone features (a `tl_keras.training.caches.FeatureSet`; see `tl_keras.data.label_issues`).
    Not checking (`enabled=False`, no features, multi-label data, no `cleanlab`) is reported in
    `label_check`, not raised."""
    from tl_keras.data.label_issues import find_label_issues, missing_library

    if not enabled:
        why_not = "label issues not checked: label_check=False"
    elif features is None:
        why_not = ("label issues not checked: phase 1 cached no features (cache_features); "
                   "tl-keras check DATA --backbone B computes them")
    else:
        why_not = "label issues not checked: multi-label data" if folder.multi_label else missing_library()
    if why_not is not None:
        return dataclasses.replace(check, label_check=why_not)
    labels = np.concatenate([np.asarray(folder.train.labels), np.asarray(folder.val.labels)])
    issues = find_label_issues(np.concatenate([features.train[0], features.val]), labels, folder.class_names,
                               folder.train.paths + folder.val.paths, seed=folder.seed)
    for issue in issues:
        del issue["index"]
    return dataclasses.replace(check, label_issues=issues,
                               label_check=f"cleanlab on out-of-fold probabilities of {len(labels)} train and val images")
