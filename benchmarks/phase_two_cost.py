"""What one epoch of phase 2 costs, in passes of the backbone over the same images (issue 29's floor ratio).

The floor ratio (benchmarks/floor_ratio.py) divides a training run's time by one inference pass over
the same images (decoding plus one forward pass of the model). Where phase 2 runs its decaying
schedule to the end (the sets with no "up", `symmetry` dihedral), its epochs are most of a run. This
script times, side by side in one process on the same 64 cached boundary activations (Hub
MobileNetV2 1.0, 224 px, batch 64):

- `full`: the whole backbone's forward pass per image (what inference costs, decoding left out);
- per depth (`--depths`, default 4 and 8 top blocks): a training step of phase 2's boundary model
  (forward, backward, Adam update) per image, and its forward pass per image (what validation costs);

then prices one phase-2 epoch on each shared set (every train image one training step, every val
image one forward pass) and the phase's `--epochs` epochs, both in full-pass units per image of the
set: a lower bound on what phase 2 alone adds to the floor ratio, when decoding costs nothing.

Run:  python benchmarks/phase_two_cost.py [--depths 4 8] [--epochs 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ALL_DATASETS, HUB_100, Timer, count_files, require, table  # noqa: E402

BATCH = 64


def _median_per_image(fn, repeats: int) -> float:
    fn()  # traces
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds / BATCH)
    return float(np.median(times))


def _depth_costs(model, images, depth: int, repeats: int) -> tuple[float, float]:
    """(training step, forward) seconds per image of phase 2's boundary model at the top `depth` blocks."""
    import tensorflow as tf

    from tl_keras.training.caches import boundary_model, boundary_pass
    from tl_keras.training.checkpoint import build_optimizer
    from tl_keras.training.compile import compile_for_phase

    model.backbone.set_trainable_blocks(depth)
    bottom, top = model.backbone.split_at_trainable()
    activations = boundary_pass(model, bottom)(images)
    trainee = boundary_model(model, top, activations.shape[1:])
    compile_for_phase(trainee, 1e-4, jit_compile=False)  # as phase 2 compiles it on a CPU
    build_optimizer(trainee)
    labels = tf.constant(np.arange(BATCH) % int(model.output.shape[-1]))
    forward = tf.function(lambda x: trainee(x, training=False))
    step = _median_per_image(lambda: trainee.train_on_batch(activations, labels), repeats)
    return step, _median_per_image(lambda: forward(activations).numpy(), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf

    from tl_keras.models.classifier import build_classifier
    from tl_keras.training.caches import feature_extractor

    model = build_classifier(require(HUB_100), 10, image_size=224)
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (BATCH, 224, 224, 3)).astype("float32"))
    full_pass = feature_extractor(model)
    full = _median_per_image(lambda: full_pass(images).numpy(), args.repeats)
    costs = {depth: _depth_costs(model, images, depth, args.repeats) for depth in args.depths}
    print(f"per image (median of {args.repeats}, batch {BATCH}): full pass {full * 1e3:.2f} ms; " + "; ".join(
        f"top {d}: training step {s * 1e3:.2f} ms ({s / full:.2f} of a full pass), forward {f * 1e3:.2f} ms ({f / full:.2f})"
        for d, (s, f) in costs.items()))
    rows = []
    for name, folder in ALL_DATASETS.items():
        n, v = count_files(require(folder), "train"), count_files(folder, "val")
        row = {"dataset": name, "train": n, "val": v}
        for depth, (step, forward) in costs.items():
            epoch = (n * step + v * forward) / full / (n + v)
            row[f"top {depth}: epoch"] = f"{epoch:.2f}"
            row[f"top {depth}: {args.epochs} epochs"] = f"{args.epochs * epoch:.1f}"
        rows.append(row)
    columns = ["dataset", "train", "val"] + [f"top {d}: {k}" for d in args.depths for k in ("epoch", f"{args.epochs} epochs")]
    print(table(rows, columns))
    print(f"full-pass units per image of the set (train + val); {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
