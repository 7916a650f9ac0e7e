"""Image size from the training images alone: does a larger size pay? The ridge classifier's
leave-one-out accuracy on the training features (what the ridge head start computes anyway) at the
backbone's 224 px and at 288 px, beside the same classifier's val accuracy, on every shared set.

A rule `image_size="auto"` could compute the training features at both sizes (one more pass) and
enlarge where leave-one-out gains; it is only worth building if the leave-one-out change points the
same way as the val change (and as the trained runs' change, docs/benchmarks/accuracy.md).

Run:  python benchmarks/image_size_probe.py [--datasets materials_fmd hymenoptera ...] [--sizes 224 288]
Prints one row per set and size: leave-one-out accuracy, val accuracy, the penalty chosen, seconds.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, require, table


def probe(data: str, size: int) -> dict:
    from tl_keras.config import TrainConfig
    from tl_keras.models.preamble import build_model, load_folder, resolve_spec
    from tl_keras.training.caches import compute_features
    from tl_keras.utils.ridge import fit_ridge

    config = TrainConfig(backbone=HUB_100, image_size=size)
    spec = resolve_spec(data, config)
    folder = load_folder(data, config, spec)
    features = compute_features(build_model(spec, folder, config), folder)  # un-augmented train and val, batch 64
    train, val = features.train[0].astype(np.float64), features.val.astype(np.float64)
    fit = fit_ridge(train, np.asarray(folder.train.labels), len(folder.class_names))
    val_accuracy = float((fit.predict(val) == np.asarray(folder.val.labels)).mean())
    return {"leave-one-out": round(float(fit.loo_accuracy), 4), "val": round(val_accuracy, 4), "penalty": fit.penalty,
            "train images": len(train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(ALL_DATASETS), choices=list(ALL_DATASETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 288])
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        data = require(ALL_DATASETS[name])
        for size in args.sizes:
            with Timer() as timer:
                row = probe(data, size)
            rows.append({"dataset": name, "size": size, **row, "seconds": round(timer.seconds, 1)})
            print(rows[-1], file=sys.stderr, flush=True)
    print(table(rows, ["dataset", "size", "train images", "leave-one-out", "val", "penalty", "seconds"]))


if __name__ == "__main__":
    main()
