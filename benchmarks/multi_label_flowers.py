"""(h) A real multi-label set built from the shared flower photos, and tl_keras's scores on it.

Construction (`build`, deterministic for a seed): the photos of each split of `flowers/` (train, val)
are shuffled and used once each. Two thirds of them are paired with a photo of another class: each
photo is resized to the image's height, its centre strip of half the width is kept (flowers are
mostly centred), and the two strips are put side by side; the image is labelled with both classes
(`daisy;tulips`). The remaining third are used alone, resized to the square, with their one label.
So a training image never shares a photo with a validation image, and images carry one or two labels
(1.5 on average). The images are JPEG (quality 95) in `OUT/images/`, listed in `OUT/labels.csv`
(`path,label,split`).

Run:  python benchmarks/multi_label_flowers.py [--out /tmp/flowers_multi] [--seeds 0 1 2]
Trains `tl_keras.train` at its defaults (Hub MobileNetV2 1.0, 224 px) on the set, each seed in a
fresh process, and prints mAP, micro/macro F1 and subset accuracy on val (mean +- std), with the
trivial baseline (constant scores: mAP = each class's frequency).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, Timer, require, run_arm, table  # noqa: E402

PAIRED = 2 / 3


def build(flowers_dir: str, out_dir: str, *, size: int = 224, seed: int = 0, per_split: dict | None = None) -> str:
    """Writes the side-by-side multi-label set to `out_dir` and returns its `labels.csv`. `per_split`
    (e.g. `{"train": 60, "val": 40}`) caps the photos drawn per split, for quick tests."""
    import tensorflow as tf

    rows = ["path,label,split"]
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    for split in ("train", "val"):
        folder = os.path.join(flowers_dir, split)
        photos = sorted((os.path.join(folder, c, f), c) for c in sorted(os.listdir(folder))
                        for f in sorted(os.listdir(os.path.join(folder, c))) if not f.startswith("."))
        rng = random.Random(f"{seed}-{split}")
        rng.shuffle(photos)
        photos = photos[:(per_split or {}).get(split, len(photos))]
        paired = int(len(photos) * PAIRED) // 2 * 2
        pairs, singles = [], [[p] for p in photos[paired:]]
        pool = photos[:paired]
        while pool:  # pair each photo with the next one of another class
            first = pool.pop(0)
            other = next((i for i, p in enumerate(pool) if p[1] != first[1]), None)
            if other is None:
                singles.append([first])
                continue
            pairs.append([first, pool.pop(other)])
        for n, group in enumerate(pairs + singles):
            images = [tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False) for p, _ in group]
            if len(images) == 1:
                image = tf.image.resize(images[0], (size, size), antialias=True)
            else:
                strips = []
                for img in images:
                    h, w = int(img.shape[0]), int(img.shape[1])
                    resized = tf.image.resize(img, (size, max(size // 2, round(w * size / h))), antialias=True)
                    left = (int(resized.shape[1]) - size // 2) // 2
                    strips.append(resized[:, left:left + size // 2])
                image = tf.concat(strips, axis=1)
            name = f"{split}_{n:04d}.jpg"
            pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            tf.io.write_file(os.path.join(out_dir, "images", name), tf.io.encode_jpeg(pixels, quality=95))
            rows.append(f"images/{name},{';'.join(sorted({c for _, c in group}))},{split}")
    path = os.path.join(out_dir, "labels.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    return path


def train_arm(labels: str, seed: int) -> dict:
    import tl_keras

    with Timer() as t:
        result = tl_keras.train(labels, backbone=HUB_100, seed=seed, export=False, checkpoint_dir=None, verbose=0)
    report = result.metrics["evaluation"]["val"]
    return {"seconds": t.seconds, "mAP": report["mean_average_precision"], "micro_f1": report["micro_f1"],
            "macro_f1": report["macro_f1"], "subset_accuracy": report["subset_accuracy"],
            "baseline_mAP": _baseline(result), "epochs": f"{result.metrics['head_epochs']}+{result.metrics['fine_tune_epochs']}"}


def _baseline(result) -> float:
    """mAP of constant scores: each class's AP is its frequency among the val images."""
    return float(result.data.val.labels.mean(axis=0).mean())


def _stats(values: list[float]) -> str:
    import numpy as np

    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/tl_keras_flowers_multi_label")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    labels = os.path.join(args.out, "labels.csv")
    if args.arm:
        print(json.dumps(train_arm(labels, args.seed)))
        return
    require(HUB_100)
    build(require(DATASETS["flowers"]), args.out)
    runs = [run_arm(__file__, "--arm", "train", "--out", args.out, "--seed", str(seed)) for seed in args.seeds]
    keys = ["mAP", "micro_f1", "macro_f1", "subset_accuracy", "baseline_mAP"]
    print(f"{labels}; seeds {args.seeds}; Hub MobileNetV2 1.0 at 224 px, tl_keras defaults; val split")
    print(table([{"epochs": " ".join(r["epochs"] for r in runs), **{k: _stats([r[k] for r in runs]) for k in keys},
                  "seconds (mean)": f"{sum(r['seconds'] for r in runs) / len(runs):.1f}"}],
                ["epochs", *keys, "seconds (mean)"]))


if __name__ == "__main__":
    main()
