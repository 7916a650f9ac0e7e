"""(c) Inference speed: the exported SavedModel (what `tl-keras predict` runs) vs the in-memory Keras model.

A classifier on the Hub MobileNetV2 1.0 backbone gets a quick head on the real images and is exported;
then the same val images go through both, in batches, alternating the arms for `--repeats` rounds
(median reported):

- arrays: decoded 0-255 images in memory -> `keras.Model.predict` vs `ExportedModel.predict`;
- files: the `tl-keras predict` path, decoding included -> `read_images` + `keras.Model.predict` vs
  `ExportedModel.predict_files`.

Run:  python benchmarks/serving_speed.py [--dataset flowers] [--image-size 160] [--repeats 3]
Prints a table, then the time ratio (SavedModel / Keras) last.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, Timer, require, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="flowers", choices=sorted(DATASETS))
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    import tl_keras
    from tl_keras.images.read import read_images
    from tl_keras.serving.client import ExportedModel

    with tempfile.TemporaryDirectory() as tmp:
        result = tl_keras.train(require(DATASETS[args.dataset]), backbone=require(HUB_100), image_size=args.image_size,
                                head_epochs=2, fine_tune_epochs=0, output=os.path.join(tmp, "model"), verbose=0)
        keras_model, exported = result.model, ExportedModel(result.export_dir)
        paths = result.data.val.paths
        images = np.stack(read_images(paths, args.image_size)).astype("float32")
        arms = {
            ("arrays", "Keras model"): lambda: keras_model.predict(images, batch_size=args.batch_size, verbose=0),
            ("arrays", "SavedModel"): lambda: exported.predict(images, batch_size=args.batch_size),
            ("files", "Keras model"): lambda: keras_model.predict(
                np.stack(read_images(paths, args.image_size)), batch_size=args.batch_size, verbose=0),
            ("files", "SavedModel"): lambda: exported.predict_files(paths),
        }
        outputs = {arm: run() for arm, run in arms.items()}  # warm-up: tracing, first allocations
        np.testing.assert_allclose(outputs[("arrays", "Keras model")], outputs[("arrays", "SavedModel")], atol=1e-5)
        seconds: dict = {arm: [] for arm in arms}
        for _ in range(args.repeats):
            for arm, run in arms.items():
                with Timer() as t:
                    run()
                seconds[arm].append(t.seconds)
    n = len(paths)
    median = {arm: float(np.median(s)) for arm, s in seconds.items()}
    rows = [{"input": kind, "model": model, "seconds": f"{median[(kind, model)]:.2f}",
             "images/s": f"{n / median[(kind, model)]:.0f}"} for kind, model in arms]
    print(f"{args.dataset} val: {n} images at {args.image_size} px, batch {args.batch_size}, "
          f"median of {args.repeats} alternating rounds; outputs agree to 1e-5")
    print(table(rows, ["input", "model", "seconds", "images/s"]))
    files = median[("files", "SavedModel")] / median[("files", "Keras model")]
    arrays = median[("arrays", "SavedModel")] / median[("arrays", "Keras model")]
    print(f"time ratio SavedModel / Keras, files incl. decoding: {files:.2f}x")
    print(f"time ratio SavedModel / Keras: {arrays:.2f}x")


if __name__ == "__main__":
    main()
