"""What a `tl-keras train` run prints, and the files commands write (predictions as CSV or
JSON, metrics JSON)."""

from __future__ import annotations

import os

from tl_keras.data.check import DataCheck
from tl_keras.data.folder import skip_lines


def _print_train_summary(metrics: dict) -> None:
    print("\n== tl-keras train summary ==")
    framing = "centre square" if (metrics.get("config") or {}).get("crop_to_aspect_ratio") else "whole image squeezed"
    print(f"backbone          {metrics['backbone']} at {metrics['image_size']} px ({framing})"
          + (f", cut at {metrics['cut']}" if metrics.get("cut") else "")
          + (f", hidden layers {metrics['hidden_units']}" if metrics.get("hidden_units") else ""))
    if (metrics.get("image_size_choice") or {}).get("reason"):
        print(f"  size: {metrics['image_size_choice']['reason']}")
    if metrics.get("advice"):
        advice = metrics["advice"]
        probes = ", ".join(f"{name} {acc:.3f}" for name, acc in advice["probes"].items())
        print(f"strategy          {advice['strategy']} (advisor: {advice['size']} data, "
              f"{'similar' if advice['similar'] else 'dissimilar'}; linear probes {probes})")
        print(f"  why: {advice['reason']}")
    elif metrics.get("transfer_strategy"):
        print(f"strategy          {metrics['transfer_strategy']}")
    print(f"images            train {metrics['num_train_images']}, val {metrics['num_val_images']} (found {metrics['num_files_found']}, skipped {len(metrics['skipped_files'])})")
    for line in skip_lines([(item["path"], item["reason"]) for item in metrics["skipped_files"]]):
        print(f"  {line}")
    for item in metrics["warnings"]:
        print(f"  warning {item['path']}: {item['message']}")
    if metrics.get("data_check"):
        for line in DataCheck.from_dict(metrics["data_check"]).lines():
            print(f"  {line}")
    if metrics.get("symmetry"):
        print(f"symmetry          {metrics['symmetry']['description']}")
    print(f"phase 1 (head)    {metrics['head_epochs']} epochs at lr {metrics['learning_rates'][0]:g}: val accuracy {_fmt(metrics['head_val_accuracy'])}")
    if metrics.get("head_init"):
        start = metrics["head_init"]
        measured = (f"; leave-one-out accuracy {start['loo_accuracy']:.3f} on {start['rows']} training images at "
                    f"penalty {start['penalty']:g}, softmax temperature {start['temperature']:g}") if "loo_accuracy" in start else ""
        print(f"  head started from {start['chosen']} weights: {start['reason']}{measured}")
    cache = metrics["feature_cache"]
    if cache["used"]:
        variants = f"{cache['copies']} augmented variants per image" if cache["augmented"] else "un-augmented images (augmentation applies in phase 2)"
        print(f"  on cached features of {variants}: {cache['computed']} computed, {cache['loaded']} loaded from disk, {cache['seconds']:.1f} s")
    print(f"phase 2 (top {len(metrics['unfrozen_blocks'])} blocks: {', '.join(metrics['unfrozen_blocks']) or '-'}) {metrics['fine_tune_epochs']} epochs at lr {metrics['learning_rates'][1]:g}"
          + (f", {metrics['config']['fine_tune_schedule']} schedule" if metrics.get("config") else ""))
    if metrics.get("phase_two_depth"):
        print(f"  depth: {metrics['phase_two_depth']['reason']}")
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
    from tl_keras.evaluation.report import format_report

    for split, report in metrics["evaluation"].items():
        print(f"\n== {split} ==")
        print(format_report({**report, "most_confident_errors": report["most_confident_errors"][:5]}))


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


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_json(path: str, payload) -> None:
    from tl_keras.utils.files import write_json

    write_json(path, payload)
