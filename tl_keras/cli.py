"""The `tl-keras` command line: train, predict, evaluate, demo. The only module that parses or prints."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _blocks(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return _non_negative_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer or 'all', got {text!r}") from None


def _units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 512 or 512,256, got {text!r}") from None
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 512 or 512,256, got {text!r}")
    return units


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


STRATEGY_CHOICES = ["auto", "head-only", "cut", "top-blocks", "fine-tune-all", "default", "mirrored", "multi-worker"]


def _backbone_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="mobilenet_v2", help="registry name (mobilenet_v2, resnet50, keras:mobilenet_v2, keras:resnet50, hub:mobilenet_v2_035), TF Hub/Kaggle handle or URL, or local SavedModel folder (default: mobilenet_v2)")
    parser.add_argument("--weights", metavar="H5", help="weights for keras: backbones: imagenet, none, or a .h5 file")
    parser.add_argument("--image-size", type=_positive_int, help="input size (default: the backbone's, 224)")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-keras",
        description="Transfer learning with Keras 3 / TensorFlow: pretrained backbone + new head, two-phase fit, SavedModel export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on an image folder, export a SavedModel",
                       description="Train both phases on DATA_DIR (one subfolder per class, or train/ val/ [test/]) and export for serving.")
    t.add_argument("data_dir", metavar="DATA_DIR")
    _backbone_arguments(t)
    t.add_argument("--batch-size", type=_positive_int, default=32, help="per-replica batch size (default: 32)")
    t.add_argument("--head-epochs", type=_non_negative_int, default=5, help="phase 1 epochs, backbone frozen (default: 5)")
    t.add_argument("--fine-tune-epochs", type=_non_negative_int, default=5, help="phase 2 epochs, top blocks unfrozen (default: 5)")
    t.add_argument("--unfreeze-blocks", type=_blocks, help="top blocks trained in phase 2: N or 'all' (default: the backbone's)")
    t.add_argument("--cut", metavar="BLOCK", help="cut the backbone at this block (block_12) or layer; its pooled output is the features")
    t.add_argument("--hidden-units", type=_units, metavar="N[,N]", help="hidden ReLU layers in the head, e.g. 512 or 512,256 (default: none)")
    t.add_argument("--layer-decay", type=_unit_interval, metavar="D", help="phase 2 discriminative learning rates: each block below the top at D times the rate of the one above; 0 trains the top block only")
    t.add_argument("--learning-rate", type=float, default=1e-3, help="phase 1 learning rate; phase 2 uses a tenth (default: 0.001)")
    t.add_argument("--fine-tune-learning-rate", type=float, help="phase 2 learning rate (default: learning rate / 10)")
    t.add_argument("--dropout", type=_probability, default=0.2, help="dropout before the output layer (default: 0.2)")
    t.add_argument("--label-smoothing", type=_probability, default=0.0, help="label smoothing (default: 0)")
    t.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the output layer (default: 0)")
    t.add_argument("--validation-split", type=float, default=0.2, help="held-out fraction when there is no val/ folder (default: 0.2)")
    t.add_argument("--no-augment", action="store_true", help="turn off training augmentation")
    t.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE", help="stop a phase after PATIENCE epochs without better val_loss")
    t.add_argument("--class-weight", choices=["auto"], help="auto: weigh classes by n / (classes * count) for imbalanced folders")
    t.add_argument("--fine-tune-schedule", choices=["constant", "cosine", "warmup-cosine"], default="constant", help="phase 2 learning rate schedule (default: constant)")
    t.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs of both phases to DIR")
    t.add_argument("--plots", metavar="DIR", help="write PNGs (needs matplotlib): training curves, confusion matrices, misclassified images")
    t.add_argument("--no-evaluate", action="store_true", help="skip the final report (per-class metrics, confusion matrix, confident errors)")
    t.add_argument("--no-feature-cache", action="store_true", help="run the frozen backbone every phase 1 epoch instead of training the head on features computed once")
    t.add_argument("--feature-cache-dir", metavar="DIR", help="keep phase 1 features on disk across runs (keyed by backbone weights, image size, file content)")
    t.add_argument("--feature-copies", type=_non_negative_int, default=0, metavar="K", help="cache K augmented variants per training image; 0 caches un-augmented images and augments in phase 2 only (default: 0)")
    t.add_argument("--mixed-precision", action="store_true", help="mixed_float16 on GPU (mixed_bfloat16 on TPU); a no-op with a warning on CPU")
    t.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto", help="XLA: auto is on for GPU/TPU without tf.distribute, off on CPU (default: auto)")
    t.add_argument("--strategy", choices=STRATEGY_CHOICES, help="transfer-learning strategy: auto (measure size x similarity and choose, see `tl-keras advise`), head-only, cut, top-blocks, fine-tune-all; or the tf.distribute strategy: default, mirrored, multi-worker (default: the two-phase fit as configured, distribution chosen automatically)")
    t.add_argument("--distribute", choices=["auto", "default", "mirrored", "multi-worker"], help="tf.distribute strategy, to combine with a transfer-learning --strategy (default: auto: several GPUs -> mirrored, TF_CONFIG -> multi-worker)")
    t.add_argument("--compare-scratch", action="store_true", help="also train the same architecture from random weights on the same splits and epochs; report both (learning curves in --plots)")
    t.add_argument("--folds", type=_positive_int, metavar="K", help="k-fold cross-validation instead of one run: mean and spread of val accuracy over K folds; exports nothing")
    t.add_argument("--seed", type=int, default=42, help="random seed; with op determinism (on unless --no-deterministic) two runs give identical weights on CPU (default: 42)")
    t.add_argument("--no-deterministic", action="store_true", help="turn off TensorFlow op determinism (some GPU ops have no deterministic kernel)")
    t.add_argument("--checkpoint-dir", metavar="DIR", help="per-epoch state for resuming a killed run by running the same command again (default: OUTPUT/.checkpoint, deleted after export)")
    t.add_argument("--no-checkpoint", action="store_true", help="do not save per-epoch state")
    t.add_argument("--output", metavar="DIR", help="export folder NAME; versions go inside (default: saved_models/<data folder name>)")
    t.add_argument("--metrics-json", metavar="PATH", help="write the run's metrics as JSON")

    a = sub.add_parser("advise", help="measure an image folder's size and similarity to the backbone's pretraining; recommend a strategy",
                       description="Counts training images per class, probes the frozen backbone's features at three depths with a linear classifier, and maps size x similarity to head-only, cut, top-blocks or fine-tune-all, with the reason.")
    a.add_argument("data_dir", metavar="DATA_DIR")
    _backbone_arguments(a)
    a.add_argument("--per-class", type=_positive_int, default=100, help="images per class and split decoded for the probes (default: 100)")
    a.add_argument("--seed", type=int, default=42)
    a.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("lr-find", help="learning-rate range test for both phases; suggests learning rates and plots loss vs rate",
                       description="Ramps the learning rate exponentially over a few batches for phase 1 (head) and phase 2 (top blocks unfrozen, after a short head training) and suggests a tenth of the largest rate at which the smoothed loss is within 20% of its minimum.")
    r.add_argument("data_dir", metavar="DATA_DIR")
    _backbone_arguments(r)
    r.add_argument("--batch-size", type=_positive_int, default=32)
    r.add_argument("--unfreeze-blocks", type=_blocks, help="blocks unfrozen for the phase 2 test (default: the backbone's)")
    r.add_argument("--layer-decay", type=_unit_interval, metavar="D")
    r.add_argument("--cut", metavar="BLOCK")
    r.add_argument("--hidden-units", type=_units, metavar="N[,N]")
    r.add_argument("--steps", type=_positive_int, default=100, help="batches per ramp (default: 100)")
    r.add_argument("--min-lr", type=float, default=1e-7)
    r.add_argument("--max-lr", type=float, default=1.0)
    r.add_argument("--plot", metavar="PNG", help="write the loss-vs-rate picture (needs matplotlib)")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("predict", help="classify image files, folders or globs with an exported model")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="export folder NAME/ (latest version) or NAME/VERSION/")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders (searched recursively) or glob patterns ('photos/**/*.jpg')")
    p.add_argument("--top-k", type=_positive_int, default=1, help="classes to show per image (default: 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE: .csv or .json")

    e = sub.add_parser("evaluate", help="report on an exported model over an image folder")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("data_dir", metavar="DATA_DIR", help="uses its test/ split, else val/, else every image")
    e.add_argument("--split", help="evaluate this split (train, val or test) instead")
    e.add_argument("--top-k", type=_positive_int, help="k of top-k accuracy (default: 5 with more than 5 classes, else 2)")
    e.add_argument("--plots", metavar="DIR", help="write confusion_<split>.png and misclassified_<split>.png (needs matplotlib)")
    e.add_argument("--json", action="store_true", help="print JSON")

    x = sub.add_parser("export-tflite", help="convert an export to TFLite (float32 and dynamic-range int8) with labels",
                       description="Writes model_float32.tflite and model_dynamic_int8.tflite, labels.txt and tl_keras.json to OUTPUT_DIR; with --check-data, reports how often TFLite and the SavedModel agree on the top-1 class.")
    x.add_argument("model_dir", metavar="MODEL_DIR")
    x.add_argument("--output", metavar="OUTPUT_DIR", help="default: MODEL_DIR's NAME folder + _tflite/VERSION")
    x.add_argument("--variants", nargs="+", choices=["float32", "dynamic_int8"], default=["float32", "dynamic_int8"])
    x.add_argument("--check-data", metavar="DATA_DIR", help="image folder to compare TFLite with the SavedModel on (its test/ or val/ split)")
    x.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("embed", help="write one feature vector per image (with path and label) to a .npz",
                       description="Feature extraction: runs the backbone of an export (fine-tuned) or any backbone over DATA_DIR.")
    m.add_argument("source", metavar="MODEL_OR_BACKBONE", help="a tl_keras export, or a backbone as train --backbone takes it")
    m.add_argument("data_dir", metavar="DATA_DIR")
    m.add_argument("--output", required=True, metavar="FEATURES_NPZ")
    m.add_argument("--image-size", type=_positive_int, help="default: the export's or the backbone's")
    m.add_argument("--weights", metavar="H5", help="weights for keras: backbones")

    d = sub.add_parser("demo", help="offline end-to-end demo on scikit-learn's bundled digits",
                       description="Pretrain a small backbone on digits 0-4, export it in TF Hub format, transfer it to digits 5-9 with few labels through the public path, and compare with training from scratch.")
    d.add_argument("--output", default=os.path.join("saved_models", "demo"), metavar="DIR", help="where the demo writes (default: saved_models/demo)")
    d.add_argument("--labels-per-class", type=_positive_int, default=10, help="target-task training images per class (default: 10)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--metrics-json", metavar="PATH")
    return parser


def _print_train_summary(metrics: dict) -> None:
    print("\n== tl-keras train summary ==")
    print(f"backbone          {metrics['backbone']} at {metrics['image_size']} px"
          + (f", cut at {metrics['cut']}" if metrics.get("cut") else "")
          + (f", hidden layers {metrics['hidden_units']}" if metrics.get("hidden_units") else ""))
    if metrics.get("advice"):
        advice = metrics["advice"]
        probes = ", ".join(f"{name} {acc:.3f}" for name, acc in advice["probes"].items())
        print(f"strategy          {advice['strategy']} (advisor: {advice['size']} data, "
              f"{'similar' if advice['similar'] else 'dissimilar'}; linear probes {probes})")
        print(f"  why: {advice['reason']}")
    elif metrics.get("transfer_strategy"):
        print(f"strategy          {metrics['transfer_strategy']}")
    print(f"images            train {metrics['num_train_images']}, val {metrics['num_val_images']} (found {metrics['num_files_found']}, skipped {len(metrics['skipped_files'])})")
    for item in metrics["skipped_files"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    for item in metrics["warnings"]:
        print(f"  warning {item['path']}: {item['message']}")
    print(f"phase 1 (head)    {metrics['head_epochs']} epochs at lr {metrics['learning_rates'][0]:g}: val accuracy {_fmt(metrics['head_val_accuracy'])}")
    cache = metrics["feature_cache"]
    if cache["used"]:
        variants = f"{cache['copies']} augmented variants per image" if cache["augmented"] else "un-augmented images (augmentation applies in phase 2)"
        print(f"  on cached features of {variants}: {cache['computed']} computed, {cache['loaded']} loaded from disk, {cache['seconds']:.1f} s")
    print(f"phase 2 (top {len(metrics['unfrozen_blocks'])} blocks: {', '.join(metrics['unfrozen_blocks']) or '-'}) {metrics['fine_tune_epochs']} epochs at lr {metrics['learning_rates'][1]:g}")
    if metrics.get("layer_decay") is not None:
        print(f"  discriminative learning rates: layer decay {metrics['layer_decay']}")
    print(f"val accuracy      {_fmt(metrics['val_accuracy'])}")
    if metrics.get("scratch"):
        scratch = metrics["scratch"]
        print(f"from scratch      val accuracy {_fmt(scratch['val_accuracy'])} (same architecture, splits and "
              f"{scratch['epochs']} epochs, {scratch['train_seconds']:.1f} s)")
    print(f"train time        {metrics['train_seconds']:.1f} s on {metrics['num_replicas']} replica(s)"
          + (" (resumed from a checkpoint)" if metrics["resumed"] else ""))
    print(f"exported to       {metrics['export_dir']}")
    from tl_keras.evaluation import format_report

    for split, report in metrics["evaluation"].items():
        print(f"\n== {split} ==")
        print(format_report({**report, "most_confident_errors": report["most_confident_errors"][:5]}))


def _predict(args) -> int:
    from tl_keras.data import expand_image_paths
    from tl_keras.serving import ExportedModel

    paths, skipped = expand_image_paths(args.images)
    explicit = set(args.images)
    model = ExportedModel(args.model_dir)

    def progress(done: int, total: int) -> None:
        if total > 256:
            print(f"predicted {done}/{total} images", file=sys.stderr, flush=True)

    # A file named on the command line must be an image (else exit 2); files found in folders or by
    # globs that are not are reported and skipped, never dropped silently.
    results = model.predict_files(paths, top_k=args.top_k, skip_errors=True, progress=progress)
    failed_explicit = [r for r in results if "error" in r and r["path"] in explicit]
    if failed_explicit:
        raise ValueError(failed_explicit[0]["error"])
    results += [{"path": p, "error": reason} for p, reason in skipped]
    if args.output:
        _write_predictions(args.output, results, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['path']}: skipped: {r['error']}")
            else:
                print(f"{r['path']}: " + ", ".join(f"{name} {p:.4f}" for name, p in r["top_k"]))
    errors = sum("error" in r for r in results)
    if errors:
        print(f"{len(results) - errors} images predicted, {errors} files skipped (listed above)", file=sys.stderr)
    return 0


def _write_predictions(path: str, results: list[dict], top_k: int) -> None:
    if not path.lower().endswith((".csv", ".json")):
        raise ValueError(f"`--output` must end in .csv or .json. Received: {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".json"):
        _write_json(path, results)
        return
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "probability", "top_k", "error"])
        for r in results:
            writer.writerow([r["path"], r.get("label", ""), f"{r['probability']:.6f}" if "probability" in r else "",
                             ";".join(f"{n}:{p:.6f}" for n, p in r.get("top_k", [])), r.get("error", "")])


def _cli_options(options: dict) -> list[str]:
    """`train` flags for the options of an advisor plan (those that differ from the defaults)."""
    flags = []
    if options.get("cut"):
        flags.append(f"--cut {options['cut']}")
    if options.get("unfreeze_blocks") not in (None, 0):
        flags.append(f"--unfreeze-blocks {options['unfreeze_blocks']}")
    if options.get("hidden_units"):
        flags.append("--hidden-units " + ",".join(str(u) for u in options["hidden_units"]))
    if options.get("layer_decay") is not None:
        flags.append(f"--layer-decay {options['layer_decay']}")
    return flags


def _fit_options(args) -> dict:
    """The `train` / `cross_validate` arguments that `train`'s flags set, for one run or every fold."""
    return dict(
        backbone=args.backbone, weights=args.weights, image_size=args.image_size, batch_size=args.batch_size,
        head_epochs=args.head_epochs, fine_tune_epochs=args.fine_tune_epochs, unfreeze_blocks=args.unfreeze_blocks,
        cut=args.cut, hidden_units=args.hidden_units, layer_decay=args.layer_decay, learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate, dropout=args.dropout, label_smoothing=args.label_smoothing,
        l2=args.l2, validation_split=args.validation_split, augment=not args.no_augment,
        early_stopping_patience=args.early_stopping, class_weight=args.class_weight,
        fine_tune_schedule=args.fine_tune_schedule, evaluate=not args.no_evaluate,
        cache_features=False if args.no_feature_cache else "auto", feature_cache_dir=args.feature_cache_dir,
        feature_copies=args.feature_copies, mixed_precision=args.mixed_precision,
        jit_compile={"auto": "auto", "on": True, "off": False}[args.jit_compile],
        strategy=args.strategy, distribute=args.distribute, seed=args.seed, deterministic=not args.no_deterministic,
    )


def _cross_validate(args) -> int:
    from tl_keras.api import cross_validate

    if args.compare_scratch or args.plots or args.tensorboard or args.output or args.checkpoint_dir:
        raise ValueError("--folds evaluates only: it does not combine with --compare-scratch, --plots, --tensorboard, --output or --checkpoint-dir.")
    cv = cross_validate(args.data_dir, args.folds, **_fit_options(args), verbose=0)
    print(f"\n== tl-keras train --folds {args.folds}: cross-validation ==")
    if cv.advice:
        print(f"strategy          {cv.advice['strategy']} (advisor: {cv.advice['reason']})")
    for fold in cv.folds:
        print(f"fold {fold['fold']}            val accuracy {fold['val_accuracy']:.4f} "
              f"(train {fold['num_train_images']}, val {fold['num_val_images']}, {fold['train_seconds']:.1f} s)")
    print(f"val accuracy      mean {cv.mean:.4f}, std {cv.std:.4f} (min {min(cv.accuracies):.4f}, max {max(cv.accuracies):.4f})")
    print("nothing exported: run without --folds to train the model to serve")
    if args.metrics_json:
        _write_json(args.metrics_json, cv.to_dict())
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"tl-keras {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "train" and args.folds:
        return _cross_validate(args)
    if args.command == "train":
        from tl_keras.api import train

        result = train(
            args.data_dir, **_fit_options(args), compare_scratch=args.compare_scratch, tensorboard_dir=args.tensorboard,
            plots_dir=args.plots, checkpoint_dir=None if args.no_checkpoint else (args.checkpoint_dir or "auto"),
            output=args.output,
        )
        _print_train_summary(result.metrics)
        if args.plots:
            print(f"pictures          {args.plots}")
        if args.metrics_json:
            from tl_keras.distribute import is_chief

            path = args.metrics_json
            if not is_chief():  # one writer per cluster: the other workers' metrics go to a temporary file
                import tempfile

                path = os.path.join(tempfile.mkdtemp(prefix="tl_keras_worker_"), os.path.basename(path))
                print(f"metrics (non-chief worker) {path}")
            _write_json(path, result.metrics)
        return 0
    if args.command == "advise":
        from tl_keras.advisor import advise

        advice = advise(args.data_dir, args.backbone, weights=args.weights, image_size=args.image_size,
                        per_class=args.per_class, seed=args.seed)
        if args.json:
            print(json.dumps(advice.to_dict(), indent=2, ensure_ascii=False))
        else:
            print(advice.describe())
            flags = [f"--backbone {args.backbone}"] if args.backbone != "mobilenet_v2" else []
            flags += [f"--weights {args.weights}"] if args.weights else []
            flags += [f"--image-size {args.image_size}"] if args.image_size else []
            flags += [f"--strategy {advice.strategy}"] + _cli_options(advice.train_options())
            print(f"train with:  tl-keras train {args.data_dir} " + " ".join(flags))
            print(f"measured in {advice.seconds:.1f} s")
        return 0
    if args.command == "lr-find":
        from tl_keras.api import lr_find

        found = lr_find(args.data_dir, args.backbone, weights=args.weights, image_size=args.image_size,
                        batch_size=args.batch_size, unfreeze_blocks=args.unfreeze_blocks, layer_decay=args.layer_decay,
                        cut=args.cut, hidden_units=args.hidden_units or (), min_lr=args.min_lr, max_lr=args.max_lr,
                        steps=args.steps, plot=args.plot, seed=args.seed)
        if args.json:
            print(json.dumps(found.to_dict(), indent=2))
        else:
            for phase, test in found.tests.items():
                print(f"{phase}: suggested learning rate {test.suggestion:.2e} (loss within 20% of its minimum up to {test.suggestion * 10:.2e}, "
                      f"steepest descent at {test.steepest:.2e}; {len(test.losses)} steps"
                      + (", stopped when the loss diverged)" if test.stopped_early else ")"))
            rates = found.suggestions
            if len(rates) == 2:
                print(f"train with:  --learning-rate {rates['phase 1']:.2g} --fine-tune-learning-rate {rates['phase 2']:.2g}")
            if args.plot:
                print(f"plot         {args.plot}")
        return 0
    if args.command == "predict":
        return _predict(args)
    if args.command == "evaluate":
        from tl_keras.evaluation import format_report
        from tl_keras.serving import ExportedModel

        report = ExportedModel(args.model_dir).evaluate(args.data_dir, split=args.split, top_k=args.top_k)
        if args.plots:
            from tl_keras.plots import plot_report

            plot_report(report, args.plots, report["split"])
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            print(format_report(report, f"{report['model_dir']} on {report['data_dir']} ({report['split']})"))
            for item in report["skipped_files"]:
                print(f"  skipped {item['path']}: {item['reason']}")
        return 0
    if args.command == "export-tflite":
        from tl_keras.export import latest_version_dir
        from tl_keras.tflite import export_tflite

        source = latest_version_dir(args.model_dir)
        version = os.path.basename(os.path.normpath(source))
        output = args.output or os.path.join(os.path.dirname(os.path.normpath(source)) + "_tflite", version)
        report = export_tflite(source, output, variants=args.variants, check_data=args.check_data)
        if args.json:
            print(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            for name, v in report["variants"].items():
                agreement = "" if v["top1_agreement"] is None else (
                    f", top-1 agreement with the SavedModel {v['top1_agreement']:.4f} on {v['num_check_images']} images"
                    f" (max |p diff| {v['max_abs_diff']:.4f})")
                print(f"{name:13} {v['path']} ({v['bytes'] / 1e6:.2f} MB){agreement}")
            print(f"labels        {os.path.join(output, 'labels.txt')}; input float32 [1, {report['image_size']}, {report['image_size']}, 3], RGB 0-255")
        return 0
    if args.command == "embed":
        from tl_keras.embed import embed

        result = embed(args.source, args.data_dir, output=args.output, image_size=args.image_size, weights=args.weights)
        print(f"{len(result['paths'])} feature vectors of size {result['features'].shape[1]} written to {args.output} "
              f"(arrays: features, paths, labels, class_names, splits)")
        for item in result["skipped_files"]:
            print(f"  skipped {item['path']}: {item['reason']}")
        return 0
    if args.command == "demo":
        from tl_keras.demo import run_demo

        metrics = run_demo(args.output, labels_per_class=args.labels_per_class, seed=args.seed)
        print("\n== tl-keras demo: transfer learning on scikit-learn's handwritten digits ==")
        print(f"source task       {metrics['source_task']}: {metrics['source_train_images']} images, backbone saved in TF Hub format to {metrics['hub_backbone_dir']}")
        print(f"target task       {metrics['target_task']}: {metrics['target_train_images']} training images, {metrics['target_val_images']} validation images")
        print(f"transfer          val accuracy {metrics['head_val_accuracy']:.4f} after the head phase, {metrics['transfer_val_accuracy']:.4f} after fine-tuning")
        print(f"from scratch      val accuracy {metrics['scratch_val_accuracy']:.4f} (same architecture, images and epochs)")
        print(f"exported to       {metrics['export_dir']}")
        print(f"total time        {metrics['seconds']:.1f} s")
        if args.metrics_json:
            _write_json(args.metrics_json, metrics)
        return 0
    raise AssertionError(args.command)  # argparse restricts the commands


if __name__ == "__main__":
    sys.exit(main())
