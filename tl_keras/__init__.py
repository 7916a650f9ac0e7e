"""tl_keras: transfer learning with Keras 3 / TensorFlow in one call.

>>> import tl_keras
>>> result = tl_keras.train("path/to/images", backbone="mobilenet_v2")  # doctest: +SKIP

The names below load their module on first use (PEP 562), so `import tl_keras.config`,
`import tl_keras.registry` and `tl-keras --help` import no TensorFlow.
"""

from __future__ import annotations

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": "tl_keras.config",
    "BackboneDownloadError": "tl_keras.registry",
    "BackboneSpec": "tl_keras.registry",
    "resolve_backbone": "tl_keras.registry",
    "HubBackbone": "tl_keras.hub",
    "KerasBackbone": "tl_keras.backbones",
    "PixelRange": "tl_keras.backbones",
    "build_backbone": "tl_keras.backbones",
    "ImageClassifier": "tl_keras.classifier",
    "build_classifier": "tl_keras.classifier",
    "load_classifier": "tl_keras.classifier",
    "ImageFolder": "tl_keras.data",
    "load_image_folder": "tl_keras.data",
    "load_data": "tl_keras.data",
    "load_label_file": "tl_keras.label_files",
    "get_strategy": "tl_keras.distribute",
    "FineTuneHistory": "tl_keras.training",
    "fine_tune": "tl_keras.training",
    "export_saved_model": "tl_keras.export",
    "ExportedModel": "tl_keras.serving",
    "export_tflite": "tl_keras.tflite",
    "export_onnx": "tl_keras.onnx_export",
    "serve": "tl_keras.server",
    "Advice": "tl_keras.advisor",
    "advise": "tl_keras.advisor",
    "CrossValidation": "tl_keras.api",
    "TrainResult": "tl_keras.api",
    "cross_validate": "tl_keras.api",
    "lr_find": "tl_keras.api",
    "train": "tl_keras.api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tl_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


# Keras finds tl_keras' layers in saved `.keras` files by their registration, done when their module
# is imported. When Keras is already loaded (so registering costs nothing), register them now:
# `import keras, tl_keras; keras.saving.load_model(path)` then works. Otherwise use
# `tl_keras.load_classifier(path)`, or `import tl_keras.classifier` before `keras.saving.load_model`.
if "keras" in sys.modules:
    importlib.import_module("tl_keras.classifier")
