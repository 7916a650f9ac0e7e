"""(b) Phase-1 epoch time: the head trained on cached features vs a frozen-backbone `fit`.

Same model, data (decoded images in memory, as `tl_keras.train` holds them), batch size and epochs.
The cached arm's one-off feature pass is reported separately and in the per-run totals.

Run:  python benchmarks/cached_features.py [--dataset flowers] [--epochs 5] [--image-size 160]
Prints a table, then the per-epoch speed-up last.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import DATASETS, HUB_100, Timer, require, table  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    """Collects each epoch's wall time."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="flowers", choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from tl_keras.data.folder import load_image_folder
    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.caches import compute_features
    from tl_keras.training.phases import fine_tune

    folder = load_image_folder(require(DATASETS[args.dataset]), image_size=args.image_size)
    train_ds = folder.dataset("train", batch_size=args.batch_size, training=True, augment=False)
    val_ds = folder.dataset("val", batch_size=args.batch_size)
    results = {}
    for arm in ("frozen fit", "cached features"):
        keras.utils.set_random_seed(0)
        model = build_classifier(require(HUB_100), len(folder.class_names), image_size=args.image_size)
        features, prep = None, 0.0
        if arm == "cached features":
            with Timer() as t:
                features = compute_features(model, folder, batch_size=args.batch_size)
            prep = t.seconds
        times = EpochTimes()
        with Timer() as total:
            history = fine_tune(model, train_ds, val_ds, head_epochs=args.epochs, fine_tune_epochs=0,
                                features=features, callbacks=[times], verbose=0)
        # The first epoch also traces the step functions; the steady state is the median of the rest.
        results[arm] = {"epoch": float(np.median(times.seconds[1:])), "first": times.seconds[0], "prep": prep,
                        "total": total.seconds + prep, "acc": history.last("val_accuracy")}
    rows = [{"arm": arm, "feature pass s": f"{r['prep']:.2f}", "first epoch s": f"{r['first']:.2f}",
             "epoch s (median)": f"{r['epoch']:.3f}", f"phase 1 total s ({args.epochs} epochs)": f"{r['total']:.1f}",
             "head val acc": f"{r['acc']:.3f}"} for arm, r in results.items()]
    print(f"{args.dataset}: {len(folder.train)} train / {len(folder.val)} val images, Hub MobileNetV2 1.0 at "
          f"{args.image_size} px, batch {args.batch_size}, train + val per epoch")
    print(table(rows, list(rows[0])))
    speedup = results["frozen fit"]["epoch"] / results["cached features"]["epoch"]
    total = results["frozen fit"]["total"] / results["cached features"]["total"]
    print(f"phase-1 whole-phase speed-up incl. the feature pass: {total:.1f}x")
    print(f"phase-1 epoch speed-up with cached features: {speedup:.0f}x")


if __name__ == "__main__":
    main()
