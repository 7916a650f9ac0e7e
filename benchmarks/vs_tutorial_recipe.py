"""(a) tl_keras two-phase fit vs TensorFlow's "Transfer learning and fine-tuning" tutorial recipe.

Every arm uses ImageNet MobileNetV2 1.0 on the same train/ and val/ folders, each run in a fresh
process, one after the other, with the files already in the OS cache, for each seed:

- recipe: the tutorial in plain Keras at 160 px: `image_dataset_from_directory`, RandomFlip +
  RandomRotation(0.2), `preprocess_input`, the keras.applications backbone frozen with
  `training=False`, pooling, dropout 0.2, a Dense head; 10 epochs of Adam 1e-4; then the backbone
  unfrozen from layer 100 on and 10 more epochs of RMSprop 1e-5. Two classes get the tutorial's
  one-logit binary head, more get a softmax. Under Keras 3 the unfrozen BatchNormalization layers
  normalise with batch statistics in phase 2: a functional model passes the outer `training=True` to
  nested layers, overriding the tutorial's `base(x, training=False)` (its comment assumes Keras 2).
- tl_keras 10+10: `tl_keras.train` on the Hub copy of the same network at the recipe's 160 px and
  10+10 epochs (early stopping and best-epoch restore at their defaults).
- tl_keras 10+10 at the recipe's depth: as above, phase 2 training the layers the recipe unfreezes
  (its layer 100 on is block_11 to block_16 and Conv_1: `unfreeze_blocks=6`; the recipe keeps
  block_11's expansion conv frozen, tl_keras trains the whole block).
- tl_keras defaults: `tl_keras.train` with every setting at its default (224 px, the backbone's own).

Run:  python benchmarks/vs_tutorial_recipe.py [--datasets hymenoptera flowers] [--seeds 0 1 2] [--arms ...]
Prints a table of mean +- std over the seeds, then the time ratios (tl_keras / recipe) last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    DATASETS,
    HUB_100,
    KERAS_100,
    Timer,
    require,
    run_arm,
    table,
    warm_file_cache,
)

IMAGE_SIZE = 160
# The recipe neither checkpoints nor writes a report, so neither does tl_keras here: the arms compare
# training alike. Both are on by default in `tl_keras.train` (about 1-2 s here).
RUN_SETTINGS = dict(evaluate=False, checkpoint_dir=None, export=False, verbose=0)
RECIPE_SIZE_AND_EPOCHS = dict(image_size=IMAGE_SIZE, head_epochs=10, fine_tune_epochs=10)
ARMS = {"tl_keras 10+10": RECIPE_SIZE_AND_EPOCHS, "tl_keras 10+10, recipe's depth": dict(RECIPE_SIZE_AND_EPOCHS, unfreeze_blocks=6),
        "tl_keras defaults": {}}


def recipe(data_dir: str, seed: int) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    with Timer() as clock:
        kwargs = dict(batch_size=32, image_size=(IMAGE_SIZE, IMAGE_SIZE), seed=seed)
        train_ds = keras.utils.image_dataset_from_directory(os.path.join(data_dir, "train"), shuffle=True, **kwargs)
        val_ds = keras.utils.image_dataset_from_directory(os.path.join(data_dir, "val"), shuffle=False, **kwargs)
        num_classes = len(train_ds.class_names)
        train_ds, val_ds = train_ds.prefetch(tf.data.AUTOTUNE), val_ds.prefetch(tf.data.AUTOTUNE)
        augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
        base = keras.applications.MobileNetV2(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), include_top=False, weights=KERAS_100)
        base.trainable = False
        inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
        x = augmentation(inputs)
        x = keras.applications.mobilenet_v2.preprocess_input(x)
        x = base(x, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.2)(x)
        if num_classes == 2:
            outputs = keras.layers.Dense(1)(x)
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
            metric = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")
        else:
            outputs = keras.layers.Dense(num_classes)(x)
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=[metric])
        head = model.fit(train_ds, epochs=10, validation_data=val_ds, verbose=0)
        base.trainable = True
        for layer in base.layers[:100]:
            layer.trainable = False
        model.compile(optimizer=keras.optimizers.RMSprop(1e-5), loss=loss, metrics=[metric])
        fine = model.fit(train_ds, epochs=20, initial_epoch=len(head.epoch), validation_data=val_ds, verbose=0)
    return {"head_val_accuracy": head.history["val_accuracy"][-1], "val_accuracy": fine.history["val_accuracy"][-1],
            "seconds": clock.seconds}


def tl_keras_arm(data_dir: str, seed: int, settings: dict) -> dict:
    import tl_keras

    train = tl_keras.train  # imports the package's modules before the clock, as the recipe imports Keras
    with Timer() as clock:
        result = train(data_dir, backbone=HUB_100, seed=seed, **RUN_SETTINGS, **settings)
    m = result.metrics
    return {"head_val_accuracy": m["head_val_accuracy"], "val_accuracy": m["val_accuracy"], "seconds": clock.seconds}


def _stats(values: list[float], digits: int = 3) -> str:
    import numpy as np

    return f"{np.mean(values):.{digits}f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=sorted(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                        help="the tl_keras arms to run beside the recipe (default: all)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: one arm, in this fresh process
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        result = recipe(args.data, args.seed) if args.arm == "recipe" else tl_keras_arm(args.data, args.seed, ARMS[args.arm])
        print(json.dumps(result))
        return
    require(HUB_100), require(KERAS_100)
    rows, ratios = [], []
    for name in args.datasets:
        data_dir = require(DATASETS[name])
        warm_file_cache(data_dir)
        runs = {arm: [run_arm(__file__, "--arm", arm, "--data", data_dir, "--seed", str(seed)) for seed in args.seeds]
                for arm in ("recipe", *args.arms)}
        recipe_seconds = sum(r["seconds"] for r in runs["recipe"])
        for arm, results in runs.items():
            seconds = sum(r["seconds"] for r in results)
            gain = [r["val_accuracy"] - q["val_accuracy"] for r, q in zip(results, runs["recipe"])]
            rows.append({"dataset": name, "arm": arm + (" (BatchNorm: batch statistics in phase 2)" if arm == "recipe" else ""),
                         "head val acc": _stats([r["head_val_accuracy"] for r in results]),
                         "final val acc": _stats([r["val_accuracy"] for r in results]),
                         "vs recipe": "" if arm == "recipe" else _stats(gain),
                         "seconds (mean)": f"{seconds / len(results):.1f}",
                         "time / recipe": "" if arm == "recipe" else f"{seconds / recipe_seconds:.2f}x"})
            if arm != "recipe":
                ratios.append(f"{name} {arm} {seconds / recipe_seconds:.2f}x")
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"seeds {args.seeds}; Hub MobileNetV2 1.0 for tl_keras, keras.applications MobileNetV2 1.0 (same weights) for the recipe; "
          f"tl_keras arms: { {arm: ARMS[arm] for arm in args.arms} }, checkpoints and the final report off in every arm")
    print(table(rows, ["dataset", "arm", "head val acc", "final val acc", "vs recipe", "seconds (mean)", "time / recipe"]))
    print("time ratio tl_keras / recipe: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
