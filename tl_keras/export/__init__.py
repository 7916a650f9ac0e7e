"""Step 4 of the flow: exports. `saved_model` (TF Serving layout `NAME/VERSION/`, labels and
settings as assets), `tflite` (LiteRT flatbuffers), `onnx`.

>>> from tl_keras.export import export_saved_model, latest_version_dir
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "BYTES_FORMATS": "tl_keras.export.saved_model",
    "DEFAULT_BYTES_IMAGE_SIZE": "tl_keras.export.saved_model",
    "IMAGE_MAGIC": "tl_keras.export.saved_model",
    "KEEP_LOADED": "tl_keras.export.saved_model",
    "LABELS_FILE": "tl_keras.export.saved_model",
    "METADATA_FILE": "tl_keras.export.saved_model",
    "WEBP_MAGIC": "tl_keras.export.saved_model",
    "attach_functions": "tl_keras.export.saved_model",
    "export_metadata": "tl_keras.export.saved_model",
    "export_saved_model": "tl_keras.export.saved_model",
    "files_stamp": "tl_keras.export.saved_model",
    "framing": "tl_keras.export.saved_model",
    "input_text": "tl_keras.export.saved_model",
    "latest_version_dir": "tl_keras.export.saved_model",
    "load_at_size": "tl_keras.export.saved_model",
    "load_export": "tl_keras.export.saved_model",
    "next_version": "tl_keras.export.saved_model",
    "read_labels": "tl_keras.export.saved_model",
    "read_metadata": "tl_keras.export.saved_model",
    "recorded_framing": "tl_keras.export.saved_model",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
