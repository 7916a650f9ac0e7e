"""TFLite export of a tl_keras SavedModel: float32, dynamic-range int8, float16 and full-integer int8,
with labels, checked against the SavedModel on real images with LiteRT's interpreter.

The TFLite model takes RGB 0-255 images already at the model's input size (`[1, size, size, 3]`;
resize on the device, as `labels.txt`'s neighbour `tl_keras.json` says) and returns class
probabilities `[1, num_classes]`: float32 in and out, except `int8_full`, whose input is uint8 pixels
and whose output is uint8 probabilities (scale 1/256; `tflite_predict` converts both). The
antialiased resize of the SavedModel has no TFLite kernel, which is why it stays outside.

Variants (`quantize` names in brackets): `float32` (none); `dynamic_int8` (dynamic: int8 weights,
float activations, no calibration data); `float16` (float16 weights, for GPU delegates);
`int8_full` (int8-full: weights and activations in int8, calibrated on a representative dataset
drawn from the training images, integer input and output: Edge TPU, microcontrollers).

Models are run with LiteRT's interpreter (`ai-edge-litert`, the `tflite` extra); where it is not
installed, with the `tf.lite.Interpreter` TensorFlow still ships, and the report says which.

Examples:
    >>> from tl_keras.export.tflite import export_tflite
    >>> report = export_tflite("saved_models/flowers", "saved_models/flowers_tflite", quantize=["int8-full"],
    ...                        check_data="../shared/assets/datasets/flowers")  # doctest: +SKIP
    >>> report["variants"]["int8_full"]["top1_agreement"]  # doctest: +SKIP
    0.99
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from tl_keras.data.sources import split_arrays
from tl_keras.export.saved_model import (
    LABELS_FILE,
    METADATA_FILE,
    input_text,
    latest_version_dir,
    load_at_size,
    read_labels,
    read_metadata,
    recorded_framing,
)
from tl_keras.utils.batches import run_batches, slices
from tl_keras.utils.files import atomic_write

VARIANTS = ("float32", "dynamic_int8", "float16", "int8_full")
DEFAULT_VARIANTS = ("float32", "dynamic_int8")
# `--quantize` names -> variant names (the file is model_<variant>.tflite).
QUANTIZE = {"none": "float32", "dynamic": "dynamic_int8", "float16": "float16", "int8-full": "int8_full"}


def _convert(function, loaded, variant: str, representative: np.ndarray | None = None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8_full":  # every op in int8, calibrated on real training images; uint8 pixels in
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def interpreter_name() -> str:
    """Which interpreter `tflite_predict` uses: LiteRT's when `ai-edge-litert` is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tf.lite.Interpreter (ai-edge-litert is not installed: pip install \"tl_keras[tflite]\")"
    return "ai_edge_litert"


def _interpreter(model_path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():  # "use LiteRT": it is not installed, so this is the one there is
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            return tf.lite.Interpreter(model_path=model_path)
    return Interpreter(model_path=model_path)


def tflite_predict(model_path: str, images: np.ndarray) -> np.ndarray:
    """Probabilities (float32) from a `.tflite` file for RGB 0-255 images `[n, size, size, 3]`, one
    at a time; integer inputs and outputs (`int8_full`) are quantized and dequantized here."""
    interpreter = _interpreter(model_path)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    out = []
    for image in images:
        x = image[None].astype(np.float32)
        if source["dtype"] != np.float32:
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(source["dtype"])
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(target["index"])[0].copy()
        if target["dtype"] != np.float32:
            scale, zero = target["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        out.append(y)
    return np.stack(out) if out else np.zeros((0, target["shape"][-1]), np.float32)


def variants_for(quantize: Sequence[str]) -> list[str]:
    """`quantize` names (`none`, `dynamic`, `float16`, `int8-full`) as variant names."""
    unknown = [q for q in quantize if q not in QUANTIZE]
    if unknown or not quantize:
        raise ValueError(f"`quantize` must be some of {sorted(QUANTIZE)}. Received: {list(quantize)}")
    return [QUANTIZE[q] for q in quantize]


def export_tflite(
    model_dir: str,
    output: str,
    *,
    variants: Sequence[str] | None = None,
    quantize: Sequence[str] | None = None,
    check_data: str | None = None,
    check_split: str | None = None,
    max_check_images: int | None = None,
    representative_data: str | None = None,
    representative_images: int = 200,
) -> dict:
    """Converts a tl_keras export to `.tflite`.

    Args:
        model_dir: the export (`NAME/` for its latest version, or `NAME/VERSION/`).
        output: a folder (created if missing) that gets `model_<variant>.tflite` for each variant,
            `labels.txt` and `tl_keras.json`; or a path ending in `.tflite`, which holds one variant
            (float32 unless one other is asked for) and nothing beside it (the labels are the
            export's `assets/labels.txt`).
        variants: some of `VARIANTS`. Defaults to float32 and dynamic_int8 for a folder, float32
            for a `.tflite` file.
        quantize: the same by `--quantize` name: some of `none`, `dynamic`, `float16`, `int8-full`.
            Give `variants` or `quantize`, not both.
        check_data: an image folder or label file to compare TFLite with the SavedModel on: its test/
            (else val/) images run through both, and the top-1 agreement, the largest probability
            difference and each one's accuracy are reported.
        check_split: the split of `check_data` to use. Defaults to test, else val.
        max_check_images: compare on at most this many images. Defaults to all.
        representative_data: the folder or label file whose train split calibrates `int8_full`.
            Defaults to `check_data`, else the training data the export recorded
            (`"training_data"` in `assets/tl_keras.json`) if it is still there.
        representative_images: calibration images, a seeded draw from that split. Defaults to 200.

    Returns:
        `{"output", "output_dir", "labels", "image_size", "interpreter", "saved_model_accuracy",
        "variants": {name: {"path", "bytes", "top1_agreement", "max_abs_diff", "accuracy",
        "num_check_images"}}}` (the check keys None without `check_data`). For a multi-label export,
        `top1_agreement` is the share of images whose every class flag agrees at the export's
        thresholds, and `accuracy` the subset accuracy there.
    """
    single = output.lower().endswith(".tflite")
    if single and variants is None and quantize is None:
        variants = ["float32"]  # one file holds one model: the float32 one unless asked otherwise
    variants = _variants(variants, quantize)
    if single and len(variants) != 1:
        raise ValueError(f"`output` {output!r} names one .tflite file, so it takes exactly one variant; received "
                         f"{variants}. Pass a folder to write several.")
    path = latest_version_dir(model_dir)
    metadata = read_metadata(path)
    source = representative_data or check_data or _recorded_training_data(metadata)
    if "int8_full" in variants and not source:
        recorded = metadata.get("training_data")
        where = (f" The export records its training data at {recorded!r}, which is no longer there." if recorded
                 else " The export records no training data (exported before tl_keras 0.2, or from tf.data datasets).")
        raise ValueError("The int8_full variant (--quantize int8-full) calibrates on training images: pass "
                         "`representative_data` (--representative-data DATA_DIR) or `check_data` (--check-data)." + where)
    path, loaded, function, size = load_at_size(model_dir)
    labels = read_labels(path)
    crop = recorded_framing(metadata)
    representative = None
    if "int8_full" in variants:
        representative, _ = split_arrays(source, labels, size, "train", representative_images, crop_to_aspect_ratio=crop)
    check = None
    if check_data:
        images, targets = split_arrays(check_data, labels, size, check_split, max_check_images, crop_to_aspect_ratio=crop)
        thresholds = metadata.get("thresholds")  # multi-label: a class is predicted at its threshold
        thresholds = None if thresholds is None else np.array([thresholds[name] for name in labels])
        check = images, targets, run_batches(loaded.probabilities_at_size, slices(images, 64), len(labels)), thresholds
    out_dir = os.path.dirname(os.path.abspath(output)) if single else output
    os.makedirs(out_dir, exist_ok=True)
    if not single:
        _write_sidecars(path, out_dir, size, metadata)
    report = {"output": output, "output_dir": out_dir, "labels": labels, "image_size": size,
              "interpreter": interpreter_name() if check else None,
              "saved_model_accuracy": None if check is None else _accuracy(check[2], check[1], check[3]),
              "variants": {}}
    for variant in variants:
        target = output if single else os.path.join(output, f"model_{variant}.tflite")
        model = _convert(function, loaded, variant, representative)
        atomic_write(target, lambda f: f.write(model))
        report["variants"][variant] = {"path": target, "bytes": os.path.getsize(target), **_compare(target, check)}
    return report


def _recorded_training_data(metadata: dict) -> str | None:
    """The training data an export recorded, if it is still there."""
    recorded = metadata.get("training_data")
    return recorded if recorded and os.path.exists(recorded) else None


def _variants(variants: Sequence[str] | None, quantize: Sequence[str] | None) -> list[str]:
    if variants is not None and quantize is not None:
        raise ValueError("Give `variants` or `quantize`, not both.")
    variants = list(DEFAULT_VARIANTS if variants is None and quantize is None else variants or variants_for(quantize))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"`variants` must be some of {VARIANTS}. Received: {variants}")
    return list(dict.fromkeys(variants))


def _write_sidecars(path: str, out_dir: str, size: int, metadata: dict) -> None:
    shutil.copy(os.path.join(path, "assets", LABELS_FILE), os.path.join(out_dir, LABELS_FILE))
    meta = {**metadata, "tflite_input": f"float32 [1, {size}, {size}, 3], {input_text(size, recorded_framing(metadata))} "
            "(model_int8_full.tflite: uint8 pixels in, uint8 probabilities out, scale 1/256)",
            "source_saved_model": os.path.abspath(path)}
    atomic_write(os.path.join(out_dir, METADATA_FILE), lambda f: f.write(json.dumps(meta, indent=2).encode()))


def _compare(target: str, check) -> dict:
    """Top-1 agreement, largest probability difference and accuracy of a .tflite file on the check images."""
    if check is None:
        return {"top1_agreement": None, "max_abs_diff": None, "accuracy": None, "num_check_images": 0}
    images, targets, reference, thresholds = check
    lite = tflite_predict(target, images)
    return {"top1_agreement": float((_predicted(lite, thresholds) == _predicted(reference, thresholds)).all(-1).mean()
                                    if thresholds is not None else (lite.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(lite - reference).max()),
            "accuracy": _accuracy(lite, targets, thresholds), "num_check_images": int(len(images))}


def _predicted(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return probabilities >= thresholds[None, :]


def _accuracy(probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | None) -> float:
    """Top-1 accuracy; for a multi-label model (`thresholds`), subset accuracy at its thresholds."""
    if thresholds is None:
        return float((probabilities.argmax(1) == targets).mean())
    return float((_predicted(probabilities, thresholds) == (targets >= 0.5)).all(-1).mean())
