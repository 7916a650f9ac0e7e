"""Pretrained backbones as Keras 3 layers with named, unfreezable blocks.

`hub` (`HubBackbone`: a TF Hub / Kaggle / local SavedModel whose own variables train; downloads),
`applications` (`KerasBackbone` for `keras.applications`, `KerasHubBackbone`, `PixelRange`,
`build_backbone`), `_savedmodel` (the SavedModel graph surgery behind cuts and boundary caches:
private, the only code that reads a SavedModel's graph).

>>> from tl_keras.models.backbones import build_backbone, HubBackbone
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "Backbone": "tl_keras.models.backbones.applications",
    "HubBackbone": "tl_keras.models.backbones.hub",
    "KerasBackbone": "tl_keras.models.backbones.applications",
    "KerasHubBackbone": "tl_keras.models.backbones.applications",
    "PixelRange": "tl_keras.models.backbones.applications",
    "build_backbone": "tl_keras.models.backbones.applications",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
