"""Backbone registry: name -> spec, and the block grouping used to unfreeze the top N blocks.

This module imports no TensorFlow, so it is cheap to import and easy to test. It holds the facts about
each architecture (where it comes from, its input size and pixel range, how its layers group into
blocks) in one table; `tl_keras.models.backbones.applications` builds models from these specs.

Examples:
    >>> from tl_keras.models.registry import resolve_backbone
    >>> spec = resolve_backbone("mobilenet_v2")
    >>> spec.source, spec.image_size, spec.pixel_range
    ('hub', 224, (0.0, 1.0))
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re

from tl_keras.config import (  # noqa: F401  (their home was here)
    SEARCH,
    is_search,
    parse_unfreeze_blocks,
    parse_unfreeze_setting,
    search_depths,
)
from tl_keras.models.blocks import (  # noqa: F401  (their home was here)
    GENERIC_BLOCKS,
    KERAS_HUB_BLOCKS,
    MOBILENET_BLOCKS,
    RESNET_BLOCKS,
    BlockSelection,
    group_blocks,
    resolve_cut,
)
from tl_keras.utils.checks import require_int

# Pixel ranges a backbone may expect. The classifier converts plain 0-255 RGB into this range inside
# the model graph, so callers never preprocess by hand.
PIXEL_MODES = {
    "unit": (0.0, 1.0),  # TF Hub image modules
    "symmetric": (-1.0, 1.0),  # keras.applications MobileNet / MobileNetV2
    "caffe": (-123.68, 151.061),  # keras.applications ResNet50: BGR, ImageNet mean subtracted
    "raw": (0.0, 255.0),
}

KERAS_HUB_PREFIX = "keras_hub:"
DEFAULT_IMAGE_SIZE = 224


class BackboneDownloadError(OSError):
    """Pretrained weights could not be fetched (no network, wrong handle, or server error)."""


class CutUnsupportedError(ValueError):
    """The backbone cannot be cut at an intermediate layer (a SavedModel without per-layer functions)."""


class BoundaryUnavailable(ValueError):
    """Phase 2 cannot train on cached activations at the boundary below its trainable blocks; the
    message says why (the backbone does not split there, or the cache would not fit). Phase 2 then
    streams images through the whole model."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What tl_keras needs to know about a pretrained feature extractor.

    Attributes:
        name: registry name, e.g. `"hub:mobilenet_v2"`, or the handle/path it was resolved from.
        source: `"hub"` (TF Hub/Kaggle handle or URL, or a local TF2 SavedModel folder), `"keras"`
            (a `keras.applications` constructor) or `"keras_hub"` (a Keras-Hub preset).
        handle: the Hub handle, URL or local folder (`source="hub"`), the `keras.applications`
            class name (`source="keras"`), or the Keras-Hub preset name, Kaggle handle or local preset
            folder (`source="keras_hub"`).
        image_size: the size the backbone was trained at; the default input resolution.
        pixel_mode: a key of `PIXEL_MODES`: what the backbone expects instead of 0-255 RGB.
        feature_size: length of the feature vector, where known.
        block_patterns: regexes whose first group names a block (see `group_blocks`).
        default_unfreeze_blocks: how many top blocks phase 2 trains by default.
        far_domain_unfreeze_blocks: how many where the run measured a domain with no "up" (symmetry
            dihedral: aerial scenes, microscopy), far from ImageNet's photos. None: the default's.
        weights: for `source="keras"`: `"imagenet"`, `None` or a path to a weights file.
        cut: a block or layer name to cut the backbone at: features are that layer's output,
            average-pooled, and the layers above it are dropped (see `resolve_cut`). None: the
            full feature vector.
        image_size_reason: why a run uses `image_size` (set by `tl_keras.models.preamble.resolve_spec`:
            the size asked for, or the one the training photos' size chose). None: the spec's own.
    """

    name: str
    source: str
    handle: str
    image_size: int = 224
    pixel_mode: str = "unit"
    feature_size: int | None = None
    block_patterns: tuple[str, ...] = GENERIC_BLOCKS
    default_unfreeze_blocks: int = 3
    far_domain_unfreeze_blocks: int | None = None
    weights: str | None = "imagenet"
    cut: str | None = None
    image_size_reason: str | None = None

    @property
    def pixel_range(self) -> tuple[float, float]:
        """The (min, max) pixel values the backbone expects."""
        return PIXEL_MODES[self.pixel_mode]

    def replace(self, **changes) -> "BackboneSpec":
        return dataclasses.replace(self, **changes)


_HUB = "https://tfhub.dev/google/imagenet"
# Phase 2 trains MobileNetV2's top 8 of 17 blocks (block_9..block_16, the 14x14 and 7x7 stages at 224 px)
# by default. Measured at 224 px, 3 seeds (benchmarks/accuracy_defaults.py): flowers 0.884 -> 0.926 over
# the top 5 blocks, hymenoptera 0.937 -> 0.932 (under one val image); see README, "Accuracy at the defaults".
MOBILENET_UNFREEZE = 8
# Where the run measured no "up" (symmetry dihedral), 12 (block_5..block_16, from the 28x28 stage): the
# farther the domain, the more to retrain. 3 seeds against 8 blocks: aerial scenes 0.967 -> 0.973, blood
# cells 0.949 -> 0.955, at about 1.3x a run's time (docs/benchmarks/accuracy.md, "Phase 2's depth").
MOBILENET_UNFREEZE_FAR = 12
REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "hub:mobilenet_v2", "hub", f"{_HUB}/mobilenet_v2_100_224/feature_vector/5",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
            far_domain_unfreeze_blocks=MOBILENET_UNFREEZE_FAR,
        ),
        BackboneSpec(
            "hub:mobilenet_v2_035", "hub", f"{_HUB}/mobilenet_v2_035_224/feature_vector/5",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
            far_domain_unfreeze_blocks=MOBILENET_UNFREEZE_FAR,
        ),
        BackboneSpec(
            "hub:resnet50", "hub", f"{_HUB}/resnet_v2_50/feature_vector/5",
            feature_size=2048, block_patterns=RESNET_BLOCKS, default_unfreeze_blocks=3,
        ),
        BackboneSpec(
            "keras:mobilenet_v2", "keras", "MobileNetV2", pixel_mode="symmetric",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
            far_domain_unfreeze_blocks=MOBILENET_UNFREEZE_FAR,
        ),
        BackboneSpec(
            "keras:resnet50", "keras", "ResNet50", pixel_mode="caffe",
            feature_size=2048, block_patterns=RESNET_BLOCKS, default_unfreeze_blocks=3,
        ),
    )
}
# Bare names pick the TF Hub feature vector, as the design asks.
ALIASES = {"mobilenet_v2": "hub:mobilenet_v2", "resnet50": "hub:resnet50"}


def resolve_backbone(
    name: str, *, weights: str | None = None, image_size: int | None = None
) -> BackboneSpec:
    """Turns a registry name, TF Hub/Kaggle handle or URL, or a local folder into a `BackboneSpec`.

    Args:
        name: `"mobilenet_v2"`, `"resnet50"` (TF Hub feature vectors), `"hub:mobilenet_v2_035"`,
            `"keras:mobilenet_v2"`, `"keras:resnet50"`, `"keras_hub:PRESET_OR_FOLDER"` (a Keras-Hub
            ResNet, EfficientNet or MobileNet preset), an `https://` or `hub:`-prefixed handle, a
            Kaggle Models handle (`google/mobilenet-v2/tensorFlow2/100-224-feature-vector`), or a local
            TF2 SavedModel folder.
        weights: for `keras:` backbones, `"imagenet"` (download), `None` (random) or a weights file.
            Defaults to `"imagenet"`.
        image_size: overrides the spec's input size. Defaults to the spec's.

    Raises:
        ValueError: on an unknown name (with suggestions), a bad `image_size`, or `weights` given for a
            Hub backbone.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"`backbone` must be a non-empty string. Received: backbone={name!r}")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name.startswith(KERAS_HUB_PREFIX):
        spec = keras_hub_spec(name)
    elif key in REGISTRY:
        spec = REGISTRY[key]
    elif os.path.isdir(os.path.expanduser(name)):
        spec = BackboneSpec(name=name, source="hub", handle=os.path.abspath(os.path.expanduser(name)))
    elif _looks_like_handle(name):
        handle = name[len("hub:"):] if name.startswith("hub:") else name
        spec = BackboneSpec(name=name, source="hub", handle=kaggle_url(handle) or handle)
    elif os.path.sep in name or name.startswith("."):
        raise ValueError(
            f"`backbone` looks like a path, but no folder exists there. Pass a TF2 SavedModel folder "
            f"(with saved_model.pb) or a registry name. Received: backbone={name!r}"
        )
    else:
        choices = sorted(REGISTRY) + sorted(ALIASES)
        close = difflib.get_close_matches(key, choices, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} Known names: {', '.join(choices)}; or pass a TF Hub / "
            f"Kaggle handle, a URL, or a local SavedModel folder."
        )

    changes: dict = {}
    if weights is not None:
        if spec.source != "keras":
            raise ValueError(
                "`weights` applies to keras.applications backbones ('keras:mobilenet_v2', "
                f"'keras:resnet50'). Received: weights={weights!r} for backbone={name!r}"
            )
        changes["weights"] = None if weights in ("none", "None", "random") else weights
    if image_size is not None:
        changes["image_size"] = require_int("image_size", image_size, 32)
    return spec.replace(**changes) if changes else spec


def keras_hub_spec(name: str) -> BackboneSpec:
    """The spec of `keras_hub:PRESET` (a Keras-Hub preset name, a Kaggle handle `kaggle://...`, or a
    local preset folder from `save_to_preset`). The backbone applies the preset's own preprocessing
    (its image converter's scale and offset) to 0-255 pixels; the input size is the converter's
    (for a local folder) or 224."""
    preset = name[len(KERAS_HUB_PREFIX):].strip()
    if not preset:
        raise ValueError(f"`backbone` {name!r} names no preset: write keras_hub:PRESET_NAME or keras_hub:LOCAL_FOLDER.")
    folder = os.path.expanduser(preset)
    size = DEFAULT_IMAGE_SIZE
    if os.path.isdir(folder):
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ValueError(f"{folder!r} is not a Keras-Hub preset folder: it has no config.json. Save one with "
                             "`backbone.save_to_preset(folder)` (and `image_converter.save_to_preset(folder)`).")
        preset, size = os.path.abspath(folder), _preset_image_size(folder) or size
    elif os.path.sep in preset or preset.startswith("."):
        raise ValueError(f"No Keras-Hub preset folder at {preset!r}. Pass an existing folder written by "
                         "`save_to_preset`, or a preset name such as keras_hub:resnet_50_imagenet.")
    return BackboneSpec(name=name, source="keras_hub", handle=preset, image_size=size, pixel_mode="raw",
                        block_patterns=KERAS_HUB_BLOCKS, default_unfreeze_blocks=3, weights=None)


def _preset_image_size(folder: str) -> int | None:
    """The square input size a local preset's image converter records, if any."""
    import json

    try:
        with open(os.path.join(folder, "image_converter.json"), encoding="utf-8") as f:
            size = json.load(f)["config"].get("image_size")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(max(size)) if isinstance(size, list) and size else None


def _looks_like_handle(name: str) -> bool:
    return name.startswith(("hub:", "http://", "https://", "gs://")) or _is_kaggle_handle(name)


def _is_kaggle_handle(name: str) -> bool:
    # Kaggle Models handle: owner/model/framework/variation[/version]
    parts = name.split("/")
    return len(parts) in (4, 5) and parts[2].lower() in ("tensorflow2", "tensorflow1") and not os.path.exists(name)


def kaggle_url(handle: str) -> str | None:
    """`owner/model/tensorFlow2/variation/version` -> its kaggle.com/models URL (what tensorflow_hub
    downloads); None for anything else.

    >>> kaggle_url("google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2")
    'https://www.kaggle.com/models/google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2'
    """
    if not _is_kaggle_handle(handle):
        return None
    parts = handle.split("/")
    if len(parts) == 4:
        raise ValueError(
            f"A Kaggle Models handle needs a version number at the end, e.g. '{handle}/1'. Received: {handle!r}"
        )
    return "https://www.kaggle.com/models/" + handle


def keras_alpha_from_weights(path: str | None) -> float:
    """Reads the width multiplier from a Keras MobileNet weights file name (`..._0.35_224_no_top.h5`)."""
    if not path:
        return 1.0
    match = re.search(r"_(\d+\.\d+)_\d+", os.path.basename(path))
    return float(match.group(1)) if match else 1.0


def default_unfreeze(spec: BackboneSpec, block_names: list[str], far_domain: bool = False) -> int:
    """How many top blocks phase 2 trains unless told (`far_domain`: where the run measured no "up"):
    a registry entry's own number; for a module the registry does not list (a local SavedModel
    folder, an unlisted handle), the number for the architecture its block names show (MobileNetV2's
    inverted residuals `block_1`..`block_16`, at least 12 of them if cut: `MOBILENET_UNFREEZE`,
    `MOBILENET_UNFREEZE_FAR`), else the spec's. Never more blocks than there are."""
    default, far = spec.default_unfreeze_blocks, spec.far_domain_unfreeze_blocks
    listed = spec.source != "hub" or spec.name in REGISTRY or spec.name in ALIASES
    blocks = [name for name in block_names if name != "stem"]
    if not listed and len(blocks) >= 12 and all(re.fullmatch(r"block_\d+", name) for name in blocks):
        default, far = MOBILENET_UNFREEZE, MOBILENET_UNFREEZE_FAR
    number = far if far_domain and far is not None else default
    return min(number, len(block_names))


