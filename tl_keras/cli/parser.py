"""The `tl-keras` argument parser: every command, its arguments and help."""

from __future__ import annotations

import argparse
import os

from tl_keras.cli.flags import _config_flags, _positive_int
from tl_keras.config import DISTRIBUTIONS, TRANSFERS


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
    t.add_argument("--report", metavar="FILE.html", help="write the data check as a one-file HTML report with thumbnails (needs Pillow: the report extra)")
    t.add_argument("--checkpoint-dir", metavar="DIR", help="per-epoch state for resuming a killed run by running the same command again (default: OUTPUT/.checkpoint, deleted after export)")
    t.add_argument("--no-checkpoint", action="store_true", help="do not save per-epoch state")
    t.add_argument("--quiet", action="store_true", help="no progress lines on stderr while listing, checking and decoding images")

    c = sub.add_parser("check", help="find duplicate images, label conflicts and train/val leaks in a data set, by content; report class sizes",
                       description="Lists and checks the data as train would (every file used or skipped with its reason), hashes each used image, "
                                   "and reports the same bytes twice in a class, under two classes (a label conflict) and in train and val/test "
                                   "(a leak), and the classes' sizes. train runs the same check and applies --on-leak / --on-conflict. With --backbone "
                                   "(or --weights, --image-size), also computes the backbone's features and lists likely label errors "
                                   "(cleanlab, the labels extra), as train does on its cached features.")
    c.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file")
    _config_flags(c, only=("validation_split", "seed", "path_column", "label_column", "path_format", "exif_orientation",
                           "on_leak", "on_conflict", "near_duplicate_check", "backbone", "weights", "image_size", "crop_to_aspect_ratio"))
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--report", metavar="FILE.html", help="also write a one-file HTML report with thumbnails: copies side by side, likely label errors, skipped files (needs Pillow: the report extra)")
    c.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    a = sub.add_parser("advise", help="measure an image folder's size and similarity to the backbone's pretraining; recommend a strategy",
                       description="Counts training images per class, probes the frozen backbone's features at three depths with a linear classifier, and maps size x similarity to head-only, cut, top-blocks or fine-tune-all, with the reason.")
    a.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file")
    _config_flags(a, only=("backbone", "weights", "image_size", "crop_to_aspect_ratio", "seed", "path_column", "label_column",
                           "path_format"))
    a.add_argument("--per-class", type=_positive_int, default=100, help="images per class and split decoded for the probes (default: 100)")
    a.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("lr-find", help="learning-rate range test for both phases; suggests learning rates and plots loss vs rate",
                       description="Ramps the learning rate exponentially over a few batches for phase 1 (head) and phase 2 (top blocks unfrozen, after a short head training) and suggests a tenth of the largest rate at which the smoothed loss is within 20% of its minimum.")
    r.add_argument("data_dir", metavar="DATA_DIR", help="an image folder or a .csv label file")
    _config_flags(r, only=("backbone", "weights", "image_size", "crop_to_aspect_ratio", "cut", "hidden_units", "dropout", "unfreeze_blocks",
                           "layer_decay", "batch_size", "seed", "cache_features", "path_column", "label_column", "path_format"))
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
                                   "tl_keras.json to OUTPUT (a folder), or one variant (default: float32) to OUTPUT ending in .tflite; with --check-data, reports "
                                   "each variant's size, top-1 agreement with the SavedModel and accuracy, run with LiteRT's interpreter.")
    x.add_argument("model_dir", metavar="MODEL_DIR")
    x.add_argument("--output", metavar="OUTPUT", help="a folder, or a file ending in .tflite for one variant (default: MODEL_DIR's NAME folder + _tflite/VERSION)")
    x.add_argument("--quantize", nargs="+", choices=["none", "dynamic", "float16", "int8-full"],
                   help="none = float32; dynamic = int8 weights; float16 = float16 weights; int8-full = int8 weights and "
                        "activations, uint8 input and output, calibrated on training images (--representative-data, else --check-data, else the training data the export recorded)")
    x.add_argument("--variants", nargs="+", choices=["float32", "dynamic_int8", "float16", "int8_full"],
                   help="the same by file name (model_<variant>.tflite); default: float32 dynamic_int8 (float32 alone for an OUTPUT.tflite file)")
    x.add_argument("--check-data", metavar="DATA_DIR", help="image folder or label file to compare TFLite with the SavedModel on (its test/ or val/ split)")
    x.add_argument("--representative-data", metavar="DATA_DIR", help="image folder or label file whose train split calibrates int8-full (default: --check-data, else the training data the export recorded)")
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
    from tl_keras.serving.server import ServerSettings

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
