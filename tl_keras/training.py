"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune the top blocks.

Example:

>>> from tl_keras.training import fine_tune
>>> history = fine_tune(model, train_ds, val_ds, head_epochs=5, fine_tune_epochs=5)  # doctest: +SKIP
>>> history.history["val_accuracy"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tl_keras.augment import mix_batches
from tl_keras.checkpoint import RunCheckpoint, build_optimizer
from tl_keras.checks import require_int
from tl_keras.config import TrainConfig
from tl_keras.data import ImageFolder, epoch_variable
from tl_keras.distribute import workers_agree
from tl_keras.features import (
    BoundarySet,
    FeatureSet,
    boundary_model,
    compute_boundary,
    extract_features,
    feature_extractor,
    head_model,
)
from tl_keras.registry import search_depths


@dataclasses.dataclass
class FineTuneHistory:
    """Both phases' metrics in one history, epoch by epoch.

    Attributes:
        history: metric name -> one value per epoch, phase 1 then phase 2 (Keras `History` style).
        head_epochs: epochs run in phase 1 (fewer than asked if early stopping ended it).
        fine_tune_epochs: epochs run in phase 2.
        unfrozen_blocks: names of the blocks trained in phase 2.
        learning_rates: the phase 1 and phase 2 learning rates.
        boundary_cache: how phase 2 ran: `{"used": True, "views", "computed", "seconds", "megabytes",
            ...}` when it trained on cached boundary activations, else `{"used": False, "reason"}`.
        best_epochs: per phase, the epoch (index into `history`) whose weights the phase ended with
            (see `BestEpoch`); None where the phase kept its last weights, or phase 2 kept none of
            its epochs (it never beat the head's best `val_loss`, so the model is the head's).
        depth_search: for a depth search (`unfreeze_blocks="search"` or several counts), one record
            per depth tried: `unfreeze_blocks`, `epochs`, `val_loss` and `val_accuracy` at its
            lowest-`val_loss` epoch, `beat_head`, `chosen`, `seconds`, `boundary_cache`; else None.
            The other attributes describe the chosen depth.
    """

    history: dict[str, list[float]]
    head_epochs: int
    fine_tune_epochs: int
    unfrozen_blocks: list[str]
    learning_rates: tuple[float, float]
    boundary_cache: dict | None = None
    best_epochs: list[int | None] = dataclasses.field(default_factory=lambda: [None, None])
    depth_search: list[dict] | None = None

    @property
    def epoch(self) -> list[int]:
        return list(range(self.head_epochs + self.fine_tune_epochs))

    @property
    def fine_tune_kept(self) -> bool | None:
        """Whether the model ends with phase 2's weights: None if phase 2 did not run or was not
        judged (no validation data, `restore_best=False`), False if no phase-2 epoch beat the head."""
        if not self.fine_tune_epochs or self.best_epochs[0] is None and self.best_epochs[1] is None:
            return None
        return self.best_epochs[1] is not None

    def final(self, metric: str, phase: int | None = None) -> float | None:
        """`metric` of the weights the model ends with (`phase=1`: ended phase 1 with): the best kept
        epoch's, else the last epoch's."""
        values = self.history.get(metric, [])
        if phase == 1:
            epoch = self.best_epochs[0] if self.best_epochs[0] is not None else self.head_epochs - 1
        else:
            kept = [e for e in self.best_epochs if e is not None]
            if self.fine_tune_kept is False:
                kept = kept[:1]
            epoch = kept[-1] if kept else len(values) - 1
        return float(values[epoch]) if values and epoch >= 0 else None

    def last(self, metric: str, phase: int | None = None) -> float | None:
        """The last value of `metric` overall, or at the end of phase 1 or 2."""
        values = self.history.get(metric, [])
        if phase == 1:
            values = values[: self.head_epochs]
        elif phase == 2:
            values = values[self.head_epochs:]
        return float(values[-1]) if values else None


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
        factor = self._multipliers[self._get_variable_index(variable)]
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


class EpochSeed(keras.callbacks.Callback):
    """Sets a training dataset's epoch counter at each epoch's start (see `tl_keras.data.epoch_variable`),
    so epoch `e`'s order and augmentation do not depend on how many passes ran before in this process."""

    def __init__(self, epoch: tf.Variable):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


def phase_schedule(
    kind: str, learning_rate: float, steps_per_epoch: int, epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The phase-2 learning rate: `"constant"`, `"cosine"` (decays to 0 over the phase) or
    `"warmup-cosine"` (rises linearly from 0 over the first epoch, then decays to 0)."""
    TrainConfig.check("fine_tune_schedule", kind)
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


def adapt_feature_norm(model: keras.Model, train_data: tf.data.Dataset, features: FeatureSet | None = None) -> bool:
    """Sets the classifier's `feature_norm` layer (if it has one) to the mean and variance of the
    training images' backbone features: from `features` when cached, else one pass of the backbone
    over `train_data`. Returns whether there was a layer to set."""
    try:
        layer = model.get_layer("feature_norm")
    except ValueError:
        return False
    if features is not None:
        vectors = features.train.reshape(-1, features.train.shape[-1])
    else:
        vectors = extract_features(feature_extractor(model), train_data)
    layer.adapt(vectors)
    return True


def _steps_per_epoch(dataset: tf.data.Dataset) -> int:
    steps = int(dataset.cardinality())
    if steps < 1:
        raise ValueError("A learning-rate schedule needs a training dataset of known length (`tl_keras` datasets are).")
    return steps


def fine_tune(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None = None,
    config: TrainConfig | None = None,
    *,
    features: FeatureSet | None = None,
    folder: ImageFolder | None = None,
    checkpoint: str | RunCheckpoint | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    **overrides,
) -> FineTuneHistory:
    """Phase 1 trains the head with the backbone frozen; phase 2 unfreezes the top blocks.

    The model must have a `backbone` attribute with `set_trainable_blocks` (every
    `tl_keras.ImageClassifier` has) and be built inside the strategy scope it will train under.
    BatchNormalization stays in inference mode in both phases (the backbone's `inference_mode`).

    Args:
        model: the classifier.
        train_data, validation_data: batched datasets of `(images, integer labels)`.
        config: the run's `TrainConfig`; `fine_tune` reads its training settings (`head_epochs`,
            `fine_tune_epochs`, `unfreeze_blocks` (None: the backbone's default; `"search"` or
            several counts: phase 2 runs at each depth from the head's weights and the model keeps
            the one with the lowest `val_loss`, see `FineTuneHistory.depth_search`), `learning_rate`,
            `fine_tune_learning_rate` (None: a tenth), `fine_tune_schedule`, `layer_decay`,
            `label_smoothing`, `early_stopping_patience` (stop a phase after this many epochs
            without a better `val_loss`; 0: never), `restore_best` (each phase ends with its best
            epoch's weights, and phase 2 is kept only if it beats the head: see `BestEpoch`),
            `class_weight` (a dict: see `balanced_class_weights`), `jit_compile`, and for `folder`
            `cache_boundary` and `boundary_views`). Defaults to `TrainConfig()`.
        features: cached backbone features (`tl_keras.features.compute_features`) of the same
            images: phase 1 then trains the model's head layers on them instead of running the
            frozen backbone every epoch (callbacks see the `FeatureHead` as their model).
            Defaults to None (phase 1 on `train_data`).
        folder: the `ImageFolder` that `train_data` and `validation_data` were made from. With it
            (and `config.cache_boundary`), phase 2 runs the frozen blocks below the unfrozen ones
            once (`tl_keras.features.compute_boundary`: validation images exactly; training images
            exactly without augmentation, else `config.boundary_views` augmented views) and trains
            the unfrozen blocks and the head on those activations; callbacks then see the boundary
            model, whose weights are the classifier's. Defaults to None (phase 2 on `train_data`).
        checkpoint: a folder (or `tl_keras.checkpoint.RunCheckpoint`) to make the run resumable:
            state is saved at every epoch's end, and calling `fine_tune` again the same way after a
            crash or kill continues from the last finished epoch and ends with the same weights as an
            uninterrupted run (with `tl_keras` datasets and a fixed seed; early stopping restarts
            its patience count). Delete the folder to start over. Defaults to None.
        callbacks: extra Keras callbacks, used in both phases.
        verbose: Keras `fit` verbosity (progress bars by default).
        **overrides: `TrainConfig` fields to change, e.g. `head_epochs=3, learning_rate=1e-3`.

    Returns:
        A `FineTuneHistory` merging both phases.

    Example:

    >>> history = fine_tune(model, train_ds, val_ds, head_epochs=5, fine_tune_epochs=5)  # doctest: +SKIP
    """
    config = (config or TrainConfig()).replace(**overrides)
    if config.class_weight == "auto":
        raise ValueError("`fine_tune` needs class weights as a dict: pass "
                         "class_weight=balanced_class_weights(train_labels, num_classes) (`train` does this for 'auto').")
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(backbone, "set_trainable_blocks"):
        raise TypeError("`model` must be a tl_keras ImageClassifier (its backbone needs `set_trainable_blocks`).")
    if config.layer_decay is not None:
        layerwise_multipliers(model, config.layer_decay)  # validates against the model before any work
    if isinstance(checkpoint, str):
        checkpoint = RunCheckpoint(checkpoint, {"config": config.to_dict(), "cached_features": features is not None})
    history: dict[str, list[float]] = {}
    head_run, head_best = 0, {}
    if config.head_epochs:
        phase_history, head_run, head_best = _run_phase(
            model, 0, config, train_data, validation_data, _phase_state(model, checkpoint, 1, 0), features=features,
            checkpoint=checkpoint, callbacks=callbacks, verbose=verbose, initial_epoch=0)
        _extend(history, phase_history)
    rates = (config.learning_rate, config.fine_tune_lr)
    if not config.fine_tune_epochs:
        return FineTuneHistory(history, head_run, 0, [], rates, None, [head_best.get("best_epoch"), None])
    depths = search_depths(config.unfreeze_blocks, getattr(model, "default_unfreeze_blocks", 3), len(backbone.block_names))
    trial, search = _fine_tune_depths(model, depths, config, train_data, validation_data, folder=folder, features=features,
                                      checkpoint=checkpoint, callbacks=callbacks, verbose=verbose,
                                      initial_epoch=head_run, baseline=head_best.get("best"))
    _extend(history, trial["history"])
    return FineTuneHistory(history, head_run, trial["epochs"], trial["unfrozen"], rates, trial["boundary"],
                           [head_best.get("best_epoch"), trial["best"].get("best_epoch")], search)


def _extend(history: dict[str, list[float]], phase_history: dict) -> None:
    for key, values in phase_history.items():
        history.setdefault(key, []).extend(float(v) for v in values)


def _fine_tune_depths(model, depths: list, config: TrainConfig, train_data, validation_data, *, initial_epoch: int,
                      baseline: float | None, **phase) -> tuple[dict, list[dict] | None]:
    """Phase 2 at each of `depths` (one, unless `unfreeze_blocks` asks for a search), each from the
    head's weights; the model ends with the depth whose kept weights have the lowest `val_loss` (the
    shallowest on a tie; the head's own if no depth beats it). Returns that depth's trial and, for a
    search, a record of every depth (`FineTuneHistory.depth_search`)."""
    if len(depths) == 1:
        return _phase_two(model, depths[0], 2, config, train_data, validation_data, initial_epoch=initial_epoch,
                          baseline=baseline, **phase), None
    if validation_data is None:
        raise ValueError(f"unfreeze_blocks={config.unfreeze_blocks!r} searches phase 2's depth by val_loss, "
                         "and there is no validation data: give some, or set unfreeze_blocks to one number.")
    # Every depth starts from the same state: the head's weights and the same random-generator states.
    start, chosen, kept, trials = _variable_values(model), None, None, []
    for depth in depths:
        _assign(model, start)
        trial = _phase_two(model, depth, f"2_top{depth}", config, train_data, validation_data,
                           initial_epoch=initial_epoch, baseline=baseline, **phase)
        trial["score"] = trial["best"]["best"] if trial["best"] else trial["history"]["val_loss"][-1]
        if chosen is None or trial["score"] < chosen["score"]:
            chosen, kept = trial, _variable_values(model)
        trials.append(trial)
    _assign(model, kept)
    model.backbone.set_trainable_blocks(chosen["blocks"])
    return chosen, [_trial_record(t, t is chosen and t["best"].get("best_epoch", -1) is not None) for t in trials]


def _variable_values(model: keras.Model) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in model.variables]


def _assign(model: keras.Model, values: list[np.ndarray]) -> None:
    for variable, value in zip(model.variables, values):
        variable.assign(value)


def _trial_record(trial: dict, chosen: bool) -> dict:
    """What one depth of a search scored: at its lowest-`val_loss` epoch, kept or not; `chosen`: the
    model ends with its weights (no depth is chosen when none beat the head)."""
    losses = trial["history"]["val_loss"]
    at = int(np.argmin(losses))
    return {"unfreeze_blocks": trial["blocks"], "epochs": trial["epochs"], "val_loss": float(losses[at]),
            "val_accuracy": float(trial["history"]["val_accuracy"][at]) if "val_accuracy" in trial["history"] else None,
            "beat_head": trial["best"].get("best_epoch") is not None if trial["best"] else None, "chosen": chosen,
            "seconds": round(trial["seconds"], 2), "boundary_cache": trial["boundary"].get("used", False)}


def _phase_two(model, depth, stage, config: TrainConfig, train_data, validation_data, *, folder, features, checkpoint,
               initial_epoch: int, baseline: float | None, **fit) -> dict:
    """Phase 2 with the top `depth` blocks trainable (None: the model's default), on the boundary
    cache when there is one; `stage` names its records in the checkpoint."""
    started = time.perf_counter()
    state = _phase_state(model, checkpoint, stage, initial_epoch)  # before any work a restart may skip
    unfrozen = model.backbone.set_trainable_blocks(getattr(model, "default_unfreeze_blocks", 3) if depth is None else depth)
    boundary = (_boundary_cache(model, folder, config, features, unfrozen) if state[0] is None
                else "phase 2 had finished before the restart: its result was restored from the checkpoint")
    history, epochs, best = _run_phase(
        model, 1, config, train_data, validation_data, state, stage=stage, checkpoint=checkpoint, initial_epoch=initial_epoch,
        features=boundary if isinstance(boundary, BoundarySet) else None, baseline=baseline, **fit)
    described = boundary.describe() if isinstance(boundary, BoundarySet) else {"used": False, "reason": boundary}
    return {"blocks": len(unfrozen), "unfrozen": unfrozen, "history": history, "epochs": epochs, "best": best,
            "boundary": described, "seconds": time.perf_counter() - started}


def _boundary_cache(model, folder: ImageFolder | None, config: TrainConfig, features, unfrozen: list[str]):
    """Phase 2's boundary cache (a `BoundarySet`), or why there is none (a string); `True` makes a
    missing cache an error."""
    if folder is None:
        reason = "no ImageFolder was given (fine_tune(..., folder=...))"
    elif config.cache_boundary is False:
        reason = "turned off (cache_boundary=False)"
    elif len(unfrozen) == len(model.backbone.block_names):
        reason = "every block trains: there is no frozen part to cache"
    else:
        batch = features.batch_size if features is not None else config.batch_size * model.distribute_strategy.num_replicas_in_sync
        augmenting = config.augment != "none"
        found = compute_boundary(model, folder, views=config.boundary_views if augmenting else 0, augment=config.augment, batch_size=batch)
        # Every worker of a cluster must train the same model: the memory check may differ per machine.
        if not workers_agree(model.distribute_strategy, int(isinstance(found, BoundarySet))):
            found = "the workers disagree on whether the activations fit in memory"
        if isinstance(found, BoundarySet):
            return found
        reason = found
    if config.cache_boundary is True:
        raise ValueError(f"cache_boundary=True, but phase 2 cannot use a boundary cache: {reason}. "
                         "Use cache_boundary='auto' to fall back to full images.")
    return reason


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of a phase's best epoch by `val_loss` and puts them back when the phase ends;
    with `patience`, stops the phase after that many epochs without a better one.

    With `baseline` (phase 1's best `val_loss`), an epoch must beat it to count, and a phase that never
    does ends with the weights it started from: phase 2 is kept only if it improves on the head.
    `state()` / `load_state()` let a checkpoint carry it across a restart.
    """

    def __init__(self, patience: int | None = None, baseline: float | None = None):
        super().__init__()
        self.patience = patience
        self.best = float("inf") if baseline is None else float(baseline)
        self.best_epoch: int | None = None
        self.wait = 0
        self.weights: list | None = None

    def on_train_begin(self, logs=None):
        if self.weights is None:  # a fresh phase (a resumed one has its state already)
            self.weights = self.model.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get("val_loss")
        if current is not None and current < self.best:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.weights = self.model.get_weights()
            return
        self.wait += 1
        if self.patience and self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.model.set_weights(self.weights)

    def state(self) -> tuple[dict, list]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}, self.weights

    def load_state(self, state: dict, weights: list) -> None:
        self.best, self.best_epoch, self.wait, self.weights = state["best"], state["best_epoch"], state["wait"], weights


def _trainee(model, phase: int, config: TrainConfig, train_data, validation_data, features):
    """What a phase fits, on what: the classifier on the datasets, or (on cached data) the head or
    the boundary model sharing its weights; and the phase's learning rate."""
    trainee, fit_train, fit_val = model, train_data, validation_data
    if phase == 0:
        model.backbone.set_trainable_blocks(0)
        adapt_feature_norm(model, train_data, features)
        if features is not None:  # the head's own layers, trained on the cached vectors
            trainee = head_model(model)
            fit_train, fit_val = features.datasets()
    elif isinstance(features, BoundarySet):  # the trainable blocks and the head, on cached activations
        trainee = boundary_model(model, features.top, features.train.shape[2:])
        fit_train, fit_val = features.datasets()
    fit_val = fit_val if validation_data is not None else None
    lr = config.learning_rate if phase == 0 else phase_schedule(
        config.fine_tune_schedule, config.fine_tune_lr,
        _steps_per_epoch(fit_train) if config.fine_tune_schedule != "constant" else 1, config.fine_tune_epochs)
    return trainee, fit_train, fit_val, lr


def _phase_state(model, checkpoint: RunCheckpoint | None, stage: int | str, initial_epoch: int) -> tuple:
    """What the checkpoint holds for a phase (`stage`: 1, 2, or `2_top<N>` in a depth search):
    `(record of the finished phase or None, PhaseBackup or None)`; every worker of a cluster must see
    the same, else a clear error (before any collective work that would wait on a worker taking
    another path)."""
    if checkpoint is None:
        return None, None
    done = checkpoint.finished(stage)
    backup = checkpoint.backup(stage, initial_epoch) if done is None else None
    if not workers_agree(model.distribute_strategy, -1 if done is not None else backup.resume_epoch()):
        raise ValueError(
            f"The workers see different training states in the checkpoint folder {checkpoint.directory!r}. "
            "Only the chief writes it and every worker resumes from it: put it on storage all workers "
            "read (a shared file system or bucket path), or delete it to start over."
        )
    return done, backup


def _run_phase(model, phase: int, config: TrainConfig, train_data, validation_data, state: tuple, *, features,
               checkpoint, callbacks, verbose, initial_epoch: int, baseline: float | None = None,
               stage: int | str | None = None) -> tuple[dict, int, dict]:
    """One phase of `fine_tune`: compile, then skip (finished before a restart), resume or start it
    (`state` from `_phase_state`; `stage`: its checkpoint records, phase + 1 unless named), fit;
    (history, epochs run, best: the `BestEpoch` state the phase ended with, `{}` without one)."""
    stage = stage or phase + 1
    trainee, fit_train, fit_val, lr = _trainee(model, phase, config, train_data, validation_data, features)
    multipliers = layerwise_multipliers(model, config.layer_decay) if phase == 1 and config.layer_decay is not None else None
    mixed = config.augment == "strong"
    if mixed:  # MixUp / CutMix on the images or boundary activations this phase trains on
        fit_train = mix_batches(fit_train, int(model.output.shape[-1]), config.seed + phase)
    compile_for_phase(model, lr, config.label_smoothing, config.jit_compile, multipliers, mixed)  # compiled even if only its head trains
    if trainee is not model:  # the head or boundary model: multi-label when the classifier is
        compile_for_phase(trainee, lr, config.label_smoothing, config.jit_compile, multipliers, mixed)
    done, backup = state
    if done is not None:  # finished before a restart: take its result, skip the work
        checkpoint.restore(stage, model)
        return done["history"], done["epochs"], done.get("best", {})
    phase_callbacks = list(callbacks)
    if epoch_variable(fit_train) is not None:
        phase_callbacks.insert(0, EpochSeed(epoch_variable(fit_train)))
    best = None
    if fit_val is not None and (config.restore_best or config.early_stopping_patience):
        best = BestEpoch(config.early_stopping_patience or None, baseline if config.restore_best else None)
        phase_callbacks.append(best)
    build_optimizer(trainee)
    resume_at = initial_epoch
    if backup is not None:
        resume_at = backup.restore(trainee, best)  # after a kill: the last finished epoch's state
        phase_callbacks.append(backup)
    result = trainee.fit(
        fit_train, validation_data=fit_val, initial_epoch=resume_at, epochs=initial_epoch + (config.head_epochs, config.fine_tune_epochs)[phase],
        class_weight=config.class_weight, callbacks=phase_callbacks, verbose=verbose, shuffle=False,  # the dataset shuffles, seeded
    )
    phase_history = backup.history if backup is not None else result.history
    epochs_run = len(next(iter(phase_history.values()), []))
    ended = best.state()[0] if best is not None else {}
    if checkpoint is not None:
        checkpoint.finish(stage, model, epochs_run, phase_history, best=ended)
    return phase_history, epochs_run, ended


def train_from_scratch(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None = None,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.0,
    class_weight: dict[int, float] | None = None,
    seed: int = 42,
    jit_compile: bool | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    mix: bool = False,
) -> dict[str, list[float]]:
    """Trains `model`'s architecture from random weights: the baseline that pretraining must beat.

    The backbone's weights are re-drawn (`reinitialize(seed)`), every layer trains at `learning_rate`
    in one phase, and BatchNormalization runs in training mode (it learns its statistics from this
    data: there are no pretrained ones to keep). It normalises with batch statistics in evaluation
    too (`backbone.batch_statistics`): its moving averages (momentum 0.999 in MobileNetV2) need
    thousands of steps to settle, and a short run judged with unsettled ones would look worse than it
    is. Use the same splits and epochs as the pretrained run; `mix=True` blends batches with MixUp
    or CutMix as the pretrained run's `augment="strong"` does (`tl_keras.augment.mix_batches`).

    Returns:
        The Keras history (metric -> one value per epoch).
    """
    require_int("epochs", epochs)
    backbone = model.backbone
    backbone.reinitialize(seed)
    backbone.inference_mode = False
    backbone.batch_statistics = True
    backbone.set_trainable_blocks("all")
    if mix:
        train_data = mix_batches(train_data, int(model.output.shape[-1]), seed)
    compile_for_phase(model, learning_rate, label_smoothing, jit_compile, soft_labels=mix)
    build_optimizer(model)
    phase_callbacks = list(callbacks)
    if epoch_variable(train_data) is not None:
        phase_callbacks.insert(0, EpochSeed(epoch_variable(train_data)))
    result = model.fit(train_data, validation_data=validation_data, epochs=epochs, class_weight=class_weight,
                       callbacks=phase_callbacks, verbose=verbose, shuffle=False)
    return {k: [float(v) for v in values] for k, values in result.history.items()}
