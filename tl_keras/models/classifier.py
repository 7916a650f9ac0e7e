"""The image classifier: 0-255 RGB images -> resize -> pixel range -> backbone -> dropout -> softmax.

Examples:
    >>> from tl_keras.models.classifier import build_classifier
    >>> model = build_classifier("../shared/assets/hub/mobilenet_v2_035_224_feature_vector",
    ...                          num_classes=2, image_size=96, class_names=["ants", "bees"])
    >>> [layer.name for layer in model.layers]
    ['images', 'resize', 'pixel_range', 'backbone', 'output_dropout', 'predictions']
"""

from __future__ import annotations

import os
from typing import Sequence

import keras

from tl_keras.distribute import MultiWorkerFitMixin
from tl_keras.models.backbones.applications import Backbone, PixelRange, build_backbone
from tl_keras.models.registry import BackboneSpec, default_unfreeze, resolve_backbone
from tl_keras.utils.checks import require_int


@keras.saving.register_keras_serializable(package="tl_keras")
class ImageClassifier(MultiWorkerFitMixin, keras.Model):
    """A backbone with a new softmax head, fed plain RGB pixels (0-255) of any size.

    Resizing and the backbone's pixel range live inside the model, so `predict` and the exported
    SavedModel take raw images. Layers are named `resize`, `pixel_range`, `backbone`, then for each
    hidden layer `hidden_<i>_dropout` and `hidden_<i>`, then `output_dropout` and `predictions`, so
    they can be found and replaced.

    Args:
        backbone: a backbone layer (`HubBackbone`, `KerasBackbone`, or any layer mapping images in
            `pixel_mode` range to a feature vector).
        num_classes: number of output classes (>= 2).
        image_size: the size images are resized to before the backbone. Defaults to 224.
        crop_to_aspect_ratio: the `resize` layer first cuts each image to its centred square (the
            full short side), so shapes keep their proportions, as the training images were framed
            (`tl_keras.data.resize_uint8`); False squeezes whole images. Square images are
            unaffected. Defaults to True (a model saved before this setting existed loads as False).
        pixel_mode: the pixel range the backbone expects (see `tl_keras.models.registry.PIXEL_MODES`).
            Defaults to `"unit"`.
        dropout: dropout rate before the output layer. Defaults to 0.2.
        l2: L2 penalty on the output layer's kernel. Defaults to 0.
        class_names: names of the classes, in output order. Defaults to `class_0`, `class_1`, ...
        default_unfreeze_blocks: how many top blocks `fine_tune` trains in phase 2 unless told.
            Defaults to 3.
        far_domain_unfreeze_blocks: how many where the run measured a domain with no "up"
            (`TrainConfig.symmetry` "dihedral"; see `phase_two_depth`). Defaults to None (the default's).
        hidden_units: sizes of hidden ReLU Dense layers between the backbone and the output layer,
            each after a dropout of rate `dropout`: e.g. `(512,)` or `(512, 256)`, for larger data,
            where one linear layer underfits. Defaults to `()` (a linear softmax head).
        normalize_features: put a `Normalization` layer (`feature_norm`) on the backbone's output,
            set to the training features' mean and variance by `fine_tune` before phase 1. Features
            of a cut backbone come from inside the network, unnormalised and on their own scale;
            standardising them lets the head learn as fast as on the final feature vector.
            Defaults to False (`build_classifier` turns it on for cut backbones).
        multi_label: a sigmoid per class instead of one softmax: each class is a yes/no question, and
            an image may have several labels (or none). Trained with binary cross-entropy (see
            `tl_keras.training.compile_for_phase`). Defaults to False.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        image_size: int = 224,
        pixel_mode: str = "unit",
        dropout: float = 0.2,
        l2: float = 0.0,
        class_names: Sequence[str] | None = None,
        default_unfreeze_blocks: int | str = 3,
        far_domain_unfreeze_blocks: int | str | None = None,
        hidden_units: Sequence[int] = (),
        normalize_features: bool = False,
        multi_label: bool = False,
        crop_to_aspect_ratio: bool = True,
        **kwargs,
    ):
        require_int("num_classes", num_classes, 2)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        if l2 < 0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2!r}")
        class_names = [str(c) for c in class_names] if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must have `num_classes` ({num_classes}) entries. Received: {len(class_names)} names"
            )
        hidden_units = tuple(hidden_units or ())
        for units in hidden_units:
            require_int("hidden_units", units, 1)
        inputs = keras.Input((None, None, 3), name="images")
        resize = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", antialias=True,
                                       crop_to_aspect_ratio=bool(crop_to_aspect_ratio), name="resize")
        resize.supports_jit = False  # XLA has no kernel for antialiased resizing (ScaleAndTranslate)
        x = resize(inputs)
        x = PixelRange(pixel_mode, name="pixel_range")(x)
        x = backbone(x)
        if normalize_features:
            x = keras.layers.Normalization(axis=-1, name="feature_norm")(x)
        for i, units in enumerate(hidden_units, start=1):
            x = keras.layers.Dropout(dropout, name=f"hidden_{i}_dropout")(x)
            x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name="output_dropout")(x)
        outputs = keras.layers.Dense(
            num_classes,
            activation="sigmoid" if multi_label else "softmax",
            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
            dtype="float32",  # softmax (sigmoid) in float32 under mixed precision
            name="predictions",
        )(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.image_size = image_size
        self.pixel_mode = pixel_mode
        self.dropout = dropout
        self.l2 = l2
        self.class_names = list(class_names)
        self.default_unfreeze_blocks = default_unfreeze_blocks
        self.far_domain_unfreeze_blocks = far_domain_unfreeze_blocks
        self.hidden_units = hidden_units
        self.normalize_features = bool(normalize_features)
        self.multi_label = bool(multi_label)
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)

    @property
    def head_layers(self) -> list[keras.layers.Layer]:
        """The layers after the backbone, in order: the hidden layers (if any), dropout and output."""
        return self.layers[self.layers.index(self.backbone) + 1:]

    def classify_features(self, features, training: bool = False):
        """Runs the head on backbone features: `[batch, features]` -> class probabilities."""
        for layer in self.head_layers:
            features = layer(features, training=training)
        return features

    def get_config(self) -> dict:
        return {
            "backbone": keras.layers.serialize(self.backbone),
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "pixel_mode": self.pixel_mode,
            "dropout": self.dropout,
            "l2": self.l2,
            "class_names": self.class_names,
            "default_unfreeze_blocks": self.default_unfreeze_blocks,
            "far_domain_unfreeze_blocks": self.far_domain_unfreeze_blocks,
            "hidden_units": list(self.hidden_units),
            "normalize_features": self.normalize_features,
            "multi_label": self.multi_label,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict) -> "ImageClassifier":
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        config.setdefault("crop_to_aspect_ratio", False)  # saved before the setting: trained on squeezed images
        return cls(**config)


def build_classifier(
    backbone: str | BackboneSpec = "mobilenet_v2",
    num_classes: int = 2,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    dropout: float = 0.2,
    l2: float = 0.0,
    class_names: Sequence[str] | None = None,
    hidden_units: Sequence[int] = (),
    cut: str | None = None,
    normalize_features: bool | None = None,
    multi_label: bool = False,
    crop_to_aspect_ratio: bool = True,
) -> ImageClassifier:
    """Builds an `ImageClassifier` with a frozen pretrained backbone, BatchNormalization in inference mode.

    Args:
        backbone: a registry name, TF Hub/Kaggle handle, URL or local SavedModel folder (see
            `tl_keras.models.registry.resolve_backbone`), or a `BackboneSpec`. Defaults to `"mobilenet_v2"`.
        num_classes: number of classes. Defaults to 2.
        weights: weights for `keras:` backbones (`"imagenet"`, `None`, or a file). Defaults to the spec's.
        image_size: input resolution. Defaults to the backbone's.
        dropout, l2, class_names, hidden_units, multi_label, crop_to_aspect_ratio: see `ImageClassifier`.
        cut: a block or layer name to cut the backbone at (its pooled output becomes the features,
            see `BackboneSpec.cut`). Defaults to the spec's (None: the full feature vector).
        normalize_features: see `ImageClassifier`. Defaults to True for a cut backbone, else False.

    Build it inside `strategy.scope()` to train under tf.distribute.
    """
    spec = backbone if isinstance(backbone, BackboneSpec) else resolve_backbone(backbone, weights=weights, image_size=image_size)
    if isinstance(backbone, BackboneSpec) and image_size is not None:
        spec = spec.replace(image_size=image_size)
    if cut is not None:
        spec = spec.replace(cut=cut)
    layer = build_backbone(spec, inference_mode=True)
    return ImageClassifier(
        layer, num_classes, image_size=spec.image_size, pixel_mode=spec.pixel_mode,
        dropout=dropout, l2=l2, class_names=class_names, hidden_units=hidden_units,
        normalize_features=spec.cut is not None if normalize_features is None else normalize_features,
        multi_label=multi_label, crop_to_aspect_ratio=crop_to_aspect_ratio,
        default_unfreeze_blocks=default_unfreeze(spec, layer.block_names),
        far_domain_unfreeze_blocks=default_unfreeze(spec, layer.block_names, far_domain=True), name="image_classifier",
    )


def load_classifier(path: str) -> ImageClassifier:
    """Loads an `ImageClassifier` saved with `model.save("name.keras")`, without running code from the file.

    Keras' `safe_mode` is on: a file whose config asks for a `Lambda` layer or any other Python code
    is refused. What it does load is trusted to be what it says: the backbone's TF Hub / SavedModel
    folder named in the config is loaded as a TensorFlow graph (graphs can read and write files, so
    load only backbones you trust), and the weights are plain arrays.

    Examples:
        >>> model.save("flowers.keras")  # doctest: +SKIP
        >>> model = load_classifier("flowers.keras")  # doctest: +SKIP
    """
    if not os.path.isfile(path):
        raise ValueError(f"No model file at {path!r}: pass a `.keras` file written by `model.save`.")
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    if not isinstance(model, ImageClassifier):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a tl_keras ImageClassifier.")
    return model
