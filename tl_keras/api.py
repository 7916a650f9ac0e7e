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

from tl_keras.config import TrainConfig, is_search
from tl_keras.data.check import DataCheck, check_labels, checked_folder
from tl_keras.data.folder import ImageFolder
from tl_keras.data.sources import source_name
from tl_keras.distribute import (
    get_strategy,
    is_chief,
)
from tl_keras.evaluation.report import (
    best_thresholds,
    classification_report,
    multi_label_report,
)
from tl_keras.evaluation.tta import flip_averaged
from tl_keras.export.saved_model import export_saved_model
from tl_keras.models.classifier import ImageClassifier
from tl_keras.models.preamble import (
    build_model,
    data_root,
    load_folder,
    release,
    resolve_spec,
    settle,
    source_for,
)
from tl_keras.models.registry import BackboneSpec
from tl_keras.training.caches import FeatureSet, compute_features, phase_one_features
from tl_keras.training.checkpoint import RunCheckpoint
from tl_keras.training.compile import balanced_class_weights
from tl_keras.training.history import FineTuneHistory
from tl_keras.training.phases import adapt_feature_norm, fine_tune, phase_two_depth, train_from_scratch
from tl_keras.training.head_init import head_init_of
from tl_keras.tuning.advisor import Advice, resolve_plan
from tl_keras.tuning.symmetry import SymmetryCheck, choose_symmetry
from tl_keras.utils.batches import run_batches

DEFAULT_OUTPUT_ROOT = "saved_models"


@dataclasses.dataclass
class TrainResult:
    """What `train` returns: the model, its class names, the merged history, metrics, export path,
    the data, and the resolved `TrainConfig` the run used (transfer plan applied, image size filled in)."""

    model: ImageClassifier
    class_names: list[str]
    history: FineTuneHistory
    metrics: dict
    export_dir: str | None
    data: ImageFolder
    config: TrainConfig | None = None


@dataclasses.dataclass
class _Run:
    """The state one `train` call carries from stage to stage."""

    config: TrainConfig  # resolved: plan applied, image size filled in
    asked: TrainConfig  # as the caller gave it
    spec: BackboneSpec
    strategy: tf.distribute.Strategy
    folder: ImageFolder
    advice: Advice | None
    started: float
    model: ImageClassifier | None = None
    class_weight: dict[int, float] | None = None
    data_check: DataCheck | None = None
    symmetry: SymmetryCheck | None = None
    head_init: dict | None = None

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.strategy.num_replicas_in_sync

    def datasets(self) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        return (self.folder.dataset("train", batch_size=self.global_batch, training=True, augment=self.config.augmentation),
                self.folder.dataset("val", batch_size=self.global_batch))


def train(
    data_dir: str | ImageFolder | None = None,
    backbone: str | None = None,
    *,
    config: TrainConfig | None = None,
    dataset: tf.data.Dataset | None = None,
    val_dataset: tf.data.Dataset | None = None,
    class_names: Sequence[str] | None = None,
    output: str | None = None,
    export: bool = True,
    evaluate: bool = True,
    plots_dir: str | None = None,
    tensorboard_dir: str | None = None,
    report: str | None = None,
    checkpoint_dir: str | None = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    **overrides,
) -> TrainResult:
    """Trains a classifier on an image folder with two-phase transfer learning, and exports it.

    Args:
        data_dir: one subfolder per class, or `train/`, `val/` (and `test/`) of that shape; a label
            source (a `.csv` file, a pandas DataFrame or a list of rows with `path,label[,split]`, see
            `tl_keras.data.label_files`); or an `ImageFolder` already loaded at the backbone's image size
            (e.g. one of `folder.folds(k)`): it brings its size and framing (`crop_to_aspect_ratio`),
            and a `config` or keyword that says otherwise is an error.
            Or None, with `dataset`.
        backbone: registry name (`"mobilenet_v2"`, `"resnet50"`, `"keras:mobilenet_v2"`, ...), TF Hub /
            Kaggle handle, URL, or local SavedModel folder. Defaults to the config's (`"mobilenet_v2"`).
        config: the run's settings (`tl_keras.TrainConfig`: epochs, learning rates, head, transfer plan,
            distribution, ...). Defaults to `TrainConfig()`.
        dataset, val_dataset, class_names: instead of `data_dir`, `tf.data.Dataset`s of `(uint8 image
            [h, w, 3], integer label)` elements (from TFRecords or TFDS), read once into memory at the
            backbone's size, and the class names (label i -> `class_names[i]`); without `val_dataset`
            a seeded share of `dataset` validates. See `tl_keras.data.tfdata`.
        output: export folder `.../NAME` (versions go inside). Defaults to `saved_models/<data folder name>`.
        export: write the SavedModel. Defaults to True. Only the chief exports under multi-worker training.
        evaluate: report on the final model: top-1/top-k accuracy, per-class precision/recall/F1, the
            confusion matrix and the most confidently wrong images of `val` (and `test/` when the
            folder has one), in `metrics["evaluation"]`. Defaults to True.
        plots_dir: write PNGs there (needs matplotlib): `curves.png` (both phases), and per split
            `confusion_<split>.png` and `misclassified_<split>.png`. Defaults to None.
        tensorboard_dir: write TensorBoard logs of both phases there. Defaults to None.
        report: write the data check (copies side by side, likely label errors with given and
            predicted class, skipped files; `metrics["data_check"]`) to this `.html` file, with
            thumbnails (needs Pillow, the `report` extra). Defaults to None.
        checkpoint_dir: where the run saves its state at every epoch's end; running the same call
            again after a crash or kill resumes it (see `tl_keras.training.checkpoint`). `"auto"` (default):
            `.checkpoint/` inside the export folder `NAME/`; None: no checkpoints. Deleted once the
            run has finished and exported.
        callbacks: extra Keras callbacks for both phases.
        verbose: Keras progress output. Defaults to `"auto"` (progress bars).
        **overrides: `TrainConfig` fields, which win over `config`'s: `image_size=160, head_epochs=10,
            learning_rate=1e-3, transfer="auto", distribute="mirrored"`, ... `distribute` also takes a
            `tf.distribute.Strategy`; `strategy` is the older name of both `transfer` and `distribute`.

    Returns:
        A `TrainResult`; `metrics` has `head_val_accuracy`, `val_accuracy`, `class_names`,
        `export_dir`, `num_train_images`, `num_val_images`, `skipped_files`, `train_seconds`,
        `config` (the resolved settings, which rerun this run), ...
    """
    data_dir = _data_source(data_dir, dataset, val_dataset, class_names)
    config, strategy = settle(config, backbone, overrides, data_dir)
    data_dir = source_for(data_dir, config)
    _require_outputs(plots_dir=plots_dir, tensorboard_dir=tensorboard_dir, report=report)
    strategy = get_strategy(strategy)  # first, before any TensorFlow op: multi-worker collectives need it
    run = _prepare(data_dir, config, strategy)
    base = output or os.path.join(DEFAULT_OUTPUT_ROOT, source_name(data_dir))
    run.model = _build(run)
    features = phase_one_features(run.model, run.folder, run.config, run.global_batch)
    run.symmetry = choose_symmetry(run.config, run.model, run.folder, features)  # before any training pipeline is made
    head_init = dict(zip(("chosen", "reason"), head_init_of(run.config, run.model, features)))
    run.config, run.head_init = run.config.replace(symmetry=run.symmetry.chosen, head_init=head_init["chosen"]), head_init
    run.config = run.config.replace(fine_tune_schedule=run.config.phase_two_schedule)  # "auto" follows the symmetry
    train_ds, val_ds = run.datasets()
    run_dir = _checkpoint_dir(checkpoint_dir, base)
    history, resumed = _fit(run, train_ds, val_ds, features, run_dir, _callbacks(callbacks, tensorboard_dir), verbose)
    run.data_check = check_labels(run.data_check, run.folder, features, run.config.label_check)  # on phase 1's features
    if report and is_chief() and run.data_check is not None:
        from tl_keras.data.check_report import write_report

        write_report(report, run.folder, run.data_check)
    final = {"accuracy": history.final("val_accuracy"), "loss": history.final("val_loss")}  # the weights exported
    train_seconds = time.perf_counter() - run.started
    evaluation, thresholds = _evaluation(run, evaluate)
    scratch = _compare_scratch(run, train_ds, val_ds, history, verbose) if run.config.compare_scratch else None
    if plots_dir and is_chief():
        _plots(plots_dir, history, evaluation, scratch)
    source = run.folder.root if isinstance(run.folder.root, str) and os.path.exists(run.folder.root) else None
    export_dir = _export(run.model, run.folder.class_names, base, run.config, thresholds, source) if export else None
    if run_dir is not None and is_chief():  # finished and exported: nothing left to resume
        shutil.rmtree(run_dir, ignore_errors=True)
    metrics = _metrics(run, history, final, evaluation, scratch, features, resumed, export_dir, train_seconds, thresholds)
    return TrainResult(run.model, run.folder.class_names, history, metrics, export_dir, run.folder, run.config)


def _data_source(data_dir, dataset, val_dataset, class_names):
    """`data_dir`, or the tf.data datasets as a `DatasetSource`: exactly one of the two."""
    if dataset is None:
        if data_dir is None:
            raise ValueError("Give the data: a folder or label file as `data_dir`, or `dataset=` (tf.data) with `class_names=`.")
        if val_dataset is not None or class_names is not None:
            raise ValueError("`val_dataset` and `class_names` go with `dataset=`, not with `data_dir`.")
        return data_dir
    if data_dir is not None:
        raise ValueError("Give either `data_dir` or `dataset=`, not both.")
    from tl_keras.data.tfdata import DatasetSource, class_names_of

    return DatasetSource(dataset, val_dataset, class_names_of(class_names))


def _prepare(data_dir: str | ImageFolder, config: TrainConfig, strategy: tf.distribute.Strategy) -> _Run:
    """The shared preamble (`tl_keras.models.preamble`), the transfer plan applied (measured with the
    advisor when asked), the data loaded, and the class weights."""
    spec = resolve_spec(data_dir, config.replace(cut=None))
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    resolved, advice = resolve_plan(config, data_root(data_dir), spec)
    spec = spec.replace(cut=resolved.cut)
    folder = load_folder(data_dir, config, spec)
    folder, checked = checked_folder(folder, config.on_leak, config.on_conflict, config.near_duplicate_check)  # duplicates, leaks, conflicts
    run = _Run(resolved, config, spec, strategy, folder, advice, started, data_check=checked)
    if folder.multi_label and config.class_weight is not None:
        raise ValueError("`class_weight` weighs each image by its one class; this data is multi-label "
                         "(an image may have several). Leave class_weight unset.")
    if config.class_weight == "auto":
        run.class_weight = balanced_class_weights(folder.train.labels, len(folder.class_names))
    elif config.class_weight is not None:
        run.class_weight = dict(config.class_weight)
    return run


def _build(run: _Run) -> ImageClassifier:
    return build_model(run.spec, run.folder, run.config, run.strategy)


def _fit(run: _Run, train_ds, val_ds, features: FeatureSet | None, run_dir: str | None, callbacks: list,
         verbose) -> tuple[FineTuneHistory, bool]:
    """Both phases (phase 1 on `features` when given), resumable from `run_dir`."""
    config, folder = run.config, run.folder
    checkpoint, resumed = None, False
    if run_dir is not None:
        resumed = os.path.exists(os.path.join(run_dir, "run.json"))
        checkpoint = RunCheckpoint(run_dir, writer=is_chief(), settings={
            "config": config.to_dict(), "data_dir": os.path.abspath(folder.root) if os.path.exists(folder.root) else folder.root, "handle": run.spec.handle,
            "validation": folder.validation_source, "class_names": folder.class_names,
            "num_train_images": len(folder.train), "global_batch_size": run.global_batch,
            "cached_features": features is not None,
        })
    history = fine_tune(run.model, train_ds, val_ds, config.replace(class_weight=run.class_weight), features=features,
                        folder=folder, checkpoint=checkpoint, callbacks=callbacks, verbose=verbose)
    return history, resumed


def _metrics(run: _Run, history: FineTuneHistory, final: dict, evaluation: dict, scratch: dict | None, features,
             resumed: bool, export_dir: str | None, train_seconds: float, thresholds: list[float] | None = None) -> dict:
    folder, config = run.folder, run.config
    weights = {str(k): v for k, v in run.class_weight.items()} if run.class_weight else None
    multi = {"thresholds": dict(zip(folder.class_names, thresholds))} if thresholds is not None else {}
    return {
        "backbone": run.spec.name, "image_size": run.spec.image_size, "transfer_strategy": run.asked.transfer,
        "image_size_choice": {"chosen": run.spec.image_size, "reason": run.spec.image_size_reason},
        "advice": run.advice.to_dict() if run.advice is not None else None, "cut": run.spec.cut,
        "hidden_units": list(config.hidden_units or ()), "layer_decay": config.layer_decay,
        "head_val_accuracy": history.final("val_accuracy", phase=1), "val_accuracy": float(final["accuracy"]),
        "fine_tune_gain": _gain(history, final), "fine_tune_kept": history.fine_tune_kept,
        "best_epochs": history.best_epochs,
        "val_loss": float(final["loss"]), "class_names": folder.class_names, "export_dir": export_dir,
        "num_train_images": len(folder.train), "num_val_images": len(folder.val), "num_files_found": folder.num_found,
        "validation_source": folder.validation_source,
        "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped],
        "warnings": [{"path": p, "message": m} for p, m in folder.warnings],
        "head_epochs": history.head_epochs, "fine_tune_epochs": history.fine_tune_epochs,
        "unfrozen_blocks": history.unfrozen_blocks, "learning_rates": list(history.learning_rates),
        "resumed": resumed, "class_weight": weights, "evaluation": evaluation,
        "feature_cache": features.describe() if features is not None else {"used": False},
        "boundary_cache": history.boundary_cache, "depth_search": history.depth_search,
        "dtype_policy": run.model.dtype_policy.name, "num_replicas": run.strategy.num_replicas_in_sync,
        "global_batch_size": run.global_batch, "train_seconds": round(train_seconds, 2),
        "history": history.history, "scratch": scratch, "config": config.to_dict(),
        "multi_label": folder.multi_label, "data_check": run.data_check.to_dict() if run.data_check else None,
        "phase_two_depth": dict(zip(("chosen", "reason"), phase_two_depth(run.model, config))) if config.fine_tune_epochs else None,
        "symmetry": run.symmetry.to_dict() if run.symmetry else None, "head_init": {**(history.head_start or {}), **run.head_init}, **multi,
    }


def _gain(history: FineTuneHistory, final: dict) -> float | None:
    """What phase 2 added to the head's val accuracy (None without both phases and a val split)."""
    head = history.final("val_accuracy", phase=1)
    if head is None or not history.fine_tune_epochs or final["accuracy"] is None:
        return None
    return round(float(final["accuracy"]) - head, 4)


@dataclasses.dataclass
class CrossValidation:
    """What `cross_validate` returns: each fold's metrics, and the mean and spread of their accuracy."""

    folds: list[dict]
    accuracies: list[float]
    advice: dict | None = None
    config: dict | None = None

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
                "advice": self.advice, "per_fold": self.folds, "config": self.config}


def cross_validate(data_dir: str, folds: int = 5, *, config: TrainConfig | None = None, **overrides) -> CrossValidation:
    """k-fold cross-validation of `train` for small datasets: the training and validation images are
    pooled and dealt into `folds` stratified folds; each fold is the validation set of one run on
    the rest. Nothing is exported. A `transfer="auto"` plan is measured once and used in every fold.

    Args:
        data_dir: the image folder; a `test/` split is left out of the folds (and reported per fold).
        folds: k (>= 2). Defaults to 5.
        config, **overrides: the run's settings, as `train` takes them; also `train`'s `evaluate`,
            `callbacks` and `verbose`.

    Returns:
        A `CrossValidation`: per-fold metrics, `mean` and `std` of the validation accuracy.

    Examples:
        >>> cv = cross_validate("../shared/assets/datasets/hymenoptera", folds=3, image_size=96,
        ...                     backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector")  # doctest: +SKIP
        >>> f"{cv.mean:.3f} +- {cv.std:.3f}"  # doctest: +SKIP
    """
    for option in ("export", "checkpoint_dir", "output"):
        if option in overrides:
            raise ValueError(f"`{option}` does not apply to cross-validation: fold models are not exported or resumed.")
    run_options = {k: overrides.pop(k) for k in ("evaluate", "callbacks", "verbose") if k in overrides}
    config, strategy = settle(config, None, overrides)
    data_dir = source_for(data_dir, config)
    spec = resolve_spec(data_dir, config.replace(cut=None))
    folder = load_folder(data_dir, config, spec)
    # Measured once, on the whole folder; every fold then runs the fixed plan it chose.
    config, advice = resolve_plan(config, data_dir, spec)
    results, accuracies = [], []
    for k, fold in enumerate(folder.folds(folds), start=1):
        result = train(fold, config=config, distribute=strategy, export=False, checkpoint_dir=None, **run_options)
        metrics = {key: result.metrics[key] for key in ("val_accuracy", "val_loss", "head_val_accuracy",
                                                        "num_train_images", "num_val_images", "train_seconds")}
        if "test" in result.metrics.get("evaluation", {}):
            metrics["test_accuracy"] = result.metrics["evaluation"]["test"]["accuracy"]
        results.append({"fold": k, **metrics})
        release(result.model)
        accuracies.append(float(result.metrics["val_accuracy"]))
    return CrossValidation(results, accuracies, advice.to_dict() if advice is not None else None, config.to_dict())


def lr_find(data_dir: str, backbone: str | None = None, *, config: TrainConfig | None = None, min_lr: float = 1e-7,
            max_lr: float = 1.0, steps: int = 100, plot: str | None = None, **overrides):
    """Runs the learning-rate range test for both phases on an image folder (see `tl_keras.tuning.lr_finder`).

    The model is built as `train` would build it from `config` (backbone, image size, cut, head,
    `unfreeze_blocks`, `layer_decay`, batch size, seed); phase 1 runs on cached features unless
    `cache_features=False`. With `plot`, writes a PNG of loss against learning rate (needs matplotlib).

    Returns:
        An `LRFindResult`: `suggestions` maps `"phase 1"` / `"phase 2"` to a learning rate, for
        `train(learning_rate=..., fine_tune_learning_rate=...)`.

    Examples:
        >>> found = lr_find("../shared/assets/datasets/hymenoptera", image_size=96,
        ...                 backbone="../shared/assets/hub/mobilenet_v2_035_224_feature_vector", plot="lr.png")  # doctest: +SKIP
        >>> found.suggestions  # doctest: +SKIP
    """
    from tl_keras.tuning.lr_finder import find_learning_rates

    config, strategy = settle(config, backbone, overrides)
    data_dir = source_for(data_dir, config)
    _require_outputs(plot=plot)
    strategy = get_strategy(strategy)
    spec = resolve_spec(data_dir, config)
    folder = load_folder(data_dir, config, spec)
    model = build_model(spec, folder, config, strategy)
    batch = config.batch_size * strategy.num_replicas_in_sync
    train_ds = folder.dataset("train", batch_size=batch, training=True, augment=config.augmentation)
    features = compute_features(model, folder, batch_size=batch) if config.cache_features is not False else None
    adapt_feature_norm(model, train_ds, features)
    depth = None if is_search(config.unfreeze_blocks) else config.unfreeze_blocks  # a search: test the default depth
    found = find_learning_rates(model, train_ds, features=features, unfreeze_blocks=depth,
                                layer_decay=config.layer_decay, min_lr=min_lr, max_lr=max_lr, steps=steps)
    if plot:
        from tl_keras.evaluation.plots import plot_lr_find

        plot_lr_find(found.tests, plot)
    release(model)
    return found


def _compare_scratch(run: _Run, train_ds, val_ds, history: FineTuneHistory, verbose) -> dict:
    """Trains the same architecture from random weights on the same splits and epochs; its report."""
    config = run.config
    started = time.perf_counter()
    epochs = history.head_epochs + history.fine_tune_epochs
    keras.utils.set_random_seed(config.seed)
    model = _build(run)
    scratch = train_from_scratch(
        model, train_ds, val_ds, epochs=epochs, learning_rate=config.learning_rate,
        label_smoothing=config.label_smoothing, class_weight=run.class_weight, seed=config.seed,
        jit_compile=config.jit_compile, verbose=verbose, mix=config.augment == "strong",
    )
    release(model)
    return {
        "val_accuracy": scratch["val_accuracy"][-1] if scratch.get("val_accuracy") else None,
        "val_loss": scratch["val_loss"][-1] if scratch.get("val_loss") else None,
        "epochs": epochs,
        "learning_rate": config.learning_rate,
        "train_seconds": round(time.perf_counter() - started, 2),
        "history": scratch,
    }


def _require_outputs(**paths: str | None) -> None:
    """Fails before any work when an optional package an output needs is missing."""
    import importlib.util

    needs = {"plots_dir": ("matplotlib", "plots"), "plot": ("matplotlib", "plots"),
             "tensorboard_dir": ("tensorboard", "tensorboard"), "report": ("PIL", "report")}
    for name, path in paths.items():
        module, extra = needs[name]
        if path and importlib.util.find_spec(module) is None:
            raise ImportError(f"`{name}` needs {module}: pip install {module} (or \"tl_keras[{extra}]\").")


def _callbacks(callbacks: Sequence[keras.callbacks.Callback], tensorboard_dir: str | None) -> list:
    callbacks = list(callbacks)
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(
            tensorboard_dir if is_chief() else tempfile.mkdtemp(prefix="tl_keras_worker_tb_")))
    return callbacks


def _evaluation(run: _Run, evaluate: bool) -> tuple[dict, list[float] | None]:
    """The final report on each split but train (when `evaluate`), and for multi-label data the
    per-class thresholds with the best F1 on val (chosen whether or not it reports: the export needs
    them)."""
    model, folder = run.model, run.folder
    splits = [split for split in folder.splits if split != "train"] if evaluate else []
    if folder.multi_label and "val" not in splits:
        splits.insert(0, "val")
    probabilities = {split: _probabilities(model, folder, split, run.global_batch, run.config.tta) for split in splits}
    thresholds = None
    if folder.multi_label:
        thresholds = best_thresholds(folder.val.labels, probabilities["val"])
    reports = {}
    for split in (splits if evaluate else []):
        data = folder.splits[split]
        reports[split] = (multi_label_report(data.labels, probabilities[split], folder.class_names, thresholds, paths=data.paths)
                          if folder.multi_label else classification_report(data.labels, probabilities[split], folder.class_names, paths=data.paths))
    return reports, thresholds


def _probabilities(model: ImageClassifier, folder: ImageFolder, split: str, batch_size: int, tta: bool = False):
    """`model`'s class probabilities on one split, predicted on this worker's device (with `tta`,
    averaged over each image and its mirror image)."""
    def probabilities(x):
        return model(x, training=False)

    predict = tf.function(flip_averaged(probabilities) if tta else probabilities, reduce_retracing=True)
    return run_batches(predict, folder.dataset(split, batch_size=batch_size), len(folder.class_names), inputs_only=True)


def _plots(folder: str, history: FineTuneHistory, evaluation: dict, scratch: dict | None) -> None:
    from tl_keras.evaluation import plots

    plots.plot_training_curves(history.history, history.head_epochs, os.path.join(folder, "curves.png"))
    for split, report in evaluation.items():
        plots.plot_report(report, folder, split)
    if scratch is not None:
        plots.plot_scratch_comparison(history.history, scratch["history"], os.path.join(folder, "scratch_vs_pretrained.png"),
                                      head_epochs=history.head_epochs if history.fine_tune_epochs else 0)


def _checkpoint_dir(checkpoint_dir: str | None, base: str) -> str | None:
    if checkpoint_dir is None:
        return None
    return os.path.join(base, ".checkpoint") if checkpoint_dir == "auto" else checkpoint_dir


def _export(model: ImageClassifier, class_names: list[str], base: str, config: TrainConfig,
            thresholds: list[float] | None = None, training_data: str | None = None) -> str | None:
    """Exports on the chief. Under multi-worker training every worker must take part in saving
    (reading sync-on-read variables is a collective), so the others write to a temporary folder."""
    options = dict(class_names=class_names, config=config, tta=config.tta, thresholds=thresholds, training_data=training_data)
    if is_chief():
        return export_saved_model(model, base, **options)
    scratch = tempfile.mkdtemp(prefix="tl_keras_worker_export_")
    try:
        export_saved_model(model, scratch, **options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None
