"""The preamble every entry point runs before it measures or trains, written once.

`train`, `cross_validate`, `lr_find` and the advisor each: settle their settings into one
`TrainConfig` (`settle`), check the data source's layout by listing it, resolve the backbone and
download it before any image is decoded, and choose the input size (`resolve_spec`), seed and load
the data at that size and framing (`load_folder`), and build the classifier the config describes, under the
distribution and dtype policy (`build_model`). A wrong folder, column or backbone name fails here,
first, whichever entry point was called.

>>> from tl_keras.config import TrainConfig
>>> config, strategy = settle(TrainConfig(), "keras:mobilenet_v2", {"head_epochs": 2})
>>> config.backbone, config.head_epochs, strategy
('keras:mobilenet_v2', 2, 'auto')
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tl_keras.config import TrainConfig
from tl_keras.data.folder import ImageFolder
from tl_keras.data.sources import check_source, load_data, training_files, with_columns
from tl_keras.distribute import distribution_name, dtype_policy, precision_policy
from tl_keras.images.read import short_sides
from tl_keras.models.backbones.hub import resolve_handle, takes_any_size
from tl_keras.models.classifier import ImageClassifier, build_classifier
from tl_keras.models.registry import BackboneSpec, resolve_backbone


def settle(config: TrainConfig | None, backbone: str | None, overrides: dict,
           data=None) -> tuple[TrainConfig, str | tf.distribute.Strategy]:
    """The validated config (`overrides` win over `config`) and the distribution: a name, or the
    `tf.distribute.Strategy` object the caller passed (recorded in the config by its name). A loaded
    `ImageFolder` as `data` brings its image size and framing (`settle_folder`)."""
    overrides = dict(overrides)
    if backbone is not None:
        overrides["backbone"] = backbone
    if isinstance(overrides.get("strategy"), tf.distribute.Strategy):
        if overrides.get("distribute") not in (None, "auto"):
            raise ValueError(f"`strategy` picks the distribution, and so does `distribute={overrides['distribute']!r}`: pass one.")
        overrides["distribute"] = overrides.pop("strategy")
    strategy = overrides.get("distribute")
    if isinstance(strategy, tf.distribute.Strategy):
        overrides["distribute"] = distribution_name(strategy)
    if isinstance(data, ImageFolder):
        config = settle_folder(data, config, overrides)
    else:
        config = (config or TrainConfig()).replace(**overrides)
    return config, strategy if isinstance(strategy, tf.distribute.Strategy) else config.distribute


def settle_folder(folder: ImageFolder, config: TrainConfig | None, overrides: dict) -> TrainConfig:
    """A loaded folder brings its size (unless one is set) and, without a config, its framing; a
    config that says otherwise than the folder is an error."""
    overrides = dict(overrides)
    if overrides.get("image_size", (config or TrainConfig()).image_size) is None:
        overrides["image_size"] = folder.image_size
    if config is None:
        overrides.setdefault("crop_to_aspect_ratio", folder.crop_to_aspect_ratio)
    config = (config or TrainConfig()).replace(**overrides)
    if config.image_size != folder.image_size:
        raise ValueError(f"The ImageFolder was loaded at {folder.image_size} px but image_size={config.image_size}: load it at the size you train at.")
    if config.crop_to_aspect_ratio != folder.crop_to_aspect_ratio:
        raise ValueError(f"The ImageFolder was loaded with crop_to_aspect_ratio={folder.crop_to_aspect_ratio} but the config "
                         f"says {config.crop_to_aspect_ratio}: load it framed as you train.")
    return config


def source_for(data, config: TrainConfig):
    """The data source as the config reads it: a label file through its column settings
    (`path_column`, `label_column`, `path_format`), anything else as it is."""
    return with_columns(data, config.path_column, config.label_column, config.path_format)


def resolve_spec(data, config: TrainConfig) -> BackboneSpec:
    """Checks the data source's layout (listing only: a wrong folder or label file is reported before
    any download), then resolves the backbone; a remote one is downloaded now, before any image is
    decoded (and cached for the build). Its input size is `config.image_size`, else the one the
    training photos' size chooses (`photo_input_size`), with the reason in `image_size_reason`."""
    check_source(data)
    spec = resolve_backbone(config.backbone, weights=config.weights, image_size=config.image_size)
    local = resolve_handle(spec.handle) if spec.source == "hub" else None
    if config.image_size is None:
        size, reason = photo_input_size(data, spec, local, config.seed)
        spec = spec.replace(image_size=size, image_size_reason=reason)
    else:
        spec = spec.replace(image_size_reason="set by `image_size`")
    return spec.replace(cut=config.cut) if config.cut is not None else spec


# An unset `image_size` follows the training photos: their median short side, rounded down to a
# multiple of 32 (the backbones' total stride, so every stage's grid is whole), never under the
# backbone's own size and at most 384 px (about 3x the pixels and 2x a run's time of 224 px).
# Measured against 224 px, 3 seeds (docs/benchmarks/accuracy.md, "The input size follows the photos"):
# materials 0.761 -> 0.818 (384 px), blood cells 0.955 -> 0.961 (352), hymenoptera 0.974 -> 0.978
# (352); photos near 224 px did not gain from enlarging (flowers, aerial tiles: frozen probe).
MAX_PHOTO_SIZE = 384
SIZE_STEP = 32
SIZE_SAMPLE = 256  # training files whose headers are read: the median of 256 is steady


def photo_input_size(data, spec: BackboneSpec, module_folder: str | None, seed: int = 0) -> tuple[int, str]:
    """The input size of a run that sets none, and why: from the median short side of up to
    `SIZE_SAMPLE` training files (a seeded draw; their headers only are read), rounded down to a
    multiple of `SIZE_STEP` and kept between the backbone's own size and `MAX_PHOTO_SIZE`. The
    backbone's own size where it takes no other (a module traced at one size, a Keras-Hub preset) or
    where the images' size is not known before decoding (tf.data, a loaded `ImageFolder`).

    >>> spec = BackboneSpec("keras:mobilenet_v2", "keras", "MobileNetV2")
    >>> photo_input_size("../shared/assets/datasets/materials_fmd", spec, None)[0]
    384
    """
    own = spec.image_size
    flexible = spec.source == "keras" or (module_folder is not None and takes_any_size(module_folder))
    if not flexible:
        return own, f"the backbone's own size ({spec.name} takes no other)"
    files = training_files(data)
    if not files:
        return own, "the backbone's own size (the images are decoded already: their size is not known)"
    rng = np.random.default_rng(seed)
    picked = [files[i] for i in sorted(rng.choice(len(files), min(SIZE_SAMPLE, len(files)), replace=False))]
    sides = short_sides(picked)
    if not sides:
        return own, "the backbone's own size (no file's header gave its size)"
    median = int(np.median(sides))
    size = max(own, min(MAX_PHOTO_SIZE, median // SIZE_STEP * SIZE_STEP))
    why = (f"the backbone's own {own} px (no larger multiple of {SIZE_STEP} fits in the photos)" if size == own
           else f"at most {MAX_PHOTO_SIZE} px" if size == MAX_PHOTO_SIZE else f"rounded down to a multiple of {SIZE_STEP}")
    return size, f"{size} px: the training photos' median short side is {median} px ({len(sides)} files read); {why}"


def load_folder(data, config: TrainConfig, spec: BackboneSpec, **options) -> ImageFolder:
    """Seeds Keras, NumPy and Python from the config, then loads `data` at the spec's size (the one
    `resolve_spec` chose) and the config's framing, validation split and seed (`options` go to
    `load_data`)."""
    keras.utils.set_random_seed(config.seed)
    options = {"validation_split": config.validation_split, "exif_orientation": config.exif_orientation, **options}
    return load_data(data, image_size=spec.image_size, crop_to_aspect_ratio=config.crop_to_aspect_ratio,
                     seed=config.seed, **options)


def build_model(spec: BackboneSpec, folder: ImageFolder, config: TrainConfig,
                strategy: tf.distribute.Strategy | None = None) -> ImageClassifier:
    """The classifier `config` describes for `folder`'s classes (head, l2, feature normalisation,
    multi-label), built in `strategy`'s scope under the config's dtype policy."""
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope, dtype_policy(precision_policy(config.mixed_precision)):
        return build_classifier(
            spec, num_classes=len(folder.class_names), dropout=config.dropout, l2=config.l2,
            class_names=folder.class_names, hidden_units=config.hidden_units or (),
            normalize_features=config.normalize_features, multi_label=folder.multi_label,
            crop_to_aspect_ratio=config.crop_to_aspect_ratio,
        )


def release(model) -> None:
    """Hands a model's backbone module (or a backbone's) back for reuse (`HubBackbone.release`), for
    a model thrown away: the next model of the same backbone in this process then loads nothing."""
    release_module = getattr(getattr(model, "backbone", model), "release", None)
    if release_module is not None:
        release_module()


def data_root(data) -> str:
    """The folder or label file a data source names (an `ImageFolder`'s root)."""
    return data.root if isinstance(data, ImageFolder) else data


def absolute_paths(config: TrainConfig, spec: BackboneSpec) -> TrainConfig:
    """The config with the image size filled in and local backbone and weights paths made absolute,
    so it reruns the run from any folder."""
    local = os.path.isdir(os.path.expanduser(config.backbone))
    weights = config.weights
    if weights and os.path.isfile(os.path.expanduser(weights)):
        weights = os.path.abspath(os.path.expanduser(weights))
    return config.replace(image_size=spec.image_size, weights=weights, backbone=spec.handle if local else config.backbone)
