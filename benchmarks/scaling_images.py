"""(d) How a whole `tl_keras.train` run grows with the number of training images.

The flowers photos (800 train) are extended to 2,400 distinct files with mirrored and upside-down
copies (written to a temporary folder, re-encoded as JPEG); class-balanced subsets of 250, 500, 1000
and 2000 images are then trained with the same settings and the same fixed 200-image val set, each
run in a fresh process.

Run:  python benchmarks/scaling_images.py [--sizes 250 500 1000 2000] [--image-size 160]
Prints a table, then the growth exponent (1.0 = linear) last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, Timer, require, run_arm, table  # noqa: E402

SETTINGS = dict(head_epochs=5, fine_tune_epochs=2)
VAL_PER_CLASS = 40


def build_pool(source: str, target: str) -> list[str]:
    """Writes each train photo as is, mirrored, and upside down: three distinct files per photo."""
    import tensorflow as tf

    classes = sorted(os.listdir(os.path.join(source, "train")))
    for cls in classes:
        src = os.path.join(source, "train", cls)
        os.makedirs(os.path.join(target, "pool", cls))
        for name in sorted(os.listdir(src)):
            image = tf.io.decode_image(tf.io.read_file(os.path.join(src, name)), channels=3, expand_animations=False)
            stem = os.path.splitext(name)[0]
            for tag, variant in (("o", image), ("m", tf.image.flip_left_right(image)), ("u", tf.image.flip_up_down(image))):
                tf.io.write_file(os.path.join(target, "pool", cls, f"{stem}_{tag}.jpg"), tf.io.encode_jpeg(variant, quality=92))
    return classes


def make_subset(source: str, pool: str, classes: list[str], size: int, target: str) -> str:
    """`target/train` with `size` images (balanced) linked from the pool, `target/val` from the real val/."""
    for cls in classes:
        names = sorted(os.listdir(os.path.join(pool, cls)))[: size // len(classes)]
        os.makedirs(os.path.join(target, "train", cls))
        for name in names:
            os.symlink(os.path.join(pool, cls, name), os.path.join(target, "train", cls, name))
        os.makedirs(os.path.join(target, "val", cls))
        for name in sorted(os.listdir(os.path.join(source, "val", cls)))[:VAL_PER_CLASS]:
            os.symlink(os.path.join(source, "val", cls, name), os.path.join(target, "val", cls, name))
    return target


def arm(data_dir: str, image_size: int) -> dict:
    import tl_keras

    with Timer() as clock:
        result = tl_keras.train(data_dir, backbone=HUB_100, image_size=image_size, export=False, verbose=0, **SETTINGS)
    return {"images": result.metrics["num_train_images"], "seconds": clock.seconds,
            "val_accuracy": result.metrics["val_accuracy"], "feature_seconds": result.metrics["feature_cache"]["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.image_size)))
        return
    import numpy as np

    source = require(DATASETS["flowers"])
    require(HUB_100)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        classes = build_pool(source, tmp)
        for size in args.sizes:
            data_dir = make_subset(source, os.path.join(tmp, "pool"), classes, size, os.path.join(tmp, f"n{size}"))
            results.append(run_arm(__file__, "--arm", data_dir, "--image-size", str(args.image_size)))
            print(f"{size} images: done", file=sys.stderr, flush=True)
    base = results[0]
    rows = [{"train images": r["images"], "seconds": f"{r['seconds']:.1f}", "feature pass s": f"{r['feature_seconds']:.1f}",
             "ms per image": f"{1000 * r['seconds'] / r['images']:.1f}",
             "time ratio vs first": f"{r['seconds'] / base['seconds']:.2f}", "image ratio": f"{r['images'] / base['images']:.1f}",
             "val acc": f"{r['val_accuracy']:.3f}"} for r in results]
    print(f"tl_keras.train(Hub MobileNetV2 1.0, {args.image_size} px, "
          + ", ".join(f"{k}={v}" for k, v in SETTINGS.items()) + f"), val {VAL_PER_CLASS * len(classes)} images, fresh process each")
    print(table(rows, list(rows[0])))
    slope = np.polyfit(np.log([r["images"] for r in results]), np.log([r["seconds"] for r in results]), 1)[0]
    print(f"growth exponent of time in the number of images (log-log slope, 1.0 = linear): {slope:.2f}")


if __name__ == "__main__":
    main()
