"""TFLite export of a tl_keras SavedModel: float32 and dynamic-range int8, with labels, checked against
the SavedModel on real images with the TFLite interpreter TensorFlow ships.

The TFLite model takes float32 RGB 0-255 images already at the model's input size
(`[1, size, size, 3]`; resize on the device, as `labels.txt`'s neighbour `tl_keras.json` says) and
returns class probabilities `[1, num_classes]`. The antialiased resize of the SavedModel has no
TFLite kernel, which is why it stays outside.

Example:

>>> from tl_keras.tflite import export_tflite
>>> report = export_tflite("saved_models/flowers", "saved_models/flowers_tflite",
...                        check_data="../shared/assets/datasets/flowers")  # doctest: +SKIP
>>> report["variants"]["dynamic_int8"]["top1_agreement"]  # doctest: +SKIP
0.995
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from tl_keras.batches import run_batches, slices
from tl_keras.data import load_image_folder
from tl_keras.export import (
    LABELS_FILE,
    METADATA_FILE,
    latest_version_dir,
    read_labels,
    read_metadata,
)

VARIANTS = ("float32", "dynamic_int8")


def _convert(function, loaded, variant: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    if variant == "dynamic_int8":  # int8 weights, float activations: no calibration data needed
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def tflite_predict(model_path: str, images: np.ndarray) -> np.ndarray:
    """Probabilities from a `.tflite` file for float32 images `[n, size, size, 3]`, one at a time."""
    with warnings.catch_warnings():  # "use LiteRT": tf.lite.Interpreter is the one TensorFlow ships
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        interpreter = tf.lite.Interpreter(model_path=model_path)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    out = []
    for image in images:
        interpreter.set_tensor(source["index"], image[None].astype(np.float32))
        interpreter.invoke()
        out.append(interpreter.get_tensor(target["index"])[0].copy())
    return np.stack(out) if out else np.zeros((0, target["shape"][-1]), np.float32)


def export_tflite(
    model_dir: str,
    output_dir: str,
    *,
    variants: Sequence[str] = VARIANTS,
    check_data: str | None = None,
    check_split: str | None = None,
    max_check_images: int | None = None,
) -> dict:
    """Converts a tl_keras export to `.tflite` files in `output_dir`, beside `labels.txt` and `tl_keras.json`.

    Args:
        model_dir: the export (`NAME/` for its latest version, or `NAME/VERSION/`).
        output_dir: created if missing; gets `model_float32.tflite` and/or `model_dynamic_int8.tflite`.
        variants: which of `"float32"` and `"dynamic_int8"` (int8 weights, float compute). Both by default.
        check_data: an image folder (class subfolders) to compare TFLite with the SavedModel on: its
            val/ (or test/, or every image) is run through both; top-1 agreement is reported.
        check_split: the split of `check_data` to use. Defaults to test, else val, else all.
        max_check_images: compare on at most this many images. Defaults to all.

    Returns:
        `{"output_dir", "labels", "image_size", "variants": {name: {"path", "bytes",
        "top1_agreement", "max_abs_diff", "num_check_images"}}}` (agreement keys None without data).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"`variants` must be some of {VARIANTS}. Received: {list(variants)}")
    path = latest_version_dir(model_dir)
    loaded = tf.saved_model.load(path)
    if not hasattr(loaded, "probabilities_at_size"):
        raise ValueError(
            f"{path!r} has no `probabilities_at_size` function: it was exported by an older tl_keras or is "
            "not a tl_keras ImageClassifier export. Export it again with this version (`tl_keras.export_saved_model`)."
        )
    function = loaded.probabilities_at_size.get_concrete_function()
    size = int(function.structured_input_signature[0][0].shape[1])
    labels = read_labels(path)
    os.makedirs(output_dir, exist_ok=True)
    shutil.copy(os.path.join(path, "assets", LABELS_FILE), os.path.join(output_dir, LABELS_FILE))
    with open(os.path.join(output_dir, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump({**read_metadata(path), "tflite_input": f"float32 [1, {size}, {size}, 3], RGB 0-255, resized to {size}x{size}",
                   "source_saved_model": os.path.abspath(path)}, f, indent=2)

    images, reference = None, None
    if check_data:
        folder = load_image_folder(check_data, image_size=size, validation_split=0.5)
        if folder.class_names != labels:
            raise ValueError(f"The classes of {check_data!r} ({', '.join(folder.class_names)}) differ from the model's ({', '.join(labels)}).")
        split = check_split or ("test" if "test" in folder.splits else "val")
        if split not in folder.splits:
            raise ValueError(f"`check_split` must be one of {sorted(folder.splits)}. Received: {split!r}")
        images = np.concatenate([x.numpy() for x, _ in folder.dataset(split, batch_size=64)])[:max_check_images]
        reference = run_batches(loaded.probabilities_at_size, slices(images, 64), len(labels))
    report = {"output_dir": output_dir, "labels": labels, "image_size": size, "variants": {}}
    for variant in variants:
        target = os.path.join(output_dir, f"model_{variant}.tflite")
        with open(target, "wb") as f:
            f.write(_convert(function, loaded, variant))
        entry = {"path": target, "bytes": os.path.getsize(target), "top1_agreement": None, "max_abs_diff": None,
                 "num_check_images": 0}
        if images is not None:
            lite = tflite_predict(target, images)
            entry.update(
                top1_agreement=float((lite.argmax(1) == reference.argmax(1)).mean()),
                max_abs_diff=float(np.abs(lite - reference).max()),
                num_check_images=int(len(images)),
            )
        report["variants"][variant] = entry
    return report
