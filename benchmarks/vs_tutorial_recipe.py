"""(a) tl_keras two-phase fit vs TensorFlow's "Transfer learning and fine-tuning" tutorial recipe.

Both arms use ImageNet MobileNetV2 1.0 at 160 px on the same train/ and val/ folders, each in a fresh
process, one after the other, with the files already in the OS cache:

- recipe: the tutorial in plain Keras: `image_dataset_from_directory`, RandomFlip + RandomRotation(0.2),
  `preprocess_input`, the keras.applications backbone frozen with `training=False`, pooling, dropout
  0.2, a Dense head; 10 epochs of Adam 1e-4; then the backbone unfrozen from layer 100 on and 10 more
  epochs of RMSprop 1e-5. Two classes get the tutorial's one-logit binary head, more get a softmax.
- tl_keras: `tl_keras.train` on the Hub copy of the same network, at 160 px: 10 head epochs on cached
  features, then 3 fine-tuning epochs of the default top blocks with a warm-up cosine schedule.

Run:  python benchmarks/vs_tutorial_recipe.py [--datasets hymenoptera flowers]
Prints a table, then the time ratio (tl_keras / recipe) last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATASETS, HUB_100, KERAS_100, Timer, require, run_arm, table, warm_file_cache  # noqa: E402

IMAGE_SIZE = 160
# The recipe neither checkpoints nor writes a report, so neither does tl_keras here: the two arms
# compare training alike. Both are on by default in `tl_keras.train` (about 1-2 s here).
TL_KERAS_SETTINGS = dict(head_epochs=10, fine_tune_epochs=3, fine_tune_schedule="warmup-cosine",
                         evaluate=False, checkpoint_dir=None)


def recipe(data_dir: str) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    with Timer() as clock:
        kwargs = dict(batch_size=32, image_size=(IMAGE_SIZE, IMAGE_SIZE), seed=0)
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


def tl_keras_arm(data_dir: str) -> dict:
    import tl_keras

    with Timer() as clock:
        result = tl_keras.train(data_dir, backbone=HUB_100, image_size=IMAGE_SIZE, export=False, verbose=0,
                                **TL_KERAS_SETTINGS)
    return {"head_val_accuracy": result.metrics["head_val_accuracy"], "val_accuracy": result.metrics["val_accuracy"],
            "seconds": clock.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "flowers"], choices=sorted(DATASETS))
    parser.add_argument("--arm", choices=["recipe", "tl_keras"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:  # one arm, in this fresh process
        print(json.dumps((recipe if args.arm == "recipe" else tl_keras_arm)(args.data)))
        return
    require(HUB_100), require(KERAS_100)
    rows = []
    for name in args.datasets:
        data_dir = require(DATASETS[name])
        warm_file_cache(data_dir)
        arms = {arm: run_arm(__file__, "--arm", arm, "--data", data_dir) for arm in ("recipe", "tl_keras")}
        for arm, r in arms.items():
            rows.append({"dataset": name, "arm": arm, "head val acc": f"{r['head_val_accuracy']:.3f}",
                         "final val acc": f"{r['val_accuracy']:.3f}", "seconds": f"{r['seconds']:.1f}"})
        ratio = arms["tl_keras"]["seconds"] / arms["recipe"]["seconds"]
        rows.append({"dataset": name, "arm": "tl_keras / recipe", "final val acc":
                     f"{arms['tl_keras']['val_accuracy'] - arms['recipe']['val_accuracy']:+.3f}", "seconds": f"{ratio:.2f}x"})
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"tl_keras: tl_keras.train(backbone=Hub MobileNetV2 1.0, image_size={IMAGE_SIZE}, "
          + ", ".join(f"{k}={v}" for k, v in TL_KERAS_SETTINGS.items()) + "), other arguments default")
    print(table(rows, ["dataset", "arm", "head val acc", "final val acc", "seconds"]))
    ratios = [r["seconds"] for r in rows if r["arm"] == "tl_keras / recipe"]
    print("time ratio tl_keras / recipe: " + ", ".join(f"{n} {r}" for n, r in zip(args.datasets, ratios)))


if __name__ == "__main__":
    main()
