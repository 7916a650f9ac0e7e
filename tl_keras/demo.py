"""The embedded default: a complete transfer-learning run, offline, on data an installed package ships.

scikit-learn bundles 1,797 real handwritten digits (8x8 scans). The demo splits the scans at random
into two halves and
1. pretrains a small convolutional backbone on the first half, all ten digits (the source task, as
   ImageNet is for photos: a large labelled set that covers the target's kind of images);
2. saves it in TF Hub format, as a model publisher would;
3. writes the target task as an image folder: digits 5-9 from the *other* half (scans the backbone
   never saw), with only two labelled images per class, the rest for validation;
4. transfers the backbone through the same public path a user takes (`tl_keras.train` with a local
   Hub handle: new head, frozen phase, top blocks unfrozen at a tenth of the learning rate, export);
5. trains the same architecture from random weights on the same images for three times the
   transfer's epochs, at tl_keras' default learning rate, ending with its best epoch, for comparison.

With ten labelled images the pretrained features win clearly (seeds 0, 1, 2 in the README). With
many labels per class (`labels_per_class=50`) training from scratch catches up: pretraining pays most
when labels are few.

Examples:
    >>> from tl_keras.demo import run_demo
    >>> metrics = run_demo("saved_models/demo")                # doctest: +SKIP
    >>> metrics["transfer_val_accuracy"] > metrics["scratch_val_accuracy"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tl_keras.api import train
from tl_keras.models.backbones.hub import save_hub_module
from tl_keras.training.callbacks import BestEpoch
from tl_keras.training.compile import compile_for_phase

TARGET_CLASSES = (5, 6, 7, 8, 9)
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_SIZE = 32


def load_digits_rgb() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 RGB `[n, 32, 32, 3]` (0-255) and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("The demo uses scikit-learn's bundled digits: `pip install 'tl_keras[demo]'`.") from err
    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)  # 8x8, 0-16 -> 0-255
    images = np.kron(images, np.ones((4, 4), np.uint8))  # nearest upsampling to 32x32
    return np.repeat(images[..., None], 3, axis=-1), digits.target.astype(np.int32)


def digits_backbone(name: str = "digits_backbone") -> keras.Model:
    """A small CNN in three named blocks: images in [0, 1] -> 64 features.

    BatchNormalization momentum is 0.9 because the source task is short (~120 steps): with the
    default 0.99 the moving statistics would still be near their initial values.
    """
    inputs = keras.Input((None, None, 3))
    x = inputs
    for block, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block_{block}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block_{block}_bn")(x)
        x = keras.layers.ReLU(name=f"block_{block}_relu")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D(name=f"block_{block}_pool")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name)


def _classifier_on(backbone: keras.Model, num_classes: int) -> keras.Model:
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = backbone(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _write_folder(root: str, images: np.ndarray, labels: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, CLASS_NAMES[label])
        os.makedirs(folder, exist_ok=True)
        tf.io.write_file(os.path.join(folder, f"{i:04d}.png"), tf.io.encode_png(image))


def run_demo(
    output_dir: str = os.path.join("saved_models", "demo"),
    *,
    labels_per_class: int = 2,
    source_epochs: int = 8,
    head_epochs: int = 40,
    fine_tune_epochs: int = 10,
    learning_rate: float = 1e-2,
    scratch_learning_rate: float = 1e-3,
    scratch_epochs: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    verbose: int | str = 2,
) -> dict:
    """Runs the demo in `output_dir` (recreated) and returns its metrics; see the module docstring."""
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    if os.path.isdir(output_dir):
        shutil.rmtree(output_dir)
    images, labels = load_digits_rgb()
    rng = np.random.default_rng(seed)

    # 1. Pretrain on the source task: a random half of the scans, all ten digits.
    source = np.zeros(len(labels), bool)
    source[rng.permutation(len(labels))[: len(labels) // 2]] = True
    backbone = digits_backbone()
    source_model = _classifier_on(backbone, len(CLASS_NAMES))
    compile_for_phase(source_model, 3e-3)
    source_model.fit(images[source], labels[source], epochs=source_epochs, batch_size=64, verbose=verbose)

    # 2. Publish the backbone in TF Hub format.
    hub_dir = save_hub_module(backbone, os.path.join(output_dir, "digits_backbone"))

    # 3. The target task, on the scans the backbone never saw: few labels per class for training, the
    # rest for validation.
    target_idx = np.flatnonzero(np.isin(labels, TARGET_CLASSES) & ~source)
    rng.shuffle(target_idx)
    train_idx = np.concatenate([target_idx[labels[target_idx] == c][:labels_per_class] for c in TARGET_CLASSES])
    val_idx = np.setdiff1d(target_idx, train_idx)
    data_dir = os.path.join(output_dir, "digits_5-9")
    _write_folder(os.path.join(data_dir, "train"), images[train_idx], labels[train_idx])
    _write_folder(os.path.join(data_dir, "val"), images[val_idx], labels[val_idx])

    # 4. Transfer through the public path: local Hub handle -> head -> two-phase fit -> export.
    result = train(
        data_dir, backbone=hub_dir, image_size=IMAGE_SIZE, batch_size=batch_size, head_epochs=head_epochs,
        fine_tune_epochs=fine_tune_epochs, unfreeze_blocks=1, learning_rate=learning_rate,
        normalize_features=True,  # this small backbone's pooled features are small: standardised, the head learns in 40 epochs
        augment=False,  # mirrored or cropped digits change identity: flips are no "light" change here
        output=os.path.join(output_dir, "export"), seed=seed, verbose=verbose,
    )

    # 5. The same architecture from random weights, same images, judged as the transfer is: it ends with
    # its best epoch by val_loss. It gets three times the transfer's epochs (it starts from nothing) and
    # tl_keras' default learning rate (1e-3): the transfer's head rate makes training from scratch
    # diverge on some seeds, which would flatter the transfer.
    scratch_epochs = scratch_epochs or 3 * (head_epochs + fine_tune_epochs)
    keras.utils.set_random_seed(seed)
    scratch = _classifier_on(digits_backbone("scratch_backbone"), len(TARGET_CLASSES))
    compile_for_phase(scratch, scratch_learning_rate)
    train_ds = result.data.dataset("train", batch_size=batch_size, training=True, augment=False)
    val_ds = result.data.dataset("val", batch_size=512)  # one step an epoch: the scratch run validates 150 times
    scratch.fit(train_ds, validation_data=val_ds, epochs=scratch_epochs, callbacks=[BestEpoch()], verbose=0)
    scratch_accuracy = float(scratch.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])

    return {
        "source_task": "digits 0-9, half of the scans",
        "target_task": "digits 5-9, the other half",
        "source_train_images": int(source.sum()),
        "target_train_images": len(result.data.train),
        "target_val_images": len(result.data.val),
        "head_val_accuracy": result.metrics["head_val_accuracy"],
        "transfer_val_accuracy": result.metrics["val_accuracy"],
        "scratch_val_accuracy": scratch_accuracy,
        "scratch_learning_rate": scratch_learning_rate,
        "scratch_epochs": scratch_epochs,
        "hub_backbone_dir": hub_dir,
        "data_dir": data_dir,
        "export_dir": result.export_dir,
        "seconds": round(time.perf_counter() - started, 1),
    }
