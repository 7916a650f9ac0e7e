"""ONNX export of a tl_keras SavedModel (tf2onnx), checked against the SavedModel with onnxruntime.

The ONNX model is the export's `probabilities_at_size` function: float32 RGB 0-255 images already at
the model's input size, `images [batch, size, size, 3]` -> `probabilities [batch, num_classes]`. The
SavedModel's antialiased resize (`ScaleAndTranslate`) stays outside, as for TFLite: onnxruntime has
no kernel for it, so a graph that kept it would not load. The class names and input size are stored in
the model's `metadata_props` (`labels`: a JSON list in output order; `image_size`;
`crop_to_aspect_ratio`: `true` when images are cut to their centred square before the resize;
`input`, the same in words; `source`), and the opset is recorded there and in the report.

Needs the `onnx` extra (`tf2onnx`, `onnxruntime`).

Examples:
    >>> from tl_keras.export.onnx import export_onnx
    >>> report = export_onnx("saved_models/flowers", "flowers.onnx",
    ...                      check_data="../shared/assets/datasets/flowers")  # doctest: +SKIP
    >>> report["top1_agreement"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from tl_keras.data.sources import split_arrays
from tl_keras.export.saved_model import (
    input_text,
    load_at_size,
    read_labels,
    read_metadata,
    recorded_framing,
)
from tl_keras.utils.batches import run_batches, slices
from tl_keras.utils.files import atomic_write

DEFAULT_OPSET = 17


def _require():
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx
    except ImportError as err:
        raise ImportError(f"ONNX export needs tf2onnx and onnxruntime ({err}): pip install \"tl_keras[onnx]\"") from None
    return tf2onnx


def onnx_predict(model_path: str, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities from an `.onnx` file for float32 images `[n, size, size, 3]`, run by onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    width = session.get_outputs()[0].shape[-1]
    return run_batches(lambda x: session.run(None, {name: x.astype(np.float32)})[0], slices(images, batch_size), width)


def export_onnx(
    model_dir: str,
    output: str,
    *,
    opset: int = DEFAULT_OPSET,
    check_data: str | None = None,
    check_split: str | None = None,
    max_check_images: int | None = None,
) -> dict:
    """Converts a tl_keras export to one `.onnx` file.

    Args:
        model_dir: the export (`NAME/` for its latest version, or `NAME/VERSION/`).
        output: the `.onnx` file to write.
        opset: the ONNX opset. Defaults to 17.
        check_data: an image folder or label file: its test/ (else val/) images run through the
            SavedModel and onnxruntime; the top-1 agreement, the largest probability difference and
            both accuracies are reported.
        check_split: the split of `check_data` to use. Defaults to test, else val.
        max_check_images: compare on at most this many images. Defaults to all.

    Returns:
        `{"path", "bytes", "opset", "image_size", "labels", "input", "output", "top1_agreement",
        "max_abs_diff", "accuracy", "saved_model_accuracy", "num_check_images"}` (the check keys None
        without `check_data`).
    """
    if not output.lower().endswith(".onnx"):
        raise ValueError(f"`output` must be a file ending in .onnx. Received: {output!r}")
    tf2onnx = _require()
    path, loaded, _, size = load_at_size(model_dir)
    labels, crop = read_labels(path), recorded_framing(read_metadata(path))
    spec = [tf.TensorSpec([None, size, size, 3], tf.float32, name="images")]
    function = tf.function(lambda images: {"probabilities": loaded.probabilities_at_size(images)}, input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
    for key, value in {"labels": json.dumps(labels), "image_size": str(size), "source": os.path.abspath(path),
                       "opset": str(opset), "crop_to_aspect_ratio": json.dumps(crop),
                       "input": f"images float32 [batch, {size}, {size}, 3], {input_text(size, crop)}"}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    atomic_write(output, lambda f: f.write(proto.SerializeToString()))
    report = {"path": output, "bytes": os.path.getsize(output), "opset": opset, "image_size": size, "labels": labels,
              "input": proto.graph.input[0].name, "output": proto.graph.output[0].name, "top1_agreement": None,
              "max_abs_diff": None, "accuracy": None, "saved_model_accuracy": None, "num_check_images": 0}
    if check_data:
        images, targets = split_arrays(check_data, labels, size, check_split, max_check_images, crop_to_aspect_ratio=crop)
        reference = run_batches(loaded.probabilities_at_size, slices(images, 64), len(labels))
        ours = onnx_predict(output, images)
        report.update(top1_agreement=float((ours.argmax(1) == reference.argmax(1)).mean()),
                      max_abs_diff=float(np.abs(ours - reference).max()),
                      accuracy=float((ours.argmax(1) == targets).mean()),
                      saved_model_accuracy=float((reference.argmax(1) == targets).mean()),
                      num_check_images=int(len(images)))
    return report
