"""Backbones: build a pretrained feature extractor from a `BackboneSpec`, with a uniform block API.

Every backbone tl_keras builds is a Keras layer that maps images in the backbone's own pixel range to
a feature vector, and offers the same three things: `block_names`, `set_trainable_blocks(n)` and
`inference_mode` (BatchNormalization pinned to its moving statistics). `HubBackbone` (in
`tl_keras.models.backbones.hub`) wraps TF Hub / SavedModel modules; `KerasBackbone` here wraps `keras.applications`
and `KerasHubBackbone` Keras-Hub presets.

Examples:
    >>> from tl_keras.models.backbones.applications import build_backbone
    >>> from tl_keras.models.registry import resolve_backbone
    >>> spec = resolve_backbone("keras:mobilenet_v2", image_size=96,
    ...     weights="../shared/assets/weights/mobilenet_v2_0.35_224_no_top.h5")
    >>> backbone = build_backbone(spec)
    >>> backbone.set_trainable_blocks(2)
    ['block_15', 'block_16']
"""

from __future__ import annotations

import os
from typing import Sequence

import keras
import tensorflow as tf

from tl_keras._internals import InternalAPIError, layer_inputs, producer
from tl_keras.models.backbones.hub import HubBackbone, socket_timeout
from tl_keras.models.blocks import (
    GENERIC_BLOCKS,
    KERAS_HUB_BLOCKS,
    BlockSelection,
    group_blocks,
    resolve_cut,
)
from tl_keras.models.registry import (
    PIXEL_MODES,
    BackboneDownloadError,
    BackboneSpec,
    BoundaryUnavailable,
    keras_alpha_from_weights,
)

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tl_keras")
class PixelRange(keras.layers.Layer):
    """Maps 0-255 RGB pixels into the range a backbone expects.

    Args:
        mode: `"unit"` ([0, 1], TF Hub), `"symmetric"` ([-1, 1], Keras MobileNet), `"caffe"` (BGR
            with the ImageNet mean subtracted, Keras ResNet50) or `"raw"` (unchanged).
    """

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in PIXEL_MODES:
            raise ValueError(f"`mode` must be one of {sorted(PIXEL_MODES)}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = tf.cast(inputs, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "symmetric":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return x[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, dtype=x.dtype)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tl_keras")
class KerasBackbone(BlockSelection, keras.layers.Layer):
    """A `keras.applications` model (no top, average-pooled) with the tl_keras block API.

    Args:
        application: the `keras.applications` class name, e.g. `"MobileNetV2"` or `"ResNet50"`.
        weights: `"imagenet"` (downloaded by Keras), `None` (random) or a weights file path.
            Defaults to `None`.
        image_size: input height and width. Defaults to 224.
        alpha: width multiplier, for MobileNet models. Defaults to the one in the weights file name,
            else 1.0.
        block_patterns: regexes that group layer names into blocks. Defaults to the generic ones.
        inference_mode: call the model with `training=False` always, so BatchNormalization keeps its
            moving statistics while its gamma/beta still train. Defaults to `False`.
        trainable: Defaults to `False` (frozen).
        cut: a block name (`"block_12"`) or layer name: the backbone ends at that layer, whose
            output is average-pooled; the layers above it are dropped. Defaults to None (the whole
            model).
    """

    def __init__(
        self,
        application: str = "MobileNetV2",
        weights: str | None = None,
        image_size: int = 224,
        alpha: float | None = None,
        block_patterns: Sequence[str] | None = None,
        inference_mode: bool = False,
        trainable: bool = False,
        cut: str | None = None,
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        constructor = getattr(keras.applications, application, None)
        if constructor is None:
            raise ValueError(
                f"`application` must name a keras.applications model. Received: application={application!r}"
            )
        if weights not in (None, "imagenet") and not os.path.isfile(weights):
            raise ValueError(f"Weights file not found: {weights!r}. Pass an existing .h5/.weights.h5 path.")
        self.application = application
        self.image_size = int(image_size)
        self.alpha = alpha if alpha is not None else keras_alpha_from_weights(weights)
        self.block_patterns = tuple(block_patterns or GENERIC_BLOCKS)
        self.inference_mode = bool(inference_mode)
        options = dict(include_top=False, weights=weights, input_shape=(self.image_size, self.image_size, 3), pooling="avg")
        if application.startswith("MobileNet"):
            options["alpha"] = self.alpha
        try:
            with socket_timeout():  # an ImageNet download must not hang without network
                self.model = constructor(**options)
        except Exception as err:  # Keras reports a failed download as a bare Exception
            if weights == "imagenet" and ("URL fetch failure" in str(err) or isinstance(err, OSError)):
                raise BackboneDownloadError(
                    f"Could not download ImageNet weights for keras.applications.{application}: {err}\n"
                    "To work offline, pass a local weights file (`weights=PATH`, `--weights PATH`), e.g. "
                    f"one saved by `keras.applications.{application}(include_top=False).save_weights(...)` "
                    "on a machine with internet, or Keras' own *_no_top.h5 file."
                ) from err
            if weights not in (None, "imagenet"):
                raise ValueError(
                    f"Could not load weights {weights!r} into keras.applications.{application}"
                    f"(alpha={self.alpha}): {err}. Check that the file is a no-top weights file for this "
                    "model and width."
                ) from err
            raise
        self._set_up_blocks(cut, trainable)

    def _set_up_blocks(self, cut: str | None, trainable: bool) -> None:
        """Cuts `self.model` at `cut` (if given) and groups its weighted layers into blocks."""
        self.cut = cut
        if cut is not None:
            self.cut_layer = resolve_cut([layer.name for layer in self.model.layers], cut, self.block_patterns)
            pooled = keras.layers.GlobalAveragePooling2D(name="cut_pool")(self.model.get_layer(self.cut_layer).output)
            self.model = keras.Model(self.model.inputs, pooled, name=f"{self.model.name}_to_{self.cut_layer}")
        self._weighted = [i for i, layer in enumerate(self.model.layers) if layer.weights]
        names = [self.model.layers[i].name for i in self._weighted]
        self.blocks = [(name, [self._weighted[j] for j in idx]) for name, idx in group_blocks(names, self.block_patterns)]
        self.set_trainable_blocks("all" if trainable else 0)

    def _weights_of(self, indices: list[int]) -> list:
        return [w for i in indices for w in self.model.layers[i].weights]

    def reinitialize(self, seed: int | None = None) -> None:
        """Replaces the pretrained weights by the random ones Keras starts this architecture with
        (the baseline for training from scratch). keras.applications takes no seed, so `seed`
        re-seeds Keras' global random state (`keras.utils.set_random_seed`)."""
        if seed is not None:
            keras.utils.set_random_seed(seed)
        fresh = KerasBackbone(self.application, weights=None, image_size=self.image_size, alpha=self.alpha,
                              block_patterns=self.block_patterns, cut=self.cut)
        self.model.set_weights(fresh.model.get_weights())

    def set_trainable_blocks(self, num_blocks: int | str) -> list[str]:
        """Makes only the top `num_blocks` blocks trainable (`"all"`: every block; 0: frozen).

        Returns:
            The names of the blocks now trainable, bottom first.
        """
        names, top = self._select_top_blocks(num_blocks)
        self.trainable = bool(names)
        for i in self._weighted:
            self.model.layers[i].trainable = i in top
        return names

    def split_at_trainable(self):
        """Splits the model where its trainable blocks start, for phase 2 with a cached boundary.

        Returns `(bottom, top)`: functions images -> activations at the boundary (frozen) and
        activations -> this layer's output (the trainable layers, the same layer objects, so the same
        variables), both in inference mode. The frozen part is every layer that no trainable layer
        feeds; it must hand the trainable part one tensor.

        Raises:
            BoundaryUnavailable: why the model cannot be split.
        """
        if not self.inference_mode:
            raise BoundaryUnavailable("BatchNormalization is not in inference mode, so the frozen part's output is not fixed")
        layers = self.model.layers  # a functional model's layers come in graph order
        try:  # the layer graph, read through private Keras attributes (tl_keras._internals)
            inputs = {id(layer): layer_inputs(layer) for layer in layers}
            made_by = {id(t): producer(t) for ts in inputs.values() for t in ts}
        except InternalAPIError as err:
            raise BoundaryUnavailable(f"the layer graph cannot be read: {err}") from err
        consumers: dict[int, set[int]] = {}
        for layer in layers:
            for t in inputs[id(layer)]:
                consumers.setdefault(id(made_by[id(t)]), set()).add(id(layer))
        top = set()  # the layers a trainable layer feeds, and the trainable ones
        for layer in layers:
            if (layer.trainable and layer.weights) or any(id(made_by[id(t)]) in top for t in inputs[id(layer)]):
                top.add(id(layer))
        if not top:
            raise BoundaryUnavailable("no block is trainable")
        while True:
            boundary = {id(t): t for layer in layers if id(layer) in top
                        for t in inputs[id(layer)] if id(made_by[id(t)]) not in top}
            # A weightless layer (padding, activation) that only the top reads moves into the top,
            # so the boundary is what it reads: a residual block reads one tensor, padded or not.
            movable = {id(made_by[id(t)]) for t in boundary.values()
                       if not made_by[id(t)].weights and inputs.get(id(made_by[id(t)]))
                       and consumers[id(made_by[id(t)])] <= top}
            if len(boundary) <= 1 or not movable:
                break
            top |= movable
        if len(boundary) != 1:
            raise BoundaryUnavailable(f"the trainable layers read {len(boundary)} tensors of the frozen part, not one")
        (tensor,) = boundary.values()
        bottom = keras.Model(self.model.inputs, tensor, name="frozen_part")
        top = keras.Model(tensor, self.model.outputs[0], name="trainable_part")
        return (lambda images: bottom(images, training=False)), (lambda activations: top(activations, training=False))

    def call(self, inputs, training=None):
        return self.model(inputs, training=self._batch_norm_training(training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.model.output_shape[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        return {**config, "application": self.application, "image_size": self.image_size, "alpha": self.alpha,
                **self.block_config()}

    @classmethod
    def from_config(cls, config: dict) -> "KerasBackbone":
        return cls.from_block_config(config, weights=None)  # weights come from the saved file


@keras.saving.register_keras_serializable(package="tl_keras")
class KerasHubBackbone(KerasBackbone):
    """A Keras-Hub image backbone (ResNet, EfficientNet, MobileNet presets), average-pooled, with the
    preset's own preprocessing and the tl_keras block API (`set_trainable_blocks`, cuts, the phase-2
    boundary split of `KerasBackbone`).

    Args:
        preset: a Keras-Hub preset name (`"resnet_50_imagenet"`, downloaded by Keras-Hub), a Kaggle
            handle, or a local folder written by `save_to_preset` (the backbone's, and its image
            converter's for the preprocessing).
        image_size: input height and width (the classifier resizes to it first). Defaults to 224.
        block_patterns, inference_mode, trainable, cut: as for `KerasBackbone`.

    Inputs are 0-255 RGB: the preset's image converter's `scale` and `offset` are applied inside
    (resizing is the classifier's). A preset without an image converter gets pixels in [0, 1].
    Needs the `keras-hub` package (`pip install "tl_keras[keras-hub]"`).

    Examples:
        >>> backbone = KerasHubBackbone("saved_presets/resnet18", image_size=160)  # doctest: +SKIP
        >>> backbone.block_names[-2:], backbone.set_trainable_blocks(1)             # doctest: +SKIP
        (['stack3_block0', 'stack3_block1'], ['stack3_block1'])
    """

    def __init__(self, preset: str, image_size: int = 224, block_patterns: Sequence[str] | None = None,
                 inference_mode: bool = False, trainable: bool = False, cut: str | None = None, **kwargs):
        keras.layers.Layer.__init__(self, trainable=trainable, **kwargs)
        self.preset, self.image_size = preset, int(image_size)
        self.block_patterns = tuple(block_patterns or KERAS_HUB_BLOCKS)
        self.inference_mode = bool(inference_mode)
        self.model, scale, offset = load_keras_hub_preset(preset)  # a functional model: its layers are the blocks
        self.preprocessing = keras.layers.Rescaling(scale, offset, name="preset_preprocessing")
        self._set_up_blocks(cut, trainable)

    def call(self, inputs, training=None):
        return _pooled(self.model(self.preprocessing(inputs), training=self._batch_norm_training(training)))

    def split_at_trainable(self):
        bottom, top = super().split_at_trainable()
        return (lambda images: bottom(self.preprocessing(images))), (lambda activations: _pooled(top(activations)))

    def reinitialize(self, seed: int | None = None) -> None:
        """Random weights as Keras draws them for this architecture (`seed` re-seeds Keras)."""
        if seed is not None:
            keras.utils.set_random_seed(seed)
        fresh = type(self.model).from_config(self.model.get_config())
        self.model.set_weights(fresh.get_weights())

    def get_config(self) -> dict:
        config = keras.layers.Layer.get_config(self)
        return {**config, "preset": self.preset, "image_size": self.image_size, **self.block_config()}

    @classmethod
    def from_config(cls, config: dict) -> "KerasHubBackbone":
        return cls.from_block_config(config)


def _pooled(x):
    """Feature maps average-pooled to vectors (vectors, from a cut model, pass unchanged)."""
    return keras.ops.mean(x, axis=(1, 2)) if len(x.shape) == 4 else x


def load_keras_hub_preset(preset: str) -> tuple[keras.Model, float | list, float | list]:
    """A Keras-Hub preset's backbone and its image converter's `(scale, offset)`; a failed download is a
    `BackboneDownloadError` saying how to use a local copy, a missing `keras-hub` an ImportError."""
    try:
        import keras_hub
    except ImportError as err:
        raise ImportError('Keras-Hub backbones need the keras-hub package: pip install "tl_keras[keras-hub]"') from err
    try:
        with socket_timeout():
            backbone = keras_hub.models.Backbone.from_preset(preset)
            converter = (keras_hub.layers.ImageConverter.from_preset(preset)
                         if not os.path.isdir(preset) or os.path.isfile(os.path.join(preset, "image_converter.json")) else None)
    except (OSError, ConnectionError) as err:
        if os.path.isdir(preset):
            raise ValueError(f"Could not load the Keras-Hub preset folder {preset!r}: {err}") from err
        raise BackboneDownloadError(
            f"Could not download the Keras-Hub preset {preset!r}: {err}\n"
            "To work offline, save it once on a machine with internet (`keras_hub.models.Backbone.from_preset"
            f"({preset!r}).save_to_preset(FOLDER)`, and the same for `keras_hub.layers.ImageConverter`), copy "
            "FOLDER here and pass --backbone keras_hub:FOLDER."
        ) from err
    if converter is None:
        return backbone, 1.0 / 255.0, 0.0
    scale = 1.0 if converter.scale is None else converter.scale
    offset = 0.0 if converter.offset is None else converter.offset
    return backbone, scale, offset


Backbone = HubBackbone | KerasBackbone  # KerasHubBackbone is a KerasBackbone


def build_backbone(spec: BackboneSpec, *, inference_mode: bool = True, name: str = "backbone",
                   share: Backbone | None = None) -> Backbone:
    """Builds the frozen backbone layer a spec describes. Build it inside a strategy scope to distribute.

    `share`: a Hub backbone of the same handle whose loaded module the new layer wraps instead of
    loading it again (they share variables: for inference, such as probing several cuts).
    """
    if spec.source == "hub":
        return HubBackbone(
            spec.handle, block_patterns=spec.block_patterns, inference_mode=inference_mode, cut=spec.cut, name=name,
            module=share.module if isinstance(share, HubBackbone) else None,
        )
    if spec.source == "keras":
        return KerasBackbone(
            spec.handle, weights=spec.weights, image_size=spec.image_size,
            block_patterns=spec.block_patterns, inference_mode=inference_mode, cut=spec.cut, name=name,
        )
    if spec.source == "keras_hub":
        return KerasHubBackbone(
            spec.handle, image_size=spec.image_size, block_patterns=spec.block_patterns,
            inference_mode=inference_mode, cut=spec.cut, name=name,
        )
    raise ValueError(f"Unknown backbone source {spec.source!r}; expected 'hub', 'keras' or 'keras_hub'.")
