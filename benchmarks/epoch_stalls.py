"""Epoch stalls: phase 2's epochs with tf.data autotuning on (TensorFlow's default) and off (tl_keras').

Keras makes a new dataset iterator every epoch (and one for every validation pass). With tf.data's
autotuning on, destroying the previous iterator waits for its autotuning thread, and on this machine
that held up the first training step of many epochs for seconds with both cores idle. tl_keras'
pipelines (`tl_keras.data.finish`) turn autotuning off; this script measures what that changes.

Arms, each in a fresh process, alternating, side by side in one run: the boundary model of a
default run (flowers, Hub MobileNetV2 1.0, top 8 blocks, 224 px, 2 views) trained for `--epochs`
epochs with validation, on the same cached activations, once with tl_keras' datasets (`off`) and once
with autotuning switched back on for them (`on`). Per arm: seconds per epoch (the first, which
traces, is left out), the first step's seconds, the epochs whose first step took over a second
(stalls), and the last val loss (the arms compute the same thing: it must match).

Run:  python benchmarks/epoch_stalls.py [--dataset flowers] [--epochs 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, require, run_arm, table, warm_file_cache  # noqa: E402


def arm(data: str, autotune: bool, epochs: int) -> dict:
    import keras
    import tensorflow as tf

    from tl_keras.data.epochs import epoch_variable
    from tl_keras.data.folder import load_image_folder
    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.caches import boundary_model, compute_boundary
    from tl_keras.training.callbacks import EpochSeed
    from tl_keras.training.compile import compile_for_phase

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # as `train` runs
    folder = load_image_folder(data, image_size=224, seed=0)
    model = build_classifier(HUB_100, len(folder.class_names), image_size=224)
    model.backbone.set_trainable_blocks(8)
    boundary = compute_boundary(model, folder, views=2)
    trainee = boundary_model(model, boundary.top, boundary.train.shape[2:])
    compile_for_phase(trainee, 1e-4)
    train, val = boundary.datasets()
    epoch = epoch_variable(train)
    if autotune:  # TensorFlow's default, on top of tl_keras' pipeline
        options = tf.data.Options()
        options.autotune.enabled = True
        train, val = train.with_options(options), val.with_options(options)

    class Steps(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.start = self.last = time.perf_counter()
            self.steps = []

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.steps.append(now - self.last)
            self.last = now

        def on_epoch_end(self, e, logs=None):
            record.append({"seconds": time.perf_counter() - self.start, "first": self.steps[0],
                           "median": float(np.median(self.steps)), "val_loss": float(logs["val_loss"])})

    record: list[dict] = []
    trainee.fit(train, validation_data=val, epochs=epochs, verbose=0, shuffle=False,
                callbacks=[EpochSeed(epoch), Steps()])
    later = record[1:]
    return {"epoch_s": float(np.mean([r["seconds"] for r in later])),
            "first_step_s": float(np.median([r["first"] for r in later])),
            "step_s": float(np.median([r["median"] for r in later])),
            "stalls": sum(r["first"] > 1.0 for r in later), "epochs": len(later),
            "phase_s": sum(r["seconds"] for r in later), "val_loss": record[-1]["val_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="flowers", choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arm", choices=["on", "off"], help=argparse.SUPPRESS)  # internal: one arm, JSON out
    args = parser.parse_args()
    data = require(DATASETS[args.dataset])
    if args.arm:
        print(json.dumps(arm(data, args.arm == "on", args.epochs)))
        return
    require(HUB_100)
    warm_file_cache(data)
    rows, totals = [], {"off": [], "on": []}
    for repeat in range(args.repeats):
        for name in ("off", "on"):
            r = run_arm(__file__, "--dataset", args.dataset, "--epochs", str(args.epochs), "--arm", name)
            totals[name].append(r["phase_s"])
            rows.append({"repeat": repeat, "autotune": name, "epoch s": f"{r['epoch_s']:.1f}",
                         "first step s": f"{r['first_step_s']:.2f}", "median step s": f"{r['step_s']:.2f}",
                         "stalls (first step > 1 s)": f"{r['stalls']} of {r['epochs']}",
                         "last val loss": f"{r['val_loss']:.6f}"})
    print(table(rows, ["repeat", "autotune", "epoch s", "first step s", "median step s",
                       "stalls (first step > 1 s)", "last val loss"]))
    ratio = np.mean(totals["on"]) / np.mean(totals["off"])
    print(f"{args.dataset}, epochs 2..{args.epochs} of each arm, {os.cpu_count()} CPU cores: autotuning on takes "
          f"{ratio:.2f}x the time of tl_keras' pipelines (off).")


if __name__ == "__main__":
    main()
