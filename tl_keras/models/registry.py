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
from typing import Sequence

from tl_keras.config import (  # noqa: F401  (their home was here)
    SEARCH,
    is_search,
    parse_unfreeze_blocks,
    parse_unfreeze_setting,
    search_depths,
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

# Layer/variable-name patterns that identify a block. The first capture group is the block's name.
MOBILENET_BLOCKS = (r"(?:^|/)(block_\d+)_",)
RESNET_BLOCKS = (
    r"(?:^|/)(conv\d+_block\d+)_",  # keras.applications ResNet50: conv5_block3_2_conv
    r"(block\d+/unit_\d+)/",  # TF-slim exports on TF Hub: resnet_v2_50/block4/unit_3/...
)
# Tried, in order, for modules the registry does not know.
GENERIC_BLOCKS = MOBILENET_BLOCKS + RESNET_BLOCKS + (r"(?:^|/)(block\d+[a-z]?)_", r"(?:^|/)(stage\d+)[_/]")
# Keras-Hub backbones: ResNet `stack1_block2_...`, MobileNet(V3) `block_2_0_...`, EfficientNet `block2a_`.
KERAS_HUB_BLOCKS = (r"(?:^|/)(stack\d+_block\d+)_", r"(?:^|/)(block_\d+_\d+)_", r"(?:^|/)(block\d+[a-z])_") + GENERIC_BLOCKS
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
        weights: for `source="keras"`: `"imagenet"`, `None` or a path to a weights file.
        cut: a block or layer name to cut the backbone at: features are that layer's output,
            average-pooled, and the layers above it are dropped (see `resolve_cut`). None: the
            full feature vector.
    """

    name: str
    source: str
    handle: str
    image_size: int = 224
    pixel_mode: str = "unit"
    feature_size: int | None = None
    block_patterns: tuple[str, ...] = GENERIC_BLOCKS
    default_unfreeze_blocks: int = 3
    weights: str | None = "imagenet"
    cut: str | None = None

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
REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "hub:mobilenet_v2", "hub", f"{_HUB}/mobilenet_v2_100_224/feature_vector/5",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
        ),
        BackboneSpec(
            "hub:mobilenet_v2_035", "hub", f"{_HUB}/mobilenet_v2_035_224/feature_vector/5",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
        ),
        BackboneSpec(
            "hub:resnet50", "hub", f"{_HUB}/resnet_v2_50/feature_vector/5",
            feature_size=2048, block_patterns=RESNET_BLOCKS, default_unfreeze_blocks=3,
        ),
        BackboneSpec(
            "keras:mobilenet_v2", "keras", "MobileNetV2", pixel_mode="symmetric",
            feature_size=1280, block_patterns=MOBILENET_BLOCKS, default_unfreeze_blocks=MOBILENET_UNFREEZE,
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


def group_blocks(names: Sequence[str], patterns: Sequence[str] = GENERIC_BLOCKS) -> list[tuple[str, list[int]]]:
    """Groups layer or variable names into blocks, in network order.

    A name matching a pattern belongs to the block the pattern's first group names. A name matching
    none belongs to the block before it (so `Conv_1` after `block_16_*` joins `block_16`), or, before
    the first block, to a `"stem"` block. If no name matches any pattern, each distinct top-level
    name scope (text before the first `/`) is its own block: the documented fallback for unknown
    modules (after a model-name prefix that every name shares). Order is the order of first appearance, which follows depth for Keras-made models.

    Returns:
        A list of `(block_name, indices_into_names)`, bottom block first.

    >>> group_blocks(["Conv1/kernel", "block_1_expand/kernel", "block_2_project/kernel", "Conv_1/kernel"])
    [('stem', [0]), ('block_1', [1]), ('block_2', [2, 3])]
    """
    compiled = [re.compile(p) for p in patterns]
    keys: list[str | None] = []
    for name in names:
        key = None
        for regex in compiled:
            match = regex.search(name)
            if match:
                key = match.group(1)
                break
        keys.append(key)
    if names and all(k is None for k in keys):
        parts = [n.split(":")[0].split("/") for n in names]
        # Drop a model-name prefix every variable shares (`my_model/dense/kernel`).
        depth = 1 if len({p[0] for p in parts}) == 1 and all(len(p) > 2 for p in parts) else 0
        keys = [p[depth] for p in parts]
    blocks: list[tuple[str, list[int]]] = []
    index: dict[str, int] = {}
    current = "stem"
    for i, key in enumerate(keys):
        current = key or current
        if current not in index:
            index[current] = len(blocks)
            blocks.append((current, []))
        blocks[index[current]][1].append(i)
    return blocks


def resolve_cut(layer_names: Sequence[str], cut: str, patterns: Sequence[str] = GENERIC_BLOCKS) -> str:
    """The layer whose output a backbone cut at `cut` ends with.

    `cut` is a block name (`"block_12"`: the block's last layer, e.g. `block_12_add`) or an exact
    layer name (`"block_12_project_BN"`).

    >>> resolve_cut(["Conv1", "block_1_expand", "block_1_project", "block_2_expand", "block_2_add"], "block_1")
    'block_1_project'
    """
    if cut in layer_names:
        return cut
    for name, indices in group_blocks(layer_names, patterns):
        if name == cut:
            return layer_names[indices[-1]]
    blocks = [name for name, _ in group_blocks(layer_names, patterns)]
    raise ValueError(
        f"Cannot cut the backbone at {cut!r}: no block or layer has that name. Blocks, bottom first: "
        f"{', '.join(blocks)} (or pass an exact layer name, e.g. {layer_names[len(layer_names) // 2]!r})."
    )


def default_unfreeze(spec: BackboneSpec, block_names: list[str]) -> int:
    """How many top blocks phase 2 trains unless told: a registry entry's own number; for a module
    the registry does not list (a local SavedModel folder, an unlisted handle), the number for the
    architecture its block names show (MobileNetV2's inverted residuals `block_1`..`block_16`, at
    least 12 of them if cut: `MOBILENET_UNFREEZE`), else the spec's. Never more blocks than there are."""
    number = spec.default_unfreeze_blocks
    listed = spec.source != "hub" or spec.name in REGISTRY or spec.name in ALIASES
    blocks = [name for name in block_names if name != "stem"]
    if not listed and len(blocks) >= 12 and all(re.fullmatch(r"block_\d+", name) for name in blocks):
        number = MOBILENET_UNFREEZE
    return min(number, len(block_names))


class BlockSelection:
    """The block API both backbone layers share: `block_names`, `unfrozen_blocks`, and the choice
    of the top blocks behind `set_trainable_blocks`. Subclasses set `self.blocks` (from
    `group_blocks`) and apply the choice to their own variables or layers."""

    blocks: list[tuple[str, list[int]]]
    _unfrozen: int = 0
    inference_mode: bool = False
    # Normalise with batch statistics even when Keras runs in inference mode (evaluate, predict):
    # for a network trained from scratch whose BatchNormalization moving averages have not settled.
    batch_statistics: bool = False

    def _batch_norm_training(self, training) -> bool:
        """The `training` value the wrapped network is called with."""
        return (bool(training) or self.batch_statistics) and not self.inference_mode

    @property
    def block_names(self) -> list[str]:
        """Block names, bottom first (e.g. `['stem', 'block_1', ..., 'block_16']`)."""
        return [name for name, _ in self.blocks]

    @property
    def unfrozen_blocks(self) -> int:
        """How many top blocks are trainable (0 when the layer is frozen)."""
        return self._unfrozen if getattr(self, "trainable", True) else 0

    def block_weights(self) -> list[tuple[str, list]]:
        """`(block name, its weights)` for every block, bottom first."""
        return [(name, self._weights_of(indices)) for name, indices in self.blocks]

    def block_config(self) -> dict:
        """The block settings `get_config` records (one place for both backbone kinds)."""
        return {"block_patterns": list(self.block_patterns), "inference_mode": self.inference_mode,
                "cut": self.cut, "unfrozen_blocks": self.unfrozen_blocks}

    @classmethod
    def from_block_config(cls, config: dict, **extra):
        """Rebuilds a layer from `get_config` output and unfreezes the recorded top blocks (none when
        the key is missing: a backbone starts frozen)."""
        config = dict(config)
        unfrozen = config.pop("unfrozen_blocks", 0)
        layer = cls(**config, **extra)
        layer.set_trainable_blocks(unfrozen)
        return layer

    def _weights_of(self, indices: list[int]) -> list:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

    def _select_top_blocks(self, num_blocks: int | str | None) -> tuple[list[str], set[int]]:
        """Validates `num_blocks` (int, 'all'; None = all) and returns the chosen top blocks' names
        (bottom first) and the indices they cover. Records the count for `unfrozen_blocks`."""
        num_blocks = parse_unfreeze_blocks(num_blocks)
        total = len(self.blocks)
        n = total if num_blocks in ("all", None) else min(num_blocks, total)
        chosen = self.blocks[total - n:] if n else []
        self._unfrozen = n
        return [name for name, _ in chosen], {i for _, indices in chosen for i in indices}
