"""How an image is framed for the backbone: the centred square (the default), the whole image squeezed
to a square (`crop_to_aspect_ratio=False`), or the whole image at its own aspect ratio (short side at
the size; tl_keras's inputs are square, so this arm is measured here only), at each size, and the
whole-frame features averaged over the sizes. A frozen-feature probe, no training: the ridge
classifier (`tl_keras.utils.ridge.fit_ridge`, the head's start) fitted on the training split and
scored on val, and cross-validated on train and val pooled (stratified 5 folds, 3 shuffles) to see
past one split's noise.

The question it answers (docs/benchmarks/accuracy.md, materials_fmd's target): does the default
framing lose what a far-domain set with non-square photos needs, and would a non-square input (a
larger one, several sizes) close the gap?

Run:  python benchmarks/framing_probe.py [--datasets materials_fmd ...] [--sizes 224 384]
Prints one row per set and arm: val accuracy, cross-validated accuracy (mean +- std over the
shuffles), the relative pixel count, seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, table  # noqa: E402

FOLDS, SHUFFLES = 5, 3


def _files(data: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Every train and val file of a class-folder set: paths, labels, is-val flags, class names."""
    classes = sorted(os.listdir(os.path.join(data, "train")))
    paths, labels, is_val = [], [], []
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            folder = os.path.join(data, split, name)
            for file in sorted(os.listdir(folder)):
                paths.append(os.path.join(folder, file))
                labels.append(label)
                is_val.append(split == "val")
    return paths, np.array(labels), np.array(is_val), classes


def _framed(image: np.ndarray, arm: str, size: int) -> np.ndarray:
    import tensorflow as tf

    from tl_keras.images.codec import resize_uint8

    if arm != "whole frame":
        return np.asarray(resize_uint8(image, size, crop_to_aspect_ratio=arm == "centre square"))
    height, width = image.shape[:2]
    scale = size / min(height, width)
    shape = (round(height * scale), round(width * scale))
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, shape, antialias=True)), 0, 255), tf.uint8))


def features(model, images: list[np.ndarray], arm: str, size: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The classifier's backbone features of every image framed by `arm` (its pixel-range layer, then
    the backbone, skipping its square resize), and each framed image's shape; images of one shape share a batch."""
    backbone = model.backbone
    framed = [_framed(image, arm, size) for image in images]
    by_shape = defaultdict(list)
    for i, image in enumerate(framed):
        by_shape[image.shape].append(i)
    out = np.zeros((len(framed), int(backbone.output.shape[-1])), np.float32)
    for rows in by_shape.values():
        for start in range(0, len(rows), 32):
            chunk = rows[start:start + 32]
            batch = np.stack([framed[i] for i in chunk]).astype(np.float32)
            out[chunk] = np.asarray(backbone(model.get_layer("pixel_range")(batch)))
    return out, [image.shape for image in framed]


def probe(x: np.ndarray, labels: np.ndarray, is_val: np.ndarray, classes: int) -> tuple[float, float, float]:
    """Val accuracy of the ridge classifier fitted on train; cross-validated accuracy, mean and std over shuffles."""
    from tl_keras.utils.ridge import fit_ridge

    val = float((fit_ridge(x[~is_val], labels[~is_val], classes).predict(x[is_val]) == labels[is_val]).mean())
    means = []
    for shuffle in range(SHUFFLES):
        rng = np.random.default_rng(shuffle)
        fold = np.empty(len(labels), int)
        for label in range(classes):  # stratified: each class's rows dealt round the folds in a random order
            rows = rng.permutation(np.flatnonzero(labels == label))
            fold[rows] = np.arange(len(rows)) % FOLDS
        hits = [fit_ridge(x[fold != k], labels[fold != k], classes).predict(x[fold == k]) == labels[fold == k]
                for k in range(FOLDS)]
        means.append(float(np.concatenate(hits).mean()))
    return val, float(np.mean(means)), float(np.std(means, ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS), choices=list(ALL_DATASETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 384])
    args = parser.parse_args()
    from tl_keras.images.read import read_images
    from tl_keras.models.classifier import build_classifier

    rows = []
    for name in args.datasets:
        paths, labels, is_val, classes = _files(require(ALL_DATASETS[name]))
        images = read_images(paths)  # each at its own size, upright by its EXIF tag
        model = build_classifier(require(HUB_100), len(classes), image_size=args.sizes[0])
        base = args.sizes[0] ** 2
        whole = []
        arms = [("centre square", args.sizes[0]), ("squeezed", args.sizes[0])]
        arms += [(arm, size) for size in args.sizes for arm in ("centre square", "whole frame") if (arm, size) not in arms]
        for arm, size in arms:
            with Timer() as t:
                x, shapes = features(model, images, arm, size)
            if arm == "whole frame":
                whole.append(x)
            pixels = np.mean([h * w for h, w, _ in shapes[:50]]) / base  # the first 50 images, as the docs' table
            val, cv, std = probe(x, labels, is_val, len(classes))
            rows.append({"dataset": name, "framing": arm, "size": size, "pixels": f"{pixels:.2f}x",
                         "val": f"{val:.3f}", "cross-validated": f"{cv:.3f} +- {std:.3f}", "seconds": f"{t.seconds:.0f}"})
        if len(whole) > 1:
            val, cv, std = probe(np.mean(whole, 0), labels, is_val, len(classes))
            rows.append({"dataset": name, "framing": "whole frame, features averaged", "size": "+".join(map(str, args.sizes)),
                         "val": f"{val:.3f}", "cross-validated": f"{cv:.3f} +- {std:.3f}"})
        print(table(rows[-len(arms) - (len(whole) > 1):], ["dataset", "framing", "size", "pixels", "val", "cross-validated", "seconds"]),
              flush=True)
    print()
    print(table(rows, ["dataset", "framing", "size", "pixels", "val", "cross-validated", "seconds"]))
    print(f"Hub MobileNetV2 1.0, frozen; ridge classifier (penalty by leave-one-out); cross-validated: train + val pooled, "
          f"stratified {FOLDS} folds x {SHUFFLES} shuffles; pixels: the framed image's against {args.sizes[0]} px squared.")


if __name__ == "__main__":
    main()
