"""tl_keras: transfer learning with Keras 3 / TensorFlow in one call.

>>> import tl_keras
>>> result = tl_keras.train("path/to/images", backbone="mobilenet_v2")  # doctest: +SKIP

The package follows the data: `data` and `images` -> `models` (backbone + head) -> `training`
(two phases) -> `export` -> `serving`, with `tuning` (advisor, LR finder) and `evaluation` beside,
`api` (these names) and `cli` on top. The names below load their module on first use (PEP 562), so
`import tl_keras.config`, `import tl_keras.models.registry` and `tl-keras --help` import no
TensorFlow. Import paths of the old flat layout still work (`tl_keras._compat`).
"""

from __future__ import annotations

import importlib
import sys

from tl_keras import _compat
from tl_keras._lazy import lazy_names

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": "tl_keras.config",
    "BackboneDownloadError": "tl_keras.models.registry",
    "BackboneSpec": "tl_keras.models.registry",
    "resolve_backbone": "tl_keras.models.registry",
    "HubBackbone": "tl_keras.models.backbones.hub",
    "KerasBackbone": "tl_keras.models.backbones.applications",
    "PixelRange": "tl_keras.models.backbones.applications",
    "build_backbone": "tl_keras.models.backbones.applications",
    "ImageClassifier": "tl_keras.models.classifier",
    "build_classifier": "tl_keras.models.classifier",
    "load_classifier": "tl_keras.models.classifier",
    "ImageFolder": "tl_keras.data.folder",
    "load_image_folder": "tl_keras.data.folder",
    "load_data": "tl_keras.data.sources",
    "load_label_file": "tl_keras.data.label_files",
    "get_strategy": "tl_keras.distribute",
    "FineTuneHistory": "tl_keras.training.history",
    "fine_tune": "tl_keras.training.phases",
    "export_saved_model": "tl_keras.export.saved_model",
    "ExportedModel": "tl_keras.serving.client",
    "export_tflite": "tl_keras.export.tflite",
    "export_onnx": "tl_keras.export.onnx",
    "serve": "tl_keras.serving.server",
    "Advice": "tl_keras.tuning.advisor",
    "advise": "tl_keras.tuning.advisor",
    "CrossValidation": "tl_keras.api",
    "TrainResult": "tl_keras.api",
    "cross_validate": "tl_keras.api",
    "lr_find": "tl_keras.api",
    "train": "tl_keras.api",
    "check": "tl_keras.inspection",
}
__all__ = sorted(_EXPORTS)


_lazy_getattr, __dir__ = lazy_names(__name__, _EXPORTS)
_compat.install()


def __getattr__(name: str):
    # A module of the old flat layout (`tl_keras.hub`, `tl_keras.features`, ...) read as an attribute.
    if f"tl_keras.{name}" in _compat.MOVED:
        return importlib.import_module(f"tl_keras.{name}")
    return _lazy_getattr(name)


# Keras finds tl_keras' layers in saved `.keras` files by their registration, done when their module
# is imported. When Keras is already loaded (so registering costs nothing), register them now:
# `import keras, tl_keras; keras.saving.load_model(path)` then works. Otherwise use
# `tl_keras.load_classifier(path)`, or `import tl_keras.models.classifier` before `keras.saving.load_model`.
if "keras" in sys.modules:
    importlib.import_module("tl_keras.models.classifier")
