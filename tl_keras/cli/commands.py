"""What each `tl-keras` command does: train, advise, lr-find, predict, evaluate, export-tflite,
export-onnx, embed, serve and demo (`COMMANDS`). With `tl_keras.cli.parser` (the arguments) and
`tl_keras.cli.summary` (what a run prints), the only part of tl_keras that parses arguments or prints."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from tl_keras.cli.flags import config_flags
from tl_keras.cli.parser import build_parser
from tl_keras.cli.summary import (
    _NOT_INPUTS,
    _print_train_summary,
    _write_json,
    _write_predictions,
)
from tl_keras.config import TrainConfig
from tl_keras.data.folder import skip_lines
from tl_keras.utils.progress import quiet


def _predict(args) -> int:
    from tl_keras.images.read import expand_image_paths
    from tl_keras.serving.client import ExportedModel

    paths, skipped = expand_image_paths(args.images, report_missing=True)
    model = ExportedModel(args.model_dir, tta=args.tta)

    def progress(done: int, total: int) -> None:
        if total > 256:
            print(f"predicted {done}/{total} images", file=sys.stderr, flush=True)

    # Every readable image is predicted. Each input that fails (missing, unreadable, not decodable)
    # is reported on stderr and in the output, and makes the exit code 1; files met in folders and
    # globs that are no images are listed as skipped.
    results = model.predict_files(paths, top_k=args.top_k, skip_errors=True, progress=progress)
    results += [{"path": p, "error": reason} for p, reason in skipped]
    if args.output:
        _write_predictions(args.output, results, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            if "error" not in r:
                labels = f"[{';'.join(r['labels']) or '-'}] " if "labels" in r else ""
                print(f"{r['path']}: {labels}" + ", ".join(f"{name} {p:.4f}" for name, p in r["top_k"]))
    failed = [r for r in results if "error" in r and not r["error"].startswith(_NOT_INPUTS)]
    for r in results:
        if "error" in r:
            print(f"{r['path']}: {'failed' if r in failed else 'skipped'}: {r['error']}", file=sys.stderr)
    if any("error" in r for r in results):
        print(f"{sum('error' not in r for r in results)} images predicted, {len(failed)} failed, "
              f"{sum('error' in r for r in results) - len(failed)} files skipped (not images)", file=sys.stderr)
    return 1 if failed else 0


def _settings(args) -> TrainConfig:
    """The run's TrainConfig: `--config FILE` (or the defaults), then the flags given on the command line."""
    config = TrainConfig.load(args.config) if getattr(args, "config", None) else TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: value for name, value in vars(args).items() if name in fields}
    if getattr(args, "strategy", None):
        given["strategy"] = args.strategy
    return config.replace(**given)


def _checked_source(args, config: TrainConfig):
    """DATA_DIR read through the label-file column flags, its layout or label rows checked by listing:
    a wrong path or column fails here, before TensorFlow is imported or any image is read."""
    from tl_keras.data.sources import check_source, with_columns

    source = with_columns(args.data_dir, config.path_column, config.label_column, config.path_format)
    check_source(source)
    return source


def _cross_validate(args, config: TrainConfig) -> int:
    from tl_keras.api import cross_validate

    if config.compare_scratch or args.plots or args.tensorboard or args.output or args.checkpoint_dir:
        raise ValueError("--folds evaluates only: it does not combine with --compare-scratch, --plots, --tensorboard, --output or --checkpoint-dir.")
    cv = cross_validate(args.data_dir, args.folds, config=config, evaluate=not args.no_evaluate, verbose=0)
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


def _train(args) -> int:
    config = _settings(args)
    if args.save_config:
        config.save(args.save_config)
        print(f"config written to {args.save_config} (run it: tl-keras train {args.data_dir} --config {args.save_config})")
        return 0
    _checked_source(args, config)
    if args.folds:
        return _cross_validate(args, config)
    from tl_keras.api import train

    result = train(
        args.data_dir, config=config, tensorboard_dir=args.tensorboard, plots_dir=args.plots, report=args.report, output=args.output,
        checkpoint_dir=None if args.no_checkpoint else (args.checkpoint_dir or "auto"), evaluate=not args.no_evaluate,
    )
    _print_train_summary(result.metrics)
    if args.plots:
        print(f"pictures          {args.plots}")
    if args.report:
        print(f"data report       {args.report}")
    if args.metrics_json:
        from tl_keras.distribute import is_chief

        path = args.metrics_json
        if not is_chief():  # one writer per cluster: the other workers' metrics go to a temporary file
            import tempfile

            path = os.path.join(tempfile.mkdtemp(prefix="tl_keras_worker_"), os.path.basename(path))
            print(f"metrics (non-chief worker) {path}")
        _write_json(path, result.metrics)
    return 0


def _check(args) -> int:
    config = _settings(args)
    source = _checked_source(args, config)
    if args.report:
        from tl_keras.data.check_report import require_pillow, write_report

        require_pillow()
    if any(name in vars(args) for name in ("backbone", "weights", "image_size")):  # label errors on the features
        from tl_keras.inspection import check

        folder, checked = check(args.data_dir, config=config)
    else:  # by content only, without a backbone
        from tl_keras.data.check import checked_folder
        from tl_keras.data.sources import load_data

        folder = load_data(source, image_size=32, validation_split=config.validation_split, seed=config.seed,
                           exif_orientation=config.exif_orientation)  # every file decoded once: used or skipped with its reason
        folder, checked = checked_folder(folder, config.on_leak, config.on_conflict, config.near_duplicate_check)
    if args.report:  # written with --json too; only the text output names it
        write_report(args.report, folder, checked, title=f"tl-keras check {args.data_dir}")
    if args.json:
        print(json.dumps({"data_dir": args.data_dir, "num_files_found": folder.num_found, "num_used": folder.num_used,
                          "skipped_files": [{"path": p, "reason": r} for p, r in folder.skipped], **checked.to_dict()},
                         indent=2, ensure_ascii=False))
        return 0
    print(f"{args.data_dir}: {len(folder.class_names)} classes, found {folder.num_found} files, used {folder.num_used}, "
          f"skipped {len(folder.skipped)}")
    for line in skip_lines(folder.skipped):
        print(f"  {line}")
    counts = checked.class_counts
    for split, per_class in counts.items():
        print(f"{split:6} " + ", ".join(f"{c} {n}" for c, n in per_class.items()))
    for line in checked.lines(first=10):
        print(line)
    if args.report:
        print(f"report: {args.report}")
    return 0


def _advise(args) -> int:
    config = _settings(args)
    source = _checked_source(args, config)
    from tl_keras.tuning.advisor import advise

    advice = advise(source, config.backbone, weights=config.weights, image_size=config.image_size,
                    crop_to_aspect_ratio=config.crop_to_aspect_ratio, per_class=args.per_class, seed=config.seed)
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(advice.describe())
    plan = config.replace(transfer=advice.strategy, **advice.measured_options())
    flags = config_flags(plan, ("backbone", "weights", "image_size", "crop_to_aspect_ratio", "transfer", "cut", "unfreeze_blocks",
                                "hidden_units", "layer_decay"))
    print(f"train with:  tl-keras train {args.data_dir} " + " ".join(flags))
    print(f"measured in {advice.seconds:.1f} s")
    return 0


def _lr_find(args) -> int:
    config = _settings(args)
    _checked_source(args, config)
    from tl_keras.api import lr_find

    found = lr_find(args.data_dir, config=config, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps,
                    plot=args.plot)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
        return 0
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"tl-keras {args.command}: error: {err}", file=sys.stderr)
        return 2


def _evaluate(args) -> int:
    from tl_keras.evaluation.report import format_report
    from tl_keras.serving.client import ExportedModel

    report = ExportedModel(args.model_dir, tta=args.tta).evaluate(args.data_dir, split=args.split, top_k=args.top_k)
    if args.plots:
        from tl_keras.evaluation.plots import plot_report

        plot_report(report, args.plots, report["split"])
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_report(report, f"{report['model_dir']} on {report['data_dir']} ({report['split']})"))
        for line in skip_lines([(item["path"], item["reason"]) for item in report["skipped_files"]]):
            print(f"  {line}")
    return 0


def _export_tflite(args) -> int:
    from tl_keras.export.saved_model import latest_version_dir
    from tl_keras.export.tflite import export_tflite

    source = latest_version_dir(args.model_dir)
    version = os.path.basename(os.path.normpath(source))
    output = args.output or os.path.join(os.path.dirname(os.path.normpath(source)) + "_tflite", version)
    report = export_tflite(source, output, variants=args.variants, quantize=args.quantize, check_data=args.check_data,
                           representative_data=args.representative_data)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    for name, v in report["variants"].items():
        agreement = "" if v["top1_agreement"] is None else (
            f", top-1 agreement with the SavedModel {v['top1_agreement']:.4f} on {v['num_check_images']} images"
            f" (max |p diff| {v['max_abs_diff']:.2g}), accuracy {v['accuracy']:.4f}")
        print(f"{name:13} {v['path']} ({v['bytes'] / 1e6:.2f} MB){agreement}")
    if report["saved_model_accuracy"] is not None:
        print(f"SavedModel    accuracy {report['saved_model_accuracy']:.4f}; checked with {report['interpreter']}")
    labels = os.path.join(source, "assets", "labels.txt") if output.lower().endswith(".tflite") else os.path.join(output, "labels.txt")
    size = report["image_size"]
    print(f"labels        {labels}; input [1, {size}, {size}, 3] RGB 0-255 (float32; uint8 for int8_full)")
    return 0


def _export_onnx(args) -> int:
    from tl_keras.export.onnx import export_onnx
    from tl_keras.export.saved_model import latest_version_dir

    source = latest_version_dir(args.model_dir)
    version = os.path.basename(os.path.normpath(source))
    output = args.output or os.path.join(os.path.dirname(os.path.normpath(source)) + "_onnx", version, "model.onnx")
    report = export_onnx(source, output, opset=args.opset, check_data=args.check_data)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    size = report["image_size"]
    print(f"onnx          {report['path']} ({report['bytes'] / 1e6:.2f} MB, opset {report['opset']}); input "
          f"{report['input']} float32 [batch, {size}, {size}, 3] RGB 0-255, output {report['output']}")
    if report["top1_agreement"] is not None:
        print(f"check         top-1 agreement with the SavedModel {report['top1_agreement']:.4f} on {report['num_check_images']} images "
              f"(max |p diff| {report['max_abs_diff']:.2e}); accuracy {report['accuracy']:.4f} (SavedModel {report['saved_model_accuracy']:.4f}), onnxruntime")
    return 0


def _embed(args) -> int:
    from tl_keras.serving.embed import embed

    result = embed(args.source, args.data_dir, output=args.output, image_size=args.image_size, weights=args.weights)
    print(f"{len(result['paths'])} feature vectors of size {result['features'].shape[1]} written to {args.output} "
          f"(arrays: features, paths, labels, class_names, splits)")
    for item in result["skipped_files"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


def _serve(args) -> int:
    import logging

    from tl_keras.serving.server import ServerSettings, serve

    # The serve flags are ServerSettings' fields by name.
    settings = ServerSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerSettings) if hasattr(args, f.name)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    def ready(url: str) -> None:
        print(f"serving {url} (TF Serving REST API); try it at http://{args.host}:{args.port}/ ; Ctrl-C stops", flush=True)

    serve(args.model_dir, settings, ready=ready)
    print("stopped", flush=True)
    return 0


def _demo(args) -> int:
    from tl_keras.demo import run_demo

    metrics = run_demo(args.output, labels_per_class=args.labels_per_class, seed=args.seed)
    print("\n== tl-keras demo: transfer learning on scikit-learn's handwritten digits ==")
    print(f"source task       {metrics['source_task']}: {metrics['source_train_images']} images, backbone saved in TF Hub format to {metrics['hub_backbone_dir']}")
    print(f"target task       {metrics['target_task']}: {metrics['target_train_images']} training images, {metrics['target_val_images']} validation images")
    print(f"transfer          val accuracy {metrics['head_val_accuracy']:.4f} after the head phase, {metrics['transfer_val_accuracy']:.4f} after fine-tuning")
    print(f"from scratch      val accuracy {metrics['scratch_val_accuracy']:.4f} (same architecture and images, "
          f"{metrics['scratch_epochs']} epochs at lr {metrics['scratch_learning_rate']:g}, its best epoch)")
    gain = metrics["transfer_val_accuracy"] - metrics["scratch_val_accuracy"]
    print(f"pretraining       {gain:+.4f}: " + ("the pretrained features paid off" if gain > 0 else
          "training from scratch did better here (pretraining does not always beat scratch; it pays most "
          "when labels are few)"))
    print(f"exported to       {metrics['export_dir']}")
    print(f"total time        {metrics['seconds']:.1f} s")
    if args.metrics_json:
        _write_json(args.metrics_json, metrics)
    return 0


COMMANDS = {"train": _train, "check": _check, "advise": _advise, "lr-find": _lr_find, "predict": _predict, "evaluate": _evaluate,
            "export-tflite": _export_tflite, "export-onnx": _export_onnx, "embed": _embed, "serve": _serve, "demo": _demo}


def _run(args) -> int:
    if getattr(args, "quiet", False):
        quiet()
    return COMMANDS[args.command](args)

