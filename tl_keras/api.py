"""The one-call API: image folder -> pretrained backbone + new head -> two-phase fit -> export.

Example (offline, with the local copies beside the project):

>>> import tl_keras
>>> result = tl_keras.train(
...     "../shared/assets/datasets/hymenoptera",
...     backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector",
...     image_size=96, head_epochs=2, fine_tune_epochs=1, output="saved_models/hymenoptera")
>>> result.metrics["val_accuracy"] > 0.5, result.export_dir
(True, 'saved_models/hymenoptera/1')
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tl_keras.advisor import STRATEGIES, Advice, advise
from tl_keras.checkpoint import RunCheckpoint
from tl_keras.classifier import ImageClassifier, build_classifier
from tl_keras.data import ImageFolder, load_image_folder
from tl_keras.distribute import dtype_policy, get_strategy, is_chief, precision_policy
from tl_keras.evaluation import classification_report
from tl_keras.export import export_saved_model
from tl_keras.features import compute_features
from tl_keras.hub import resolve_handle
from tl_keras.registry import resolve_backbone
from tl_keras.training import FineTuneHistory, adapt_feature_norm, balanced_class_weights, fine_tune, train_from_scratch

DEFAULT_OUTPUT_ROOT = "saved_models"
DISTRIBUTION_STRATEGIES = ("default", "mirrored", "multi-worker")
TRANSFER_STRATEGIES = ("auto",) + STRATEGIES
DEFAULT_FINE_TUNE_ALL_DECAY = 0.8


@dataclasses.dataclass
class TrainResult:
    """What `train` returns: the model, its class names, the merged history, metrics and export path."""

    model: ImageClassifier
    class_names: list[str]
    history: FineTuneHistory
    metrics: dict
    export_dir: str | None
    data: ImageFolder


def train(
    data_dir: str | ImageFolder,
    backbone: str = "mobilenet_v2",
    *,
    weights: str | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    head_epochs: int = 5,
    fine_tune_epochs: int = 5,
    unfreeze_blocks: int | str | None = None,
    cut: str | None = None,
    hidden_units: Sequence[int] | None = None,
    layer_decay: float | None = None,
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float | None = None,
    dropout: float = 0.2,
    label_smoothing: float = 0.0,
    l2: float = 0.0,
    validation_split: float = 0.2,
    augment: bool = True,
    early_stopping_patience: int | None = None,
    class_weight: str | dict[int, float] | None = None,
    fine_tune_schedule: str = "constant",
    cache_features: bool | str = "auto",
    feature_cache_dir: str | None = None,
    feature_copies: int = 0,
    mixed_precision: bool = False,
    jit_compile: bool | str = "auto",
    seed: int = 42,
    deterministic: bool = True,
    checkpoint_dir: str | None = "auto",
    strategy: str | tf.distribute.Strategy | None = None,
    distribute: str | tf.distribute.Strategy | None = None,
    compare_scratch: bool = False,
    output: str | None = None,
    export: bool = True,
    evaluate: bool = True,
    plots_dir: str | None = None,
    tensorboard_dir: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> TrainResult:
    """Trains a classifier on an image folder with two-phase transfer learning, and exports it.

    Args:
        data_dir: one subfolder per class, or `train/`, `val/` (and `test/`) of that shape; or an
            `ImageFolder` already loaded at the backbone's image size (e.g. one of `folder.folds(k)`).
        backbone: registry name (`"mobilenet_v2"`, `"resnet50"`, `"keras:mobilenet_v2"`, ...), TF Hub /
            Kaggle handle, URL, or local SavedModel folder. Defaults to `"mobilenet_v2"` (TF Hub).
        weights: for `keras:` backbones: `"imagenet"`, `"none"` or a weights file.
        image_size: input size. Defaults to the backbone's (224).
        batch_size: per-replica batch size; the global batch is this times the replicas. Defaults to 32.
        head_epochs, fine_tune_epochs: epochs of phase 1 (frozen backbone) and phase 2. Default 5 each.
        unfreeze_blocks: top blocks trained in phase 2 (int or `"all"`). Defaults to the backbone's.
        cut: cut the backbone at this block (`"block_12"`) or layer; its pooled output is the
            features. Defaults to None (the full feature vector).
        hidden_units: hidden ReLU layers in the head, e.g. `(512,)`. Defaults to none.
        layer_decay: discriminative learning rates in phase 2: each block below the top trains at
            this factor times the rate of the block above (0 <= decay <= 1; 0 trains the top block
            only). Defaults to None (one rate).
        learning_rate: phase-1 learning rate (Adam). Defaults to 1e-3.
        fine_tune_learning_rate: phase-2 learning rate. Defaults to `learning_rate / 10`.
        dropout, label_smoothing, l2: head regularisation. Defaults 0.2, 0, 0.
        validation_split: held-out fraction when the folder has no `val/`. Defaults to 0.2.
        augment: light augmentation of training images. Defaults to True.
        early_stopping_patience: per-phase early stopping on `val_loss`, restoring each phase's best
            weights. Defaults to None (off).
        class_weight: `"auto"` weighs each class by `n / (classes * count)` from the training
            counts (for imbalanced folders), or a dict class index -> weight. Defaults to None.
        fine_tune_schedule: phase-2 learning rate: `"constant"` (default), `"cosine"` decay, or
            `"warmup-cosine"` (one epoch of linear warm-up, then cosine decay).
        cache_features: train phase 1 on backbone features computed once per image (see
            `tl_keras.features`) instead of running the frozen backbone every epoch: True, False, or
            `"auto"` (default): on whenever it saves backbone passes, i.e. when `head_epochs`
            exceeds the passes caching costs (`max(1, feature_copies)`), or a `feature_cache_dir`
            is given.
        feature_cache_dir: a folder to keep features in across runs (keyed by backbone weights,
            image size and file content). Defaults to None (in memory only).
        feature_copies: 0 (default) caches the un-augmented training images, so augmentation
            applies in phase 2 only; K caches K augmented variants of each image.
        mixed_precision: build in `mixed_float16` (`mixed_bfloat16` on TPU); the output layer stays
            float32. A no-op with a warning on CPU. Defaults to False.
        jit_compile: XLA, as `keras.Model.compile` takes it; `"auto"` (default) is on for GPU/TPU
            without tf.distribute, off on CPU.
        seed: seeds the split, shuffling, augmentation and weight initialisation. Defaults to 42.
        deterministic: turn on TensorFlow op determinism, so two runs with the same seed on the same
            machine give identical metrics and weights. On GPU some ops are slower, and a few have no
            deterministic kernel and raise an error: pass False there. Defaults to True.
        checkpoint_dir: where the run saves its state at every epoch's end; running the same call
            again after a crash or kill resumes it (see `tl_keras.checkpoint`). `"auto"` (default):
            `.checkpoint/` inside the export folder `NAME/`; None: no checkpoints. Deleted once the
            run has finished and exported.
        strategy: the transfer-learning strategy or the tf.distribute one (one argument, as the
            CLI's `--strategy`): `"auto"` measures the data with `tl_keras.advisor.advise` and
            follows its plan (`metrics["advice"]` says what it measured and why); `"head-only"`,
            `"cut"` (at `cut`, else at the block whose features probe best), `"top-blocks"` or
            `"fine-tune-all"` force a plan; `"default"`, `"mirrored"`, `"multi-worker"` or a
            `tf.distribute.Strategy` pick the distribution (as `distribute`). Head-only and cut
            plans spend the fine-tune epochs on the head. Explicit `unfreeze_blocks`, `cut`,
            `hidden_units` and `layer_decay` win over a plan's. Defaults to None: the two-phase fit
            as configured, distribution chosen automatically.
        distribute: a `tf.distribute.Strategy` or `"auto"`, `"default"`, `"mirrored"`,
            `"multi-worker"` (see `tl_keras.distribute.get_strategy`). Defaults to `"auto"`.
        compare_scratch: also train the same architecture from random weights on the same splits
            for the same number of epochs (every layer trainable, BatchNormalization learning its
            statistics, at `learning_rate`), and report both in `metrics["scratch"]`, with
            `scratch_vs_pretrained.png` in `plots_dir`. Defaults to False.
        output: export folder `.../NAME` (versions go inside). Defaults to `saved_models/<data folder name>`.
        export: write the SavedModel. Defaults to True. Only the chief exports under multi-worker training.
        evaluate: report on the final model: top-1/top-k accuracy, per-class precision/recall/F1, the
            confusion matrix and the most confidently wrong images of `val` (and `test/` when the
            folder has one), in `metrics["evaluation"]`. Defaults to True.
        plots_dir: write PNGs there (needs matplotlib): `curves.png` (both phases), and per split
            `confusion_<split>.png` and `misclassified_<split>.png`. Defaults to None.
        tensorboard_dir: write TensorBoard logs of both phases there. Defaults to None.
        callbacks: extra Keras callbacks for both phases.
        verbose: Keras progress output. Defaults to `"auto"` (progress bars).

    Returns:
        A `TrainResult`; `metrics` has `head_val_accuracy`, `val_accuracy`, `class_names`,
        `export_dir`, `num_train_images`, `num_val_images`, `skipped_files`, `train_seconds`, ...
    """
    if isinstance(data_dir, ImageFolder):
        image_size = data_dir.image_size if image_size is None else image_size
        if image_size != data_dir.image_size:
            raise ValueError(f"The ImageFolder was loaded at {data_dir.image_size} px but image_size={image_size}: load it at the size you train at.")
    spec = resolve_backbone(backbone, weights=weights, image_size=image_size)
    transfer, strategy = _split_strategy(strategy, distribute)
    _use_feature_cache(cache_features, head_epochs, feature_copies, feature_cache_dir)  # validates early
    if tensorboard_dir:
        _require("tensorboard", "--tensorboard needs TensorBoard: pip install tensorboard (or \"tl_keras[tensorboard]\").")
    if plots_dir:
        _require("matplotlib", "--plots needs matplotlib: pip install matplotlib (or \"tl_keras[plots]\").")
    if not (class_weight is None or class_weight == "auto" or isinstance(class_weight, dict)):
        raise ValueError(f"`class_weight` must be None, 'auto' or a dict. Received: class_weight={class_weight!r}")
    # First, before any TensorFlow op: MultiWorkerMirroredStrategy configures collectives at startup.
    strategy = get_strategy(strategy)
    if spec.source == "hub":
        resolve_handle(spec.handle)  # fail on a download before decoding the data; cached for the build
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    root = data_dir.root if isinstance(data_dir, ImageFolder) else data_dir
    advice = None
    if transfer is not None:
        plan, advice = plan_transfer(transfer, root, spec, cut=cut, seed=seed)
        cut = cut if cut is not None else plan["cut"]
        unfreeze_blocks = unfreeze_blocks if unfreeze_blocks is not None else plan["unfreeze_blocks"]
        hidden_units = hidden_units if hidden_units is not None else plan["hidden_units"]
        layer_decay = layer_decay if layer_decay is not None else plan["layer_decay"]
        if unfreeze_blocks == 0:  # nothing to fine-tune: the head gets the whole budget
            head_epochs, fine_tune_epochs = head_epochs + fine_tune_epochs, 0
    use_cache = _use_feature_cache(cache_features, head_epochs, feature_copies, feature_cache_dir)
    if cut is not None:
        spec = spec.replace(cut=cut)
    keras.utils.set_random_seed(seed)
    base = output or os.path.join(DEFAULT_OUTPUT_ROOT, os.path.basename(os.path.normpath(root)) or "model")
    if isinstance(data_dir, ImageFolder):
        folder = data_dir
    else:
        folder = load_image_folder(data_dir, image_size=spec.image_size, validation_split=validation_split, seed=seed)
    global_batch = batch_size * strategy.num_replicas_in_sync
    train_ds = folder.dataset("train", batch_size=global_batch, training=True, augment=augment)
    val_ds = folder.dataset("val", batch_size=global_batch)
    with strategy.scope(), dtype_policy(precision_policy(mixed_precision)):
        model = build_classifier(
            spec, num_classes=len(folder.class_names), dropout=dropout, l2=l2, class_names=folder.class_names,
            hidden_units=hidden_units or (),
        )
    weights_by_class = (balanced_class_weights(folder.train.labels, len(folder.class_names))
                        if class_weight == "auto" else class_weight)
    callbacks = list(callbacks)
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(
            tensorboard_dir if is_chief() else tempfile.mkdtemp(prefix="tl_keras_worker_tb_")))
    features = None
    if use_cache:
        features = compute_features(model, folder, copies=feature_copies, batch_size=global_batch, store=feature_cache_dir)
    checkpoint, resumed = None, False
    run_dir = _checkpoint_dir(checkpoint_dir, base)
    if run_dir is not None:
        resumed = os.path.exists(os.path.join(run_dir, "run.json"))
        checkpoint = RunCheckpoint(run_dir, writer=is_chief(), settings={
            "data_dir": os.path.abspath(root), "backbone": spec.name, "cut": spec.cut,
            "hidden_units": list(hidden_units or ()), "layer_decay": layer_decay, "validation": folder.validation_source, "handle": spec.handle,
            "weights": spec.weights, "image_size": spec.image_size, "class_names": folder.class_names,
            "num_train_images": len(folder.train), "batch_size": global_batch, "head_epochs": head_epochs,
            "fine_tune_epochs": fine_tune_epochs, "unfreeze_blocks": unfreeze_blocks, "learning_rate": learning_rate,
            "fine_tune_learning_rate": fine_tune_learning_rate, "dropout": dropout, "label_smoothing": label_smoothing,
            "l2": l2, "validation_split": validation_split, "augment": augment, "seed": seed,
            "early_stopping_patience": early_stopping_patience,
            "feature_copies": feature_copies if features is not None else None,
            "class_weight": {str(k): v for k, v in weights_by_class.items()} if weights_by_class else None,
            "fine_tune_schedule": fine_tune_schedule,
        })
    history = fine_tune(
        model, train_ds, val_ds, head_epochs=head_epochs, fine_tune_epochs=fine_tune_epochs,
        unfreeze_blocks=unfreeze_blocks, learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate, label_smoothing=label_smoothing,
        early_stopping_patience=early_stopping_patience, class_weight=weights_by_class,
        fine_tune_schedule=fine_tune_schedule, layer_decay=layer_decay, features=features, jit_compile=jit_compile,
        checkpoint=checkpoint, callbacks=callbacks, verbose=verbose,
    )
    final = {"accuracy": history.last("val_accuracy"), "loss": history.last("val_loss")}
    if early_stopping_patience:  # the best weights were restored: measure the model that is exported
        final = model.evaluate(val_ds, verbose=0, return_dict=True)
    train_seconds = time.perf_counter() - started
    evaluation = {}
    if evaluate:
        evaluation = {split: _report(model, folder, split, global_batch) for split in folder.splits if split != "train"}
    scratch = None
    if compare_scratch:
        scratch = _compare_scratch(
            spec, folder, train_ds, val_ds, strategy, epochs=history.head_epochs + history.fine_tune_epochs,
            learning_rate=learning_rate, dropout=dropout, l2=l2, hidden_units=hidden_units or (),
            label_smoothing=label_smoothing, class_weight=weights_by_class, seed=seed,
            mixed_precision=mixed_precision, jit_compile=jit_compile, verbose=verbose,
        )
    if plots_dir and is_chief():
        _plots(plots_dir, history, evaluation)
        if scratch is not None:
            from tl_keras.plots import plot_scratch_comparison

            plot_scratch_comparison(history.history, scratch["history"], os.path.join(plots_dir, "scratch_vs_pretrained.png"),
                                    head_epochs=history.head_epochs if history.fine_tune_epochs else 0)
    export_dir = None
    if export:
        export_dir = _export(model, folder.class_names, base)
    if run_dir is not None and is_chief():  # finished and exported: nothing left to resume
        shutil.rmtree(run_dir, ignore_errors=True)
    metrics = {
        "backbone": spec.name,
        "image_size": spec.image_size,
        "transfer_strategy": transfer,
        "advice": advice.to_dict() if advice is not None else None,
        "cut": spec.cut,
        "hidden_units": list(hidden_units or ()),
        "layer_decay": layer_decay,
        "head_val_accuracy": history.last("val_accuracy", phase=1),
        "val_accuracy": float(final["accuracy"]),
        "val_loss": float(final["loss"]),
        "class_names": folder.class_names,
        "export_dir": export_dir,
        "num_train_images": len(folder.train),
        "num_val_images": len(folder.val),
        "num_files_found": folder.num_found,
        "validation_source": folder.validation_source,
        "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped],
        "warnings": [{"path": p, "message": m} for p, m in folder.warnings],
        "head_epochs": history.head_epochs,
        "fine_tune_epochs": history.fine_tune_epochs,
        "unfrozen_blocks": history.unfrozen_blocks,
        "learning_rates": list(history.learning_rates),
        "resumed": resumed,
        "class_weight": {str(k): v for k, v in weights_by_class.items()} if weights_by_class else None,
        "evaluation": evaluation,
        "feature_cache": features.describe() if features is not None else {"used": False},
        "dtype_policy": model.dtype_policy.name,
        "num_replicas": strategy.num_replicas_in_sync,
        "global_batch_size": global_batch,
        "train_seconds": round(train_seconds, 2),
        "history": history.history,
        "scratch": scratch,
    }
    return TrainResult(model, folder.class_names, history, metrics, export_dir, folder)


@dataclasses.dataclass
class CrossValidation:
    """What `cross_validate` returns: each fold's metrics, and the mean and spread of their accuracy."""

    folds: list[dict]
    accuracies: list[float]
    advice: dict | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Sample standard deviation across folds (ddof=1)."""
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"folds": len(self.accuracies), "accuracies": self.accuracies, "mean_accuracy": self.mean,
                "std_accuracy": self.std, "min_accuracy": min(self.accuracies), "max_accuracy": max(self.accuracies),
                "advice": self.advice, "per_fold": self.folds}


def cross_validate(data_dir: str, folds: int = 5, *, backbone: str = "mobilenet_v2", weights: str | None = None,
                   image_size: int | None = None, seed: int = 42, strategy=None, **train_options) -> CrossValidation:
    """k-fold cross-validation of `train` for small datasets: the training and validation images are
    pooled and dealt into `folds` stratified folds; each fold is the validation set of one run on
    the rest. Nothing is exported. A `strategy="auto"` plan is measured once and used in every fold.

    Args:
        data_dir: the image folder; a `test/` split is left out of the folds (and reported per fold).
        folds: k (>= 2). Defaults to 5.
        backbone, weights, image_size, seed, strategy, **train_options: as `train` takes them.

    Returns:
        A `CrossValidation`: per-fold metrics, `mean` and `std` of the validation accuracy.

    Example:

    >>> cv = cross_validate("../shared/assets/datasets/hymenoptera", folds=3, image_size=96,
    ...                     backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector")  # doctest: +SKIP
    >>> f"{cv.mean:.3f} +- {cv.std:.3f}"  # doctest: +SKIP
    """
    for option in ("export", "checkpoint_dir", "output"):
        if option in train_options:
            raise ValueError(f"`{option}` does not apply to cross-validation: fold models are not exported or resumed.")
    spec = resolve_backbone(backbone, weights=weights, image_size=image_size)
    transfer, distribution = _split_strategy(strategy, train_options.pop("distribute", None))
    folder = load_image_folder(data_dir, image_size=spec.image_size, seed=seed,
                               validation_split=train_options.pop("validation_split", 0.2))
    fold_folders = folder.folds(folds)
    advice = None
    if transfer == "auto" or (transfer == "cut" and train_options.get("cut") is None):
        # Measured once, on the whole folder; every fold then runs the fixed plan it chose.
        plan, found = plan_transfer(transfer, data_dir, spec, seed=seed)
        advice = found.to_dict()
        transfer = found.strategy if transfer == "auto" else "cut"
        for key, value in plan.items():
            if train_options.get(key) is None:
                train_options[key] = value
    results, accuracies = [], []
    for k, fold in enumerate(fold_folders, start=1):
        result = train(fold, backbone=backbone, weights=weights, image_size=spec.image_size, seed=seed,
                       strategy=transfer, distribute=distribution, export=False, checkpoint_dir=None, **train_options)
        metrics = {key: result.metrics[key] for key in ("val_accuracy", "val_loss", "head_val_accuracy",
                                                        "num_train_images", "num_val_images", "train_seconds")}
        if "test" in result.metrics.get("evaluation", {}):
            metrics["test_accuracy"] = result.metrics["evaluation"]["test"]["accuracy"]
        results.append({"fold": k, **metrics})
        accuracies.append(float(result.metrics["val_accuracy"]))
    return CrossValidation(results, accuracies, advice)


def lr_find(
    data_dir: str,
    backbone: str = "mobilenet_v2",
    *,
    weights: str | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    unfreeze_blocks: int | str | None = None,
    layer_decay: float | None = None,
    cut: str | None = None,
    hidden_units: Sequence[int] = (),
    dropout: float = 0.2,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    cache_features: bool = True,
    plot: str | None = None,
    seed: int = 42,
):
    """Runs the learning-rate range test for both phases on an image folder (see `tl_keras.lr_finder`).

    The model is built as `train` would build it; phase 1 runs on cached features unless
    `cache_features=False`. With `plot`, writes a PNG of loss against learning rate (needs matplotlib).

    Returns:
        An `LRFindResult`: `suggestions` maps `"phase 1"` / `"phase 2"` to a learning rate, for
        `train(learning_rate=..., fine_tune_learning_rate=...)`.

    Example:

    >>> found = lr_find("../shared/assets/datasets/hymenoptera", image_size=96,
    ...                 backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector", plot="lr.png")  # doctest: +SKIP
    >>> found.suggestions  # doctest: +SKIP
    """
    from tl_keras.lr_finder import find_learning_rates

    if plot:
        _require("matplotlib", "--plot needs matplotlib: pip install matplotlib (or \"tl_keras[plots]\").")
    spec = resolve_backbone(backbone, weights=weights, image_size=image_size)
    if cut is not None:
        spec = spec.replace(cut=cut)
    keras.utils.set_random_seed(seed)
    folder = load_image_folder(data_dir, image_size=spec.image_size, seed=seed)
    model = build_classifier(spec, num_classes=len(folder.class_names), dropout=dropout,
                             class_names=folder.class_names, hidden_units=hidden_units)
    train_ds = folder.dataset("train", batch_size=batch_size, training=True)
    features = compute_features(model, folder, batch_size=batch_size) if cache_features else None
    adapt_feature_norm(model, train_ds, features)
    found = find_learning_rates(model, train_ds, features=features, unfreeze_blocks=unfreeze_blocks,
                                layer_decay=layer_decay, min_lr=min_lr, max_lr=max_lr, steps=steps)
    if plot:
        from tl_keras.plots import plot_lr_find

        plot_lr_find(found.tests, plot)
    return found


def _split_strategy(strategy, distribute) -> tuple[str | None, str | tf.distribute.Strategy]:
    """`strategy` names a transfer-learning plan or a distribution; returns (plan or None, distribution)."""
    distribute = "auto" if distribute is None else distribute
    if strategy is None:
        return None, distribute
    if isinstance(strategy, tf.distribute.Strategy) or strategy in DISTRIBUTION_STRATEGIES:
        if distribute != "auto":
            raise ValueError(
                f"`strategy={strategy!r}` picks the distribution, and so does `distribute={distribute!r}`: pass one."
            )
        return None, strategy
    if strategy in TRANSFER_STRATEGIES:
        return strategy, distribute
    raise ValueError(
        f"`strategy` must be a transfer-learning strategy ({', '.join(TRANSFER_STRATEGIES)}), a distribution "
        f"({', '.join(DISTRIBUTION_STRATEGIES)}) or a tf.distribute.Strategy. Received: strategy={strategy!r}"
    )


def plan_transfer(strategy: str, data_dir: str, spec, *, cut: str | None = None, seed: int = 42) -> tuple[dict, Advice | None]:
    """The `train` options of a transfer-learning strategy, and the advisor's measurements if it ran.

    `"auto"` follows `tl_keras.advisor.advise`; `"cut"` without a `cut` block asks the advisor's probes
    for the best one; the other plans need no measurement.
    """
    if strategy == "auto" or (strategy == "cut" and cut is None):
        advice = advise(data_dir, spec.replace(cut=None), seed=seed)
        plan = advice.train_options()
        if strategy == "cut":
            depths = [d for d in advice.probes if d != "top"]
            plan = {**plan, "unfreeze_blocks": 0, "cut": max(depths, key=lambda d: advice.probes[d]),
                    "hidden_units": (), "layer_decay": None}
        return plan, advice
    plans = {
        "head-only": {"unfreeze_blocks": 0, "cut": None, "hidden_units": None, "layer_decay": None},
        "cut": {"unfreeze_blocks": 0, "cut": cut, "hidden_units": None, "layer_decay": None},
        "top-blocks": {"unfreeze_blocks": None, "cut": None, "hidden_units": None, "layer_decay": None},
        "fine-tune-all": {"unfreeze_blocks": "all", "cut": None, "hidden_units": None, "layer_decay": DEFAULT_FINE_TUNE_ALL_DECAY},
    }
    return plans[strategy], None


def _compare_scratch(spec, folder: ImageFolder, train_ds, val_ds, strategy, *, epochs: int, learning_rate: float,
                     dropout: float, l2: float, hidden_units, label_smoothing: float, class_weight, seed: int,
                     mixed_precision: bool, jit_compile, verbose) -> dict:
    """Trains the same architecture from random weights on the same splits and epochs; its report."""
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    with strategy.scope(), dtype_policy(precision_policy(mixed_precision)):
        model = build_classifier(spec, num_classes=len(folder.class_names), dropout=dropout, l2=l2,
                                 class_names=folder.class_names, hidden_units=hidden_units)
    history = train_from_scratch(
        model, train_ds, val_ds, epochs=epochs, learning_rate=learning_rate, label_smoothing=label_smoothing,
        class_weight=class_weight, seed=seed, jit_compile=jit_compile, verbose=verbose,
    )
    return {
        "val_accuracy": history["val_accuracy"][-1] if history.get("val_accuracy") else None,
        "val_loss": history["val_loss"][-1] if history.get("val_loss") else None,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "train_seconds": round(time.perf_counter() - started, 2),
        "history": history,
    }


def _require(module: str, message: str) -> None:
    """Fails before any work when an optional dependency an argument needs is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(message)


def _report(model: ImageClassifier, folder: ImageFolder, split: str, batch_size: int) -> dict:
    """The evaluation report of `model` on one split, predicted on this worker's device."""
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    batches = [predict(x).numpy() for x, _ in folder.dataset(split, batch_size=batch_size)]
    probabilities = np.concatenate(batches) if batches else np.zeros((0, len(folder.class_names)), np.float32)
    data = folder.splits[split]
    return classification_report(data.labels, probabilities, folder.class_names, paths=data.paths)


def _plots(folder: str, history: FineTuneHistory, evaluation: dict) -> None:
    from tl_keras import plots

    plots.plot_training_curves(history.history, history.head_epochs, os.path.join(folder, "curves.png"))
    for split, report in evaluation.items():
        plots.plot_report(report, folder, split)


def _checkpoint_dir(checkpoint_dir: str | None, base: str) -> str | None:
    if checkpoint_dir is None:
        return None
    return os.path.join(base, ".checkpoint") if checkpoint_dir == "auto" else checkpoint_dir


def _use_feature_cache(cache_features: bool | str, head_epochs: int, copies: int, cache_dir: str | None) -> bool:
    if cache_features not in (True, False, "auto"):
        raise ValueError(f"`cache_features` must be True, False or 'auto'. Received: cache_features={cache_features!r}")
    if head_epochs == 0 or cache_features is False:
        return False
    return cache_features is True or cache_dir is not None or head_epochs > max(1, copies)


def _export(model: ImageClassifier, class_names: list[str], base: str) -> str | None:
    """Exports on the chief. Under multi-worker training every worker must take part in saving
    (reading sync-on-read variables is a collective), so the others write to a temporary folder."""
    if is_chief():
        return export_saved_model(model, base, class_names=class_names)
    scratch = tempfile.mkdtemp(prefix="tl_keras_worker_export_")
    try:
        export_saved_model(model, scratch, class_names=class_names)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
