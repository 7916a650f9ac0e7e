"""Export for serving: a SavedModel in TF Serving layout `BASE/NAME/VERSION/`, labels as an asset.

The export needs only TensorFlow to load (`tf.saved_model.load`, `saved_model_cli`, TF Serving). Its
signatures:

- `serving_default`: `images` float32 `[batch, height, width, 3]`, RGB 0-255, any size ->
  `probabilities` float32 `[batch, num_classes]`, `label` string `[batch]` (top-1 class name);
- `serving_uint8`: the same for `images` uint8 (a signature has one dtype per input);
- `serving_bytes`: `image_bytes` string `[batch]`, each an encoded JPEG, PNG, GIF, BMP or WebP (any
  sizes, mixed) -> the same outputs; decoded and resized in the graph exactly as training data was.
  A payload that is not an image fails the call with an `InvalidArgumentError` naming its index.

A multi-label model (sigmoid per class) is exported with its per-class thresholds: its signatures also
return `above_threshold` bool `[batch, num_classes]` and `labels` string `[batch]` (the classes at or
above their thresholds, joined by `;`), and `assets/tl_keras.json` holds `"multi_label": true` and
`"thresholds"`.

`assets/labels.txt` holds one class name per line, in output order; `assets/tl_keras.json` records the
input size and backbone, so clients can decode images the way training did, and under `"config"` the
`TrainConfig` the model was trained with. The reloaded export has `variables`, `trainable_variables`
and `non_trainable_variables`, as a `keras.Model.export` archive does. A version folder appears complete
or not at all: the model is written to a hidden sibling and renamed into place.

Examples:
    >>> from tl_keras.export import export_saved_model
    >>> path = export_saved_model(model, "saved_models/flowers")  # doctest: +SKIP
    >>> path  # doctest: +SKIP
    'saved_models/flowers/1'
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import threading
import types
import uuid
from typing import Sequence

import keras
import tensorflow as tf

from tl_keras.evaluation.tta import flip_averaged
from tl_keras.images.codec import decode_image

# Leading bytes of the encodings `serving_bytes` decodes (WebP: "RIFF", 4 size bytes, then "WEBP").
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"BM")
WEBP_MAGIC = (b"RIFF", b"WEBP")
BYTES_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
DEFAULT_BYTES_IMAGE_SIZE = 224
LABELS_FILE = "labels.txt"
METADATA_FILE = "tl_keras.json"


def next_version(export_base: str) -> int:
    """The next free integer version under `export_base` (1 for a new folder)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(d) for d in os.listdir(export_base) if d.isdigit() and os.path.isdir(os.path.join(export_base, d))]
    return max(versions, default=0) + 1


def latest_version_dir(model_dir: str) -> str:
    """`model_dir` itself if it holds a SavedModel, else its highest numbered version folder."""
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    if os.path.isdir(model_dir):
        versions = [d for d in os.listdir(model_dir) if d.isdigit() and os.path.exists(os.path.join(model_dir, d, "saved_model.pb"))]
        if versions:
            return os.path.join(model_dir, max(versions, key=int))
    raise ValueError(
        f"No SavedModel found at {model_dir!r}: pass an export folder NAME/ (its latest version is used) "
        "or NAME/VERSION/ holding saved_model.pb."
    )


class _ServingModule(tf.Module):
    # Plain attributes, as on a `keras.Model.export` archive, instead of tf.Module's computed
    # properties: the reloaded export exposes the lists under these names.
    variables = trainable_variables = non_trainable_variables = None

    def __init__(self, model: keras.Model, class_names: Sequence[str], labels_path: str, metadata_path: str,
                 tta: bool = False, thresholds: Sequence[float] | None = None):
        super().__init__(name="tl_keras_export")
        # Track the model's TensorFlow variables themselves, not the Keras model: Keras variables
        # export as copies of their tf.Variables, which the TF1 session loader (TF Serving,
        # `saved_model_cli run`) would restore while the serving functions read the uninitialised
        # originals, and which would double the export's size. Each is stored once, whatever
        # lists name it.
        self._untracked = types.SimpleNamespace(model=model)
        self.tf_variables = [v.value for v in model.variables]
        trainable = {id(v) for v in model.trainable_variables}
        self.variables = list(self.tf_variables)
        self.trainable_variables = [v.value for v in model.variables if id(v) in trainable]
        self.non_trainable_variables = [v.value for v in model.variables if id(v) not in trainable]
        self.labels_asset = tf.saved_model.Asset(labels_path)
        self.metadata_asset = tf.saved_model.Asset(metadata_path)
        self._class_names = tf.constant(list(class_names))
        self._image_size = int(getattr(model, "image_size", None) or DEFAULT_BYTES_IMAGE_SIZE)
        self._crop_to_aspect_ratio = framing(model)
        self._tta = bool(tta)
        self._thresholds = None if thresholds is None else tf.constant(list(thresholds), tf.float32)

    def _outputs(self, images):
        def predict(x):
            return tf.cast(self._untracked.model(x, training=False), tf.float32)

        probabilities = (flip_averaged(predict) if self._tta else predict)(tf.cast(images, tf.float32))
        label = tf.gather(self._class_names, tf.argmax(probabilities, axis=-1))
        outputs = {"probabilities": probabilities, "label": label}
        if self._thresholds is not None:  # multi-label: every class at or above its threshold
            above = probabilities >= self._thresholds
            named = tf.where(above, tf.strings.join([self._class_names, ";"]), "")
            outputs["above_threshold"] = above
            outputs["labels"] = tf.strings.regex_replace(tf.strings.reduce_join(named, axis=-1), ";$", "")
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve_float(self, images):
        return self._outputs(images)

    # Not serving signatures: functions `tl_keras` itself uses on an export (see `attach_functions`).
    def _features(self, images):
        model = self._untracked.model
        return model.backbone(model.get_layer("pixel_range")(model.get_layer("resize")(images)), training=False)

    def _probabilities_at_size(self, images):
        model = self._untracked.model
        features = model.backbone(model.get_layer("pixel_range")(images), training=False)
        return tf.cast(model.classify_features(features), tf.float32)

    # The uint8 and bytes signatures call serve_float's function: the model is traced once for the
    # three, and the SavedModel holds its graph once (each signature adds a cast or the decoder).
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_uint8(self, images):
        return self.serve_float(tf.cast(images, tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(self, image_bytes):
        size = self._image_size

        def decode(index):
            contents = image_bytes[index]
            head = tf.strings.join([contents, b"\0" * 12])  # substr past the end is an error
            webp = tf.logical_and(tf.strings.substr(head, 0, 4) == WEBP_MAGIC[0], tf.strings.substr(head, 8, 4) == WEBP_MAGIC[1])
            known = tf.reduce_any([tf.strings.substr(contents, 0, len(magic)) == magic for magic in IMAGE_MAGIC] + [webp])
            check = tf.debugging.Assert(known, [
                "image_bytes[", index, f"] is not a {BYTES_FORMATS} image: it has",
                tf.strings.length(contents), "bytes, starting", tf.strings.substr(contents, 0, 8),
            ], summarize=8)
            with tf.control_dependencies([check]):  # checked before the decoder sees it
                contents = tf.identity(contents)
            return tf.cast(decode_image(contents, size, self._crop_to_aspect_ratio), tf.float32)  # framed as training data was

        images = tf.map_fn(decode, tf.range(tf.shape(image_bytes)[0]),
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return self.serve_float(images)


def export_saved_model(
    model: keras.Model,
    export_base: str,
    *,
    class_names: Sequence[str] | None = None,
    version: int | None = None,
    config=None,
    tta: bool = False,
    thresholds: Sequence[float] | None = None,
    training_data: str | None = None,
) -> str:
    """Writes `model` to `export_base/VERSION/` and returns that path.

    Args:
        model: a Keras model taking 0-255 RGB images and returning class probabilities.
        export_base: the model's folder, `.../NAME`; versions are created inside it.
        class_names: class names in output order. Defaults to `model.class_names`.
        version: the version number. Defaults to the next free integer.
        config: the `TrainConfig` the model was trained with, recorded under `"config"` in
            `assets/tl_keras.json` (`tl-keras train DATA --config that_file` reruns it). Defaults to None.
        tta: put test-time augmentation inside the serving signatures: each image's probabilities
            are averaged with its mirror image's (`tl_keras.evaluation.tta`), at twice the compute. Recorded
            as `"tta": "flip"` in `assets/tl_keras.json`. Defaults to False.
        thresholds: for a multi-label model, one probability threshold per class (`train` picks the
            best F1 on val): the signatures then also return `above_threshold` (bool `[batch,
            classes]`) and `labels` (string `[batch]`: the classes above threshold joined by `;`,
            empty for none), and `assets/tl_keras.json` records them. Defaults to None.
        training_data: the folder or label file the model was trained on, recorded (absolute) as
            `"training_data"` in `assets/tl_keras.json`: `export-tflite --quantize int8-full`
            calibrates on its training images when no other data is given. Defaults to None.

    Raises:
        ValueError: `version` exists already, or the class names do not match the model's outputs.
    """
    class_names = list(class_names if class_names is not None else getattr(model, "class_names", []))
    num_outputs = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if not class_names or (num_outputs is not None and len(class_names) != num_outputs):
        raise ValueError(
            f"`class_names` must list one name per model output ({num_outputs}). Received: {len(class_names)} names"
        )
    if thresholds is not None and len(thresholds) != len(class_names):
        raise ValueError(f"`thresholds` must give one value per class ({len(class_names)}). Received: {len(thresholds)}")
    if any("\n" in c for c in class_names):
        raise ValueError("Class names cannot contain newlines (labels.txt holds one per line).")
    if version is not None and os.path.exists(os.path.join(export_base, str(version))):
        raise ValueError(f"Cannot write the export to {os.path.join(export_base, str(version))!r}: it exists already.")
    os.makedirs(export_base, exist_ok=True)
    staging = os.path.join(export_base, f".tmp-{uuid.uuid4().hex}")
    labels_dir = tempfile.mkdtemp(prefix="tl_keras_labels_")
    try:
        labels_path = os.path.join(labels_dir, LABELS_FILE)
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write("\n".join(class_names) + "\n")
        metadata_path = os.path.join(labels_dir, METADATA_FILE)
        with open(metadata_path, "w", encoding="utf-8") as f:
            json.dump(export_metadata(model, class_names, config, tta, thresholds, training_data), f, indent=2)
        module = _ServingModule(model, class_names, labels_path, metadata_path, tta, thresholds)
        attach_functions(module, model)
        tf.saved_model.save(
            module, staging,
            signatures={"serving_default": module.serve_float, "serving_uint8": module.serve_uint8,
                        "serving_bytes": module.serve_bytes},
        )
        while True:
            target = os.path.join(export_base, str(version if version is not None else next_version(export_base)))
            try:
                os.rename(staging, target)  # atomic; fails if the version folder exists and is not empty
                return target
            except OSError:
                if not os.path.exists(target):
                    raise  # a real failure (permissions, disk), not a taken number
                if version is not None:
                    raise ValueError(f"Cannot write the export to {target!r}: it exists already.") from None
                # Another export took this number meanwhile: take the next one.
    finally:
        shutil.rmtree(labels_dir, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def attach_functions(module: _ServingModule, model: keras.Model) -> None:
    """For an `ImageClassifier`: `features` (images of any size -> the backbone's feature vector, used
    by `tl-keras embed`) and `probabilities_at_size` (images already at the input size -> class
    probabilities, without the resize layer: what the TFLite converter takes)."""
    if not all(hasattr(model, a) for a in ("backbone", "image_size")):
        return
    size = int(model.image_size)
    module.features = tf.function(
        module._features, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    module.probabilities_at_size = tf.function(
        module._probabilities_at_size, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])


_LOADED: "collections.OrderedDict[tuple, object]" = collections.OrderedDict()
_LOADED_LOCK = threading.Lock()
KEEP_LOADED = 4


def load_export(version_dir: str):
    """`tf.saved_model.load` of an export, once per process while its files are unchanged.

    Exports are read-only, so `ExportedModel` (predict, evaluate), the TFLite and ONNX converters and
    `embed` share one loaded copy instead of restoring the whole graph again (seconds each time). The
    `KEEP_LOADED` most recently used exports stay loaded; a rewritten folder (new file times or
    sizes) is loaded again.
    """
    path = os.path.abspath(version_dir)
    key = (path, files_stamp(path))
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    loaded = tf.saved_model.load(path)
    with _LOADED_LOCK:
        _LOADED[key] = loaded
        while len(_LOADED) > KEEP_LOADED:
            _LOADED.popitem(last=False)
    return loaded


def files_stamp(version_dir: str) -> tuple:
    """(modification time, size) of a SavedModel's `saved_model.pb` and variables index: what changes
    when its folder is rewritten."""
    files = [os.path.join(version_dir, name) for name in ("saved_model.pb", os.path.join("variables", "variables.index"))]
    return tuple((s.st_mtime_ns, s.st_size) for s in map(os.stat, filter(os.path.exists, files)))


def load_at_size(model_dir: str):
    """What the TFLite and ONNX converters take from an export: `(version_dir, loaded SavedModel, its
    probabilities_at_size concrete function, input size)`."""
    path = latest_version_dir(model_dir)
    loaded = load_export(path)
    if not hasattr(loaded, "probabilities_at_size"):
        raise ValueError(
            f"{path!r} has no `probabilities_at_size` function: it was exported by an older tl_keras or is "
            "not a tl_keras ImageClassifier export. Export it again with this version (`tl_keras.export_saved_model`)."
        )
    function = loaded.probabilities_at_size.get_concrete_function()
    return path, loaded, function, int(function.structured_input_signature[0][0].shape[1])


def export_metadata(model: keras.Model, class_names: Sequence[str], config=None, tta: bool = False,
                    thresholds: Sequence[float] | None = None, training_data: str | None = None) -> dict:
    """`assets/tl_keras.json`: what a client needs to feed the model, and the training config; for a
    multi-label model `"multi_label": true` and `"thresholds"` (class name -> probability)."""
    backbone = getattr(model, "backbone", None)
    if config is not None and not isinstance(config, dict):
        config = config.to_dict()
    multi = {"multi_label": True, "thresholds": dict(zip(class_names, map(float, thresholds)))} if thresholds is not None else {}
    return {
        "format": "tl_keras/1",
        "class_names": list(class_names),
        "image_size": getattr(model, "image_size", None),
        "crop_to_aspect_ratio": framing(model),
        "backbone": getattr(backbone, "handle", None) or getattr(backbone, "application", None),
        "signatures": {"serving_default": "images float32 0-255", "serving_uint8": "images uint8",
                       "serving_bytes": f"image_bytes string: encoded {BYTES_FORMATS}"},
        "tta": "flip" if tta else None,
        **multi,
        "training_data": os.path.abspath(training_data) if training_data else None,
        "config": config,
    }


def framing(model: keras.Model) -> bool:
    """Whether `model` frames images as their centred square before resizing (an `ImageClassifier`'s
    `crop_to_aspect_ratio`); other Keras models are fed whole images, squeezed."""
    return bool(getattr(model, "crop_to_aspect_ratio", False))


def recorded_framing(metadata: dict) -> bool:
    """An export's `crop_to_aspect_ratio` from its `read_metadata` (False for exports made before it
    was recorded: they were trained on squeezed images)."""
    return bool(metadata.get("crop_to_aspect_ratio", False))


def input_text(size: int, crop_to_aspect_ratio: bool) -> str:
    """How a client prepares an image for an export's fixed-size input (TFLite, ONNX)."""
    framing = "its centred square (the full short side) " if crop_to_aspect_ratio else "the whole image "
    return f"RGB 0-255, {framing}resized to {size}x{size} (bilinear, antialiased)"


def read_metadata(version_dir: str) -> dict:
    """`assets/tl_keras.json` of an export, or `{}` for SavedModels made elsewhere."""
    path = os.path.join(version_dir, "assets", METADATA_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_labels(version_dir: str) -> list[str]:
    """The class names of an export, from `assets/labels.txt`."""
    path = os.path.join(version_dir, "assets", LABELS_FILE)
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.rstrip("\n")]
