"""The `tl-keras` command line: train, predict, evaluate, demo. The only module that parses or prints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from tl_keras.checks import require_int
from tl_keras.config import DISTRIBUTIONS, TRANSFERS, TrainConfig


def _positive_int(text: str) -> int:
    try:
        return require_int("value", int(text), 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}") from None


def _blocks(text: str) -> int | str:
    return text if text == "all" else int(text) if text.strip().isdigit() else text


def _units(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(u) for u in text.split(",") if u.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 512 or 512,256, got {text!r}") from None


# How the CLI reads each kind of TrainConfig field from text (the field's metadata names the kind).
READERS = {"int": int, "float": float, "str": str, "units": _units, "blocks": _blocks,
           "auto-on-off": lambda text: {"auto": "auto", "on": True, "off": False}[text]}


METAVARS = {"int": "N", "float": "X", "blocks": "N|all|search|N,N,.."}


def _reader(name: str, kind: str):
    """Reads a flag's text as TrainConfig field `name` and checks it there (one set of rules)."""
    def read(text: str):
        try:
            value = READERS[kind](text)
        except (ValueError, KeyError):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}") from None
        try:
            return TrainConfig.check(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    read.__name__ = name  # argparse names the type in some messages
    return read


def _flag(field) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per TrainConfig field (or the fields in `only`), generated from the field's metadata.
    Every flag defaults to "not given", so only the flags on the command line override `--config`."""
    group = parser.add_argument_group("training settings (TrainConfig; given flags override --config)")
    for field in dataclasses.fields(TrainConfig):
        if only is not None and field.name not in only:
            continue
        meta = field.metadata
        default = "" if field.default is None else f" (default: {_text(field.default)})"
        common = {"dest": field.name, "default": argparse.SUPPRESS, "help": meta["help"] + default}
        if meta["switch"] == "both":
            group.add_argument(_flag(field), action=argparse.BooleanOptionalAction, **common)
        elif meta["switch"] == "off":
            group.add_argument(_flag(field), action="store_const", const=False, **common)
        elif meta["switch"] == "policy":  # --augment [POLICY] (alone: the default's), --no-augment: the first choice
            group.add_argument(_flag(field), nargs="?", const=field.default, type=_reader(field.name, meta["read"]),
                               choices=meta["choices"], **common)
            group.add_argument("--no-" + _flag(field)[2:], action="store_const", const=meta["choices"][0],
                               dest=field.name, default=argparse.SUPPRESS, help=f"the same as {_flag(field)} {meta['choices'][0]}")
        else:
            group.add_argument(_flag(field), type=_reader(field.name, meta["read"]), choices=meta["choices"],
                               metavar=meta["metavar"] or METAVARS.get(meta["read"]), **common)
    group.add_argument("--config", metavar="FILE", help="read the settings from FILE: a config JSON (--save-config) or an export's assets/tl_keras.json")


def _text(value) -> str:
    """A setting's value as a flag writes it."""
    if value is True or value is False:
        return {True: "on", False: "off"}[value]
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_flags(config: TrainConfig, names: tuple[str, ...] | None = None) -> list[str]:
    """The `tl-keras train` flags that set `config`'s values that differ from the defaults (of the
    fields `names`, in that order; default: all fields)."""
    flags = []
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for field in [fields[name] for name in names] if names is not None else fields.values():
        value = getattr(config, field.name)
        if value == field.default or isinstance(value, dict):
            continue
        switch = field.metadata["switch"]
        if switch == "both":
            flags.append(_flag(field) if value else "--no-" + _flag(field)[2:])
        elif switch == "off":
            flags.append(_flag(field))
        else:
            flags.append(f"{_flag(field)} {_text(value)}")
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-keras",
        description="Transfer learning with Keras 3 / TensorFlow: pretrained backbone + new head, two-phase fit, SavedModel export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on an image folder, export a SavedModel",
                       description="Train both phases on DATA_DIR (one subfolder per class, or train/ val/ [test/]; or a labels .csv file with columns path,label[,split]) and export for serving.")
    t.add_argument("data_dir", metavar="DATA_DIR", help="an image folder, or a .csv label file (path,label[,split]; paths relative to it)")
    _config_flags(t)
    t.add_argument("--strategy", choices=TRANSFERS + DISTRIBUTIONS[1:], help="older name of --transfer and --distribute: takes a transfer plan or a distribution")
    t.add_argument("--save-config", metavar="FILE", help="write the resolved settings (--config and flags) to FILE as JSON and exit without training")
    t.add_argument("--folds", type=_positive_int, metavar="K", help="k-fold cross-validation instead of one run: mean and spread of val accuracy over K folds; exports nothing")
    t.add_argument("--output", metavar="DIR", help="export folder NAME; versions go inside (default: saved_models/<data folder name>)")
    t.add_argument("--metrics-json", metavar="PATH", help="write the run's metrics (with its resolved config under \"config\") as JSON")
    t.add_argument("--no-evaluate", action="store_true", help="skip the final report (per-class metrics, confusion matrix, confident errors)")
    t.add_argument("--plots", metavar="DIR", help="write PNGs (needs matplotlib): training curves, confusion matrices, misclassified images")
    t.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs of both phases to DIR")
    t.add_argument("--checkpoint-dir", metavar="DIR", help="per-epoch state for resuming a killed run by running the same command again (default: OUTPUT/.checkpoint, deleted after export)")
    t.add_argument("--no-checkpoint", action="store_true", help="do not save per-epoch state")

    a = sub.add_parser("advise", help="measure an image folder's size and similarity to the backbone's pretraining; recommend a strategy",
                       description="Counts training images per class, probes the frozen backbone's features at three depths with a linear classifier, and maps size x similarity to head-only, cut, top-blocks or fine-tune-all, with the reason.")
    a.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file")
    _config_flags(a, only=("backbone", "weights", "image_size", "crop_to_aspect_ratio", "seed"))
    a.add_argument("--per-class", type=_positive_int, default=100, help="images per class and split decoded for the probes (default: 100)")
    a.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("lr-find", help="learning-rate range test for both phases; suggests learning rates and plots loss vs rate",
                       description="Ramps the learning rate exponentially over a few batches for phase 1 (head) and phase 2 (top blocks unfrozen, after a short head training) and suggests a tenth of the largest rate at which the smoothed loss is within 20% of its minimum.")
    r.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file")
    _config_flags(r, only=("backbone", "weights", "image_size", "crop_to_aspect_ratio", "cut", "hidden_units", "dropout", "unfreeze_blocks",
                           "layer_decay", "batch_size", "seed", "cache_features"))
    r.add_argument("--steps", type=_positive_int, default=100, help="batches per ramp (default: 100)")
    r.add_argument("--min-lr", type=float, default=1e-7)
    r.add_argument("--max-lr", type=float, default=1.0)
    r.add_argument("--plot", metavar="PNG", help="write the loss-vs-rate picture (needs matplotlib)")
    r.add_argument("--json", action="store_true", help="print JSON")

    _serving_commands(sub)
    return parser


def _serving_commands(sub) -> None:
    """The commands that use an export: predict, evaluate, export-tflite, embed; and the demo."""
    p = sub.add_parser("predict", help="classify image files, folders or globs with an exported model")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="export folder NAME/ (latest version) or NAME/VERSION/")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files, folders (searched recursively) or glob patterns ('photos/**/*.jpg')")
    p.add_argument("--top-k", type=_positive_int, default=1, help="classes to show per image (default: 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE: .csv or .json")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: average each image's probabilities with its mirror image's (twice the compute; an export trained with --tta does it already)")

    e = sub.add_parser("evaluate", help="report on an exported model over an image folder")
    e.add_argument("model_dir", metavar="MODEL_DIR")
    e.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file; uses its test split, else val, else every image")
    e.add_argument("--split", help="evaluate this split (train, val or test) instead")
    e.add_argument("--top-k", type=_positive_int, help="k of top-k accuracy (default: 5 with more than 5 classes, else 2)")
    e.add_argument("--plots", metavar="DIR", help="write confusion_<split>.png and misclassified_<split>.png (needs matplotlib)")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--tta", action="store_true", help="test-time augmentation: average each image's probabilities with its mirror image's (twice the compute; an export trained with --tta does it already)")

    x = sub.add_parser("export-tflite", help="convert an export to TFLite (float32, dynamic-range int8, float16, full-integer int8) with labels",
                       description="Writes model_<variant>.tflite for each variant asked for (default: float32 and dynamic_int8), labels.txt and "
                                   "tl_keras.json to OUTPUT (a folder), or the one variant to OUTPUT ending in .tflite; with --check-data, reports "
                                   "each variant's size, top-1 agreement with the SavedModel and accuracy, run with LiteRT's interpreter.")
    x.add_argument("model_dir", metavar="MODEL_DIR")
    x.add_argument("--output", metavar="OUTPUT", help="a folder, or a file ending in .tflite for one variant (default: MODEL_DIR's NAME folder + _tflite/VERSION)")
    x.add_argument("--quantize", nargs="+", choices=["none", "dynamic", "float16", "int8-full"],
                   help="none = float32; dynamic = int8 weights; float16 = float16 weights; int8-full = int8 weights and "
                        "activations, uint8 input and output, calibrated on training images (needs --representative-data or --check-data)")
    x.add_argument("--variants", nargs="+", choices=["float32", "dynamic_int8", "float16", "int8_full"],
                   help="the same by file name (model_<variant>.tflite); default: float32 dynamic_int8")
    x.add_argument("--check-data", metavar="DATA_DIR", help="image folder or label file to compare TFLite with the SavedModel on (its test/ or val/ split)")
    x.add_argument("--representative-data", metavar="DATA_DIR", help="image folder or label file whose train split calibrates int8-full (default: --check-data)")
    x.add_argument("--json", action="store_true", help="print JSON")

    o = sub.add_parser("export-onnx", help="convert an export to ONNX (tf2onnx), checked with onnxruntime",
                       description="Writes one .onnx file: float32 images [batch, size, size, 3] RGB 0-255 at the model's input size -> "
                                   "probabilities; labels, input size and opset in its metadata_props. With --check-data, reports top-1 "
                                   "agreement and the largest probability difference with the SavedModel, run with onnxruntime.")
    o.add_argument("model_dir", metavar="MODEL_DIR")
    o.add_argument("--output", metavar="FILE.onnx", help="default: NAME_onnx/VERSION/model.onnx beside MODEL_DIR's NAME folder")
    o.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (default: 17)")
    o.add_argument("--check-data", metavar="DATA_DIR", help="image folder or label file to compare ONNX with the SavedModel on (its test/ or val/ split)")
    o.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("embed", help="write one feature vector per image (with path and label) to a .npz",
                       description="Feature extraction: runs the backbone of an export (fine-tuned) or any backbone over DATA_DIR.")
    m.add_argument("source", metavar="MODEL_OR_BACKBONE", help="a tl_keras export, or a backbone as train --backbone takes it")
    m.add_argument("data_dir", metavar="DATA_DIR")
    m.add_argument("--output", required=True, metavar="FEATURES_NPZ")
    m.add_argument("--image-size", type=_positive_int, help="default: the export's or the backbone's")
    m.add_argument("--weights", metavar="H5", help="weights for keras: backbones")

    _serve_command(sub)

    d = sub.add_parser("demo", help="offline end-to-end demo on scikit-learn's bundled digits",
                       description="Pretrain a small backbone on half of the digit scans, export it in TF Hub format, transfer it to digits 5-9 of the other half with two labels per class through the public path, and compare with training from scratch.")
    d.add_argument("--output", default=os.path.join("saved_models", "demo"), metavar="DIR", help="where the demo writes (default: saved_models/demo)")
    d.add_argument("--labels-per-class", type=_positive_int, default=2, help="target-task training images per class (default: 2)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--metrics-json", metavar="PATH")


def _serve_command(sub) -> None:
    from tl_keras.server import ServerSettings

    defaults = ServerSettings()
    s = sub.add_parser("serve", help="serve an export over HTTP with TF Serving's REST API, and a page to try it",
                       description="Serves MODEL_BASE's version folders as TF Serving's REST API does (status, metadata, "
                                   ":predict with instances or inputs, {\"b64\": ...} for image_bytes); a new version "
                                   "folder is loaded without a restart; GET / is a page where you drop an image.")
    s.add_argument("model_dir", metavar="MODEL_BASE", help="the export folder NAME/ holding version folders 1/, 2/, ...")
    s.add_argument("--host", default=defaults.host, help=f"address to listen on (default: {defaults.host}, this machine only)")
    s.add_argument("--port", type=int, default=defaults.port, help=f"(default: {defaults.port}, TF Serving's REST port)")
    s.add_argument("--model-name", metavar="NAME", help="the NAME in /v1/models/NAME (default: MODEL_BASE's folder name)")
    s.add_argument("--max-batch-size", type=_positive_int, default=defaults.max_batch_size,
                   help=f"most rows run as one batch; 1 turns batching off (default: {defaults.max_batch_size})")
    s.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_ms,
                   help=f"how long a request waits for others to share its batch (default: {defaults.batch_timeout_ms:g})")
    s.add_argument("--max-request-bytes", type=_positive_int, default=defaults.max_request_bytes,
                   help=f"largest request body; larger ones get 413 (default: {defaults.max_request_bytes})")
    s.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds,
                   help=f"how often MODEL_BASE is checked for new versions (default: {defaults.poll_seconds:g})")
    s.add_argument("--keep-versions", type=_positive_int, default=defaults.keep_versions,
                   help=f"how many of the newest versions stay loaded (default: {defaults.keep_versions})")


def _print_train_summary(metrics: dict) -> None:
    print("\n== tl-keras train summary ==")
    framing = "centre square" if (metrics.get("config") or {}).get("crop_to_aspect_ratio") else "whole image squeezed"
    print(f"backbone          {metrics['backbone']} at {metrics['image_size']} px ({framing})"
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
    for trial in metrics.get("depth_search") or ():
        verdict = ("chosen" if trial["chosen"] else "beat the head" if trial["beat_head"]
                   else "did not beat the head" if trial["beat_head"] is False else "")
        print(f"  tried top {trial['unfreeze_blocks']:>2} blocks: best val_loss {trial['val_loss']:.4f}, val accuracy "
              f"{_fmt(trial['val_accuracy'])}, {trial['epochs']} epochs, {trial['seconds']:.1f} s  {verdict}")
    boundary = metrics.get("boundary_cache")
    if boundary and boundary["used"]:
        views = f"{boundary['views']} augmented views per training image" if boundary["views"] else "un-augmented training images"
        print(f"  on cached boundary activations {boundary['shape']} of {views}: {boundary['computed']} computed, "
              f"{boundary['megabytes']:.0f} MB, {boundary['seconds']:.1f} s")
    elif boundary:
        print(f"  on full images every epoch: {boundary['reason']}")
    if metrics.get("layer_decay") is not None:
        print(f"  discriminative learning rates: layer decay {metrics['layer_decay']}")
    gain = metrics.get("fine_tune_gain")
    kept = "" if metrics.get("fine_tune_kept") is not False else "; not kept: no epoch beat the head's val_loss"
    what = "val subset acc." if metrics.get("multi_label") else "val accuracy"
    print(f"{what:<18}{_fmt(metrics['val_accuracy'])}" + (f" (phase 2: {gain:+.3f} over the head{kept})" if gain is not None else ""))
    if metrics.get("thresholds"):
        print("thresholds        " + ", ".join(f"{name} {t:.3f}" for name, t in metrics["thresholds"].items())
              + " (best F1 on val, in the export)")
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


# Files met in folders and globs that are not inputs at all: reported, but no failure.
_NOT_INPUTS = ("hidden file", "not an image file type")


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
        writer.writerow(["path", "label", "probability", "top_k", "error", "labels"])
        for r in results:
            writer.writerow([r["path"], r.get("label", ""), f"{r['probability']:.6f}" if "probability" in r else "",
                             ";".join(f"{n}:{p:.6f}" for n, p in r.get("top_k", [])), r.get("error", ""),
                             ";".join(r.get("labels", []))])


def _settings(args) -> TrainConfig:
    """The run's TrainConfig: `--config FILE` (or the defaults), then the flags given on the command line."""
    config = TrainConfig.load(args.config) if getattr(args, "config", None) else TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {name: value for name, value in vars(args).items() if name in fields}
    if getattr(args, "strategy", None):
        given["strategy"] = args.strategy
    return config.replace(**given)


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
    if args.folds:
        return _cross_validate(args, config)
    from tl_keras.api import train

    result = train(
        args.data_dir, config=config, tensorboard_dir=args.tensorboard, plots_dir=args.plots, output=args.output,
        checkpoint_dir=None if args.no_checkpoint else (args.checkpoint_dir or "auto"), evaluate=not args.no_evaluate,
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


def _advise(args) -> int:
    from tl_keras.advisor import advise

    config = _settings(args)
    advice = advise(args.data_dir, config.backbone, weights=config.weights, image_size=config.image_size,
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
    from tl_keras.api import lr_find

    found = lr_find(args.data_dir, config=_settings(args), min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps,
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


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_json(path: str, payload) -> None:
    from tl_keras.files import write_json

    write_json(path, payload)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"tl-keras {args.command}: error: {err}", file=sys.stderr)
        return 2


def _evaluate(args) -> int:
    from tl_keras.evaluation import format_report
    from tl_keras.serving import ExportedModel

    report = ExportedModel(args.model_dir, tta=args.tta).evaluate(args.data_dir, split=args.split, top_k=args.top_k)
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


def _export_tflite(args) -> int:
    from tl_keras.export import latest_version_dir
    from tl_keras.tflite import export_tflite

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
    from tl_keras.export import latest_version_dir
    from tl_keras.onnx_export import export_onnx

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
    from tl_keras.embed import embed

    result = embed(args.source, args.data_dir, output=args.output, image_size=args.image_size, weights=args.weights)
    print(f"{len(result['paths'])} feature vectors of size {result['features'].shape[1]} written to {args.output} "
          f"(arrays: features, paths, labels, class_names, splits)")
    for item in result["skipped_files"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


def _serve(args) -> int:
    import logging

    from tl_keras.server import ServerSettings, serve

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


COMMANDS = {"train": _train, "advise": _advise, "lr-find": _lr_find, "predict": _predict, "evaluate": _evaluate,
            "export-tflite": _export_tflite, "export-onnx": _export_onnx, "embed": _embed, "serve": _serve, "demo": _demo}


def _run(args) -> int:
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
