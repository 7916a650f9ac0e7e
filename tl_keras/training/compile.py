"""How a phase is compiled: its loss (label smoothing on integer or soft labels; binary for
multi-label heads), its optimizer (Adam, with per-layer rates for layer decay), its metrics and its
phase-2 learning-rate schedule; and class weights balanced from the labels."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf

from tl_keras._internals import optimizer_variable_index
from tl_keras.config import TrainConfig


def _soft(y_true, y_pred) -> bool:
    """Whether `y_true` holds soft label vectors (MixUp / CutMix) rather than integer labels."""
    return y_true.dtype.is_floating and y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] == y_pred.shape[-1]


def _label_vectors(y_true, y_pred):
    if _soft(y_true, y_pred):
        return tf.cast(y_true, y_pred.dtype)
    return tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(y_pred)[-1], dtype=y_pred.dtype)


class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy with label smoothing on integer labels (Keras' sparse loss has no
    smoothing) or on soft label vectors (`[batch, classes]`, as MixUp and CutMix make them)."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_cce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(_label_vectors(y_true, y_pred), y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class LayerwiseAdam(keras.optimizers.Adam):
    """Adam with a learning-rate multiplier per variable: discriminative learning rates.

    Args:
        learning_rate: the base rate (a number or a schedule), for variables without a multiplier.
        multipliers: `id(variable)` -> factor for the variables of `model.trainable_variables`;
            see `layerwise_multipliers`. A factor of 0 leaves a variable unchanged: freezing is the
            limit of a learning rate going to 0.
        **kwargs: other `keras.optimizers.Adam` arguments.
    """

    def __init__(self, learning_rate=1e-3, multipliers: dict[int, float] | None = None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self._multiplier_by_id = dict(multipliers or {})

    def build(self, variables):
        super().build(variables)
        self._multipliers = [self._multiplier_by_id.get(id(v), 1.0) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._multipliers[optimizer_variable_index(self, variable)]
        super().update_step(gradient, variable, learning_rate * factor)


def layerwise_multipliers(model: keras.Model, decay: float) -> dict[int, float]:
    """Learning-rate multipliers that shrink by `decay` per block going down the backbone.

    The head and the backbone's top block get 1, the block below `decay`, the next `decay ** 2`, ...
    `decay=1` is one rate for all; `decay=0` trains only the top block (0 is freezing).
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"`layer_decay` must be in [0, 1]. Received: layer_decay={decay!r}")
    blocks = model.backbone.block_weights()
    return {id(w): decay ** depth for depth, (_, weights) in enumerate(reversed(blocks)) for w in weights}


def compile_for_phase(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    label_smoothing: float = 0.0,
    jit_compile: bool | str = "auto",
    lr_multipliers: dict[int, float] | None = None,
    soft_labels: bool = False,
    multi_label: bool | None = None,
) -> None:
    """(Re)compiles `model` with Adam at `learning_rate` (a number or a schedule), inside the model's
    distribution strategy. `lr_multipliers` (see `layerwise_multipliers`) scale it per variable.
    `soft_labels`: the training data may carry label vectors (MixUp, CutMix) as well as integers.
    `multi_label` (default: the model's `multi_label`): 0/1 flags per class, binary cross-entropy, and
    `accuracy` is the subset accuracy (every flag right at 0.5).

    `jit_compile="auto"` is Keras' rule: XLA on GPU/TPU without tf.distribute for models whose layers
    all support it, off on CPU. The classifier's antialiased resize has no XLA kernel, so XLA applies
    to the head trained on cached features; `True` asks for XLA on CPU too, and warns for a model XLA
    cannot compile, which then runs without it.
    """
    if jit_compile is True:
        blockers = [layer.name for layer in model.layers if not getattr(layer, "supports_jit", True)]
        if blockers:
            warnings.warn(
                f"jit_compile=True: XLA cannot compile layer(s) {', '.join(blockers)} of {model.name!r}, "
                "so this model runs without XLA (the head trained on cached features still uses it)."
            )
            jit_compile = False
    if multi_label is None:
        multi_label = bool(getattr(model, "multi_label", False))
    with model.distribute_strategy.scope():  # metric variables too: under tf.distribute they must be the strategy's
        if multi_label:
            loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
            accuracy = keras.metrics.MeanMetricWrapper(subset_accuracy, name="accuracy")
        else:
            loss = (SmoothedSparseCategoricalCrossentropy(label_smoothing)
                    if label_smoothing or soft_labels else keras.losses.SparseCategoricalCrossentropy())
            accuracy = (keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy") if soft_labels
                        else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
        model.compile(
            optimizer=LayerwiseAdam(learning_rate, lr_multipliers) if lr_multipliers else keras.optimizers.Adam(learning_rate),
            loss=loss,
            metrics=[accuracy],
            jit_compile=jit_compile,
        )


def subset_accuracy(y_true, y_pred):
    """Multi-label: 1 where every class's flag is right at a threshold of 0.5, else 0."""
    right = tf.equal(tf.cast(y_pred >= 0.5, tf.float32), tf.cast(y_true >= 0.5, tf.float32))
    return tf.cast(tf.reduce_all(right, axis=-1), tf.float32)


def label_accuracy(y_true, y_pred):
    """Top-1 accuracy against integer labels, or against each soft label vector's largest entry."""
    if _soft(y_true, y_pred):
        y_true = tf.argmax(y_true, axis=-1)
    predicted = tf.argmax(y_pred, axis=-1)
    return tf.cast(tf.equal(tf.cast(tf.reshape(y_true, [-1]), predicted.dtype), predicted), tf.float32)


def phase_schedule(
    kind: str, learning_rate: float, steps_per_epoch: int, epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The phase-2 learning rate: `"constant"`, `"cosine"` (decays to 0 over the phase) or
    `"warmup-cosine"` (rises linearly from 0 over the first epoch, then decays to 0)."""
    TrainConfig.check("fine_tune_schedule", kind)
    if kind == "auto":
        raise ValueError("phase_schedule takes a resolved schedule: pass `TrainConfig.phase_two_schedule`, not 'auto'.")
    total = max(1, steps_per_epoch * epochs)
    if kind == "constant":
        return learning_rate
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total)
    warmup = min(steps_per_epoch, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total - warmup), warmup_target=learning_rate, warmup_steps=warmup,
    )


def balanced_class_weights(labels, num_classes: int) -> dict[int, float]:
    """`n / (num_classes * count)` per class (scikit-learn's "balanced"): rare classes weigh more, and
    the average weight over the training images is 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        empty = [i for i, c in enumerate(counts) if c == 0]
        raise ValueError(f"Cannot balance class weights: classes {empty} have no training images.")
    return {i: float(counts.sum() / (num_classes * c)) for i, c in enumerate(counts)}
