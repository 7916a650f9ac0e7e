"""What one backbone pass for both caches would save (issue 29, item 4), from measured costs.

Phase 1 caches the backbone's features of every un-augmented train image and every val image (one
full pass each); phase 2 caches the activations below its trainable blocks of 2 augmented views of
every train image and of every val image (one pass of the frozen bottom each). This script times,
side by side in one process on the same batches, a full pass, the bottom's pass and the top's pass
(activations -> features) per image, at the defaults (Hub MobileNetV2 1.0, 224 px, the top 8
blocks), then prices three plans on each shared set's sizes, in full-pass units:

- `today`: full(train + val) + bottom(2 x train + val);
- `share val`: phase 1's val features from phase 2's val activations through the top, the only
  sharing that changes no number the run computes: full(train) + bottom(2 x train + val) + top(val);
- `share all`: phase 1 trained on the features of phase 2's two augmented views (not what phase 1
  trains on today: its accuracy would have to be measured again): bottom(2 x train + val) + top(2 x train + val).

Run:  python benchmarks/boundary_split.py [--blocks 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, count_files, require, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf

    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.caches import boundary_pass, feature_extractor

    model = build_classifier(require(HUB_100), 10, image_size=224)
    full = feature_extractor(model)
    model.backbone.set_trainable_blocks(args.blocks)
    bottom, top = model.backbone.split_at_trainable()
    run_bottom = boundary_pass(model, bottom)  # what compute_boundary runs
    run_top = tf.function(top, reduce_retracing=True)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (64, 224, 224, 3)).astype("float32"))
    activations = run_bottom(images)
    np.testing.assert_allclose(run_top(activations).numpy(), full(images).numpy(), atol=1e-3)  # the same function, split
    seconds = {"full": [], "bottom": [], "top": []}
    for _ in range(args.repeats + 1):  # the first round traces
        for name, fn, x in (("full", full, images), ("bottom", run_bottom, images), ("top", run_top, activations)):
            with Timer() as t:
                fn(x).numpy()
            seconds[name].append(t.seconds / 64)
    per_image = {k: float(np.median(v[1:])) for k, v in seconds.items()}
    print(f"per image (median of {args.repeats}, batch 64): full {per_image['full'] * 1e3:.2f} ms, "
          f"bottom {per_image['bottom'] * 1e3:.2f} ms ({per_image['bottom'] / per_image['full']:.2f} of full), "
          f"top {per_image['top'] * 1e3:.2f} ms ({per_image['top'] / per_image['full']:.2f}); "
          f"activations {list(activations.shape[1:])}")
    b, t = per_image["bottom"] / per_image["full"], per_image["top"] / per_image["full"]
    rows = []
    for name, folder in ALL_DATASETS.items():
        n, v = count_files(require(folder), "train"), count_files(folder, "val")
        today = (n + v) + b * (2 * n + v)
        share_val = n + b * (2 * n + v) + t * v
        share_all = (b + t) * (2 * n + v)
        rows.append({"dataset": name, "train": n, "val": v, "today": f"{today:.0f}",
                     "share val": f"{share_val:.0f} ({share_val / today:.3f}x)",
                     "share all": f"{share_all:.0f} ({share_all / today:.3f}x)"})
    print(table(rows, ["dataset", "train", "val", "today", "share val", "share all"]))
    print(f"full-pass units of backbone work for both caches at the top {args.blocks} blocks; {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
