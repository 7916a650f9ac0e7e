"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune the top blocks.

Examples:
    >>> from tl_keras.training import fine_tune
    >>> history = fine_tune(model, train_ds, val_ds, head_epochs=5, fine_tune_epochs=5)  # doctest: +SKIP
    >>> history.history["val_accuracy"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tl_keras.config import TrainConfig, is_search, search_depths
from tl_keras.data.augment import mix_batches
from tl_keras.data.epochs import epoch_variable
from tl_keras.data.folder import ImageFolder
from tl_keras.distribute import workers_agree
from tl_keras.models.registry import BoundaryUnavailable
from tl_keras.training.caches import (
    BoundarySet,
    FeatureSet,
    boundary_model,
    compute_boundary,
    extract_features,
    feature_extractor,
    head_model,
)
from tl_keras.training.callbacks import BestEpoch, EpochSeed
from tl_keras.training.checkpoint import RunCheckpoint, build_optimizer
from tl_keras.training.compile import (
    compile_for_phase,
    layerwise_multipliers,
    phase_schedule,
)
from tl_keras.training.history import FineTuneHistory
from tl_keras.training.head_init import start_head
from tl_keras.utils.checks import require_int


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


def phase_two_depth(model: keras.Model, config: TrainConfig) -> tuple[int | str, str]:
    """How many top blocks phase 2 trains (before a depth search, the one it centres on), and why:
    `config.unfreeze_blocks` when set; else the model's `far_domain_unfreeze_blocks` where the run
    measured a domain with no "up" (`symmetry="dihedral"`: aerial scenes, microscopy), else its
    `default_unfreeze_blocks`. The farther the domain from ImageNet's photos, the more of the network
    to retrain: MobileNetV2's 12 blocks instead of 8 gained on both such shared sets (aerial scenes
    +0.006, blood cells +0.006, 3 seeds, docs/benchmarks/accuracy.md) at about 1.3x a run's time.

    Examples:
        >>> from types import SimpleNamespace
        >>> mobilenet = SimpleNamespace(default_unfreeze_blocks=8, far_domain_unfreeze_blocks=12)
        >>> phase_two_depth(mobilenet, TrainConfig(symmetry="dihedral"))[0], phase_two_depth(mobilenet, TrainConfig(symmetry="flip"))[0]
        (12, 8)
        >>> phase_two_depth(mobilenet, TrainConfig(symmetry="dihedral", unfreeze_blocks=4))
        (4, 'set: unfreeze_blocks=4')
    """
    setting = config.unfreeze_blocks
    if setting is not None and not is_search(setting):
        return setting, f"set: unfreeze_blocks={setting!r}"
    default = getattr(model, "default_unfreeze_blocks", 3)
    far = getattr(model, "far_domain_unfreeze_blocks", None)
    if config.symmetry == "dihedral" and far is not None and far != default:
        depth, reason = far, f"the backbone's depth for a domain with no up (symmetry dihedral): {far} blocks, not {default}"
    else:
        depth, reason = default, "the backbone's default"
    if setting is None:
        return depth, reason
    return depth, f"searched, unfreeze_blocks={setting!r}" + (f" (around {reason})" if setting == "search" else "")


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
            `fine_tune_epochs`, `unfreeze_blocks` (None: the backbone's default, deeper where
            `symmetry` is "dihedral", see `phase_two_depth`; `"search"` or several counts: phase 2
            runs at each depth from the head's weights and the model keeps the one with the lowest
            `val_loss`, see `FineTuneHistory.depth_search`), `learning_rate`,
            `fine_tune_learning_rate` (None: a tenth), `fine_tune_schedule`, `layer_decay`,
            `label_smoothing`, `early_stopping_patience` and `fine_tune_patience` (stop a phase
            after this many epochs without a better `val_loss`; see `TrainConfig.patience`), `restore_best` (each phase ends with its best
            epoch's weights, and phase 2 is kept only if it beats the head: see `BestEpoch`),
            `class_weight` (a dict: see `balanced_class_weights`), `jit_compile`, and for `folder`
            `cache_boundary` and `boundary_views`). Defaults to `TrainConfig()`.
        features: cached backbone features (`tl_keras.training.caches.compute_features`) of the same
            images: phase 1 then trains the model's head layers on them instead of running the
            frozen backbone every epoch (callbacks see the `FeatureHead` as their model).
            Defaults to None (phase 1 on `train_data`).
        folder: the `ImageFolder` that `train_data` and `validation_data` were made from. With it
            (and `config.cache_boundary`), phase 2 runs the frozen blocks below the unfrozen ones
            once (`tl_keras.training.caches.compute_boundary`: validation images exactly; training images
            exactly without augmentation, else `config.boundary_views` augmented views) and trains
            the unfrozen blocks and the head on those activations; callbacks then see the boundary
            model, whose weights are the classifier's. Defaults to None (phase 2 on `train_data`).
        checkpoint: a folder (or `tl_keras.training.checkpoint.RunCheckpoint`) to make the run resumable:
            state is saved at every epoch's end, and calling `fine_tune` again the same way after a
            crash or kill continues from the last finished epoch and ends with the same weights as an
            uninterrupted run (with `tl_keras` datasets and a fixed seed; early stopping restarts
            its patience count). Delete the folder to start over. Defaults to None.
        callbacks: extra Keras callbacks, used in both phases.
        verbose: Keras `fit` verbosity (progress bars by default).
        **overrides: `TrainConfig` fields to change, e.g. `head_epochs=3, learning_rate=1e-3`.

    Returns:
        A `FineTuneHistory` merging both phases.

    Examples:
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
    head_run, head_best, head_start = 0, {}, None
    if config.head_epochs:
        state = _phase_state(model, checkpoint, 1, 0)
        model.backbone.set_trainable_blocks(0)
        adapt_feature_norm(model, train_data, features)
        head_start = start_head(model, config, features)
        phase_history, head_run, head_best = _run_phase(
            model, 1, config, train_data, validation_data, state, features=features,
            checkpoint=checkpoint, callbacks=callbacks, verbose=verbose, initial_epoch=0)
        _extend(history, phase_history)
    rates = (config.learning_rate, config.fine_tune_lr)
    if not config.fine_tune_epochs:
        return FineTuneHistory(history, head_run, 0, [], rates, None, [head_best.get("best_epoch"), None],
                               head_start=head_start)
    depth = phase_two_depth(model, config)[0]  # the one depth, or the centre of a search's ladder
    depths = search_depths(config.unfreeze_blocks, depth, len(backbone.block_names)) if is_search(config.unfreeze_blocks) else [depth]
    trial, search = _fine_tune_depths(model, depths, config, train_data, validation_data, folder=folder, features=features,
                                      checkpoint=checkpoint, callbacks=callbacks, verbose=verbose,
                                      initial_epoch=head_run, baseline=head_best.get("best"))
    _extend(history, trial["history"])
    return FineTuneHistory(history, head_run, trial["epochs"], trial["unfrozen"], rates, trial["boundary"],
                           [head_best.get("best_epoch"), trial["best"].get("best_epoch")], search, head_start)


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
    """Phase 2 with the top `depth` blocks trainable (`phase_two_depth`), on the boundary
    cache when there is one; `stage` names its records in the checkpoint."""
    started = time.perf_counter()
    state = _phase_state(model, checkpoint, stage, initial_epoch)  # before any work a restart may skip
    unfrozen = model.backbone.set_trainable_blocks(depth)
    boundary = (_boundary_cache(model, folder, config, features, unfrozen) if state[0] is None
                else BoundaryChoice(None, "phase 2 had finished before the restart: its result was restored from the checkpoint"))
    history, epochs, best = _run_phase(
        model, 2, config, train_data, validation_data, state, stage=stage, checkpoint=checkpoint, initial_epoch=initial_epoch,
        features=boundary.cache, baseline=baseline, **fit)
    described = boundary.describe()
    return {"blocks": len(unfrozen), "unfrozen": unfrozen, "history": history, "epochs": epochs, "best": best,
            "boundary": described, "seconds": time.perf_counter() - started}


@dataclasses.dataclass
class BoundaryChoice:
    """Phase 2's boundary cache, or why there is none."""

    cache: BoundarySet | None
    reason: str | None = None

    def describe(self) -> dict:
        return self.cache.describe() if self.cache is not None else {"used": False, "reason": self.reason}


def _boundary_cache(model, folder: ImageFolder | None, config: TrainConfig, features, unfrozen: list[str]) -> BoundaryChoice:
    """Phase 2's boundary cache, or why there is none; `cache_boundary=True` makes a missing cache an error."""
    if folder is None:
        reason = "no ImageFolder was given (fine_tune(..., folder=...))"
    elif config.cache_boundary is False:
        reason = "turned off (cache_boundary=False)"
    elif len(unfrozen) == len(model.backbone.block_names):
        reason = "every block trains: there is no frozen part to cache"
    else:
        batch = features.batch_size if features is not None else config.batch_size * model.distribute_strategy.num_replicas_in_sync
        augmenting = config.augment != "none"
        try:
            found, reason = compute_boundary(model, folder, views=config.boundary_views if augmenting else 0,
                                             augment=config.augmentation, batch_size=batch), None
        except BoundaryUnavailable as err:
            found, reason = None, str(err)
        # Every worker of a cluster must train the same model: the memory check may differ per machine.
        if not workers_agree(model.distribute_strategy, int(found is not None)):
            found, reason = None, "the workers disagree on whether the activations fit in memory"
        if found is not None:
            return BoundaryChoice(found)
    if config.cache_boundary is True:
        raise ValueError(f"cache_boundary=True, but phase 2 cannot use a boundary cache: {reason}. "
                         "Use cache_boundary='auto' to fall back to full images.")
    return BoundaryChoice(None, reason)


def _trainee(model, phase: int, config: TrainConfig, train_data, validation_data, features):
    """What phase `phase` (1 or 2) fits, on what: the classifier on the datasets, or (on cached data) the head or
    the boundary model sharing its weights; and the phase's learning rate."""
    trainee, fit_train, fit_val = model, train_data, validation_data
    if phase == 1:  # the backbone frozen, the head started by `fine_tune`
        if features is not None:  # the head's own layers, trained on the cached vectors
            trainee = head_model(model)
            fit_train, fit_val = features.datasets()
    elif isinstance(features, BoundarySet):  # the trainable blocks and the head, on cached activations
        trainee = boundary_model(model, features.top, features.train.shape[2:])
        fit_train, fit_val = features.datasets()
    fit_val = fit_val if validation_data is not None else None
    lr = config.learning_rate if phase == 1 else phase_schedule(
        config.phase_two_schedule, config.fine_tune_lr,
        _steps_per_epoch(fit_train) if config.phase_two_schedule != "constant" else 1, config.fine_tune_epochs)
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
    """Phase `phase` of `fine_tune` (1: the head, 2: the top blocks; numbered as everywhere in
    tl_keras, from 1): compile, then skip (finished before a restart), resume or start it
    (`state` from `_phase_state`; `stage`: its checkpoint records, the phase's number unless named), fit;
    (history, epochs run, best: the `BestEpoch` state the phase ended with, `{}` without one)."""
    stage = stage or phase
    trainee, fit_train, fit_val, lr = _trainee(model, phase, config, train_data, validation_data, features)
    multipliers = layerwise_multipliers(model, config.layer_decay) if phase == 2 and config.layer_decay is not None else None
    mixed = config.augment == "strong"
    if mixed:  # MixUp / CutMix on the images or boundary activations this phase trains on
        fit_train = mix_batches(fit_train, int(model.output.shape[-1]), config.seed + phase - 1)
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
    if fit_val is not None and (config.restore_best or config.patience(phase)):
        best = BestEpoch(config.patience(phase), baseline if config.restore_best else None, restore=config.restore_best)
        phase_callbacks.append(best)
    build_optimizer(trainee)
    resume_at = initial_epoch
    if backup is not None:
        resume_at = backup.restore(trainee, best)  # after a kill: the last finished epoch's state
        phase_callbacks.append(backup)
    result = trainee.fit(
        fit_train, validation_data=fit_val, initial_epoch=resume_at, epochs=initial_epoch + (config.head_epochs, config.fine_tune_epochs)[phase - 1],
        class_weight=config.class_weight, callbacks=phase_callbacks, verbose=verbose, shuffle=False,  # the dataset shuffles, seeded
    )
    phase_history = backup.history if backup is not None else result.history
    epochs_run = len(next(iter(phase_history.values()), []))
    # Without restore_best the phase ends with its last epoch's weights (it only stopped early): no best epoch to report.
    ended = best.state()[0] if best is not None and config.restore_best else {}
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
    or CutMix as the pretrained run's `augment="strong"` does (`tl_keras.data.augment.mix_batches`).

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
