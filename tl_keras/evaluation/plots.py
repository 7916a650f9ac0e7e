"""PNG pictures of a run: confusion matrix, both phases' training curves, misclassified images.

Needs matplotlib (`pip install "tl_keras[plots]"`); imported only when a picture is asked for. Uses
matplotlib's object API with the Agg canvas, so no display and no global pyplot state.

Examples:
    >>> from tl_keras.evaluation.plots import plot_confusion_matrix
    >>> plot_confusion_matrix(report, "confusion.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError('Pictures need matplotlib: pip install "tl_keras[plots]" (or pip install matplotlib).') from err
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


def plot_confusion_matrix(report: dict, path: str, title: str = "Confusion matrix") -> str:
    """Counts per (true, predicted) class from a `tl_keras.evaluation` report; colour = share of the row."""
    names = list(report["per_class"])
    counts = np.asarray(report["confusion_matrix"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 1.6 + 0.65 * len(names)
    figure = _figure(side + 1.2, side)
    ax = figure.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = report.get("accuracy")
    ax.set_title(f"{title} (accuracy {accuracy:.3f})" if accuracy is not None else title)
    return _save(figure, path)


def plot_training_curves(history: dict, head_epochs: int, path: str, title: str = "Training") -> str:
    """Loss and accuracy of both phases on one epoch axis, the phase boundary marked."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(10, 4)
    epochs = len(history.get("loss", []))
    x = np.arange(1, epochs + 1)
    for index, metric in enumerate(("loss", "accuracy")):
        ax = figure.add_subplot(1, 2, index + 1)
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if history.get(key):
                ax.plot(x[: len(history[key])], history[key], style, marker="o", markersize=3,
                        label="train" if key == metric else "val")
        if 0 < head_epochs < epochs:
            ax.axvline(head_epochs + 0.5, color="grey", linestyle=":")
            ax.axvspan(head_epochs + 0.5, epochs + 0.5, color="orange", alpha=0.08)
            top = ax.get_ylim()[1]
            ax.text(head_epochs / 2 + 0.5, top, "phase 1: head", ha="center", va="bottom", fontsize=8)
            ax.text((head_epochs + epochs) / 2 + 0.5, top, "phase 2: fine-tune", ha="center", va="bottom", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xlim(0.5, epochs + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    figure.suptitle(title, y=1.04)
    return _save(figure, path)


def plot_misclassified(errors: Sequence[dict], path: str, columns: int = 4, image_size: int = 160,
                       title: str = "Most confidently wrong") -> str:
    """A grid of the images in `errors` (`most_confident_errors` of a report), true and predicted
    labels under each."""
    from tl_keras.images.read import read_images

    errors = [e for e in errors if e.get("path")]
    rows = max(1, math.ceil(len(errors) / columns))
    figure = _figure(3 * columns, 3.3 * rows)
    images = read_images([e["path"] for e in errors], image_size) if errors else []
    for i in range(rows * columns):
        ax = figure.add_subplot(rows, columns, i + 1)
        ax.axis("off")
        if i < len(errors):
            e = errors[i]
            ax.imshow(images[i])
            if isinstance(e["true"], list):  # multi-label: label sets, and the largest probability error
                caption = f"true: {';'.join(e['true']) or '-'}\npredicted: {';'.join(e['predicted']) or '-'} (error {e['error']:.2f})"
            else:
                caption = f"true: {e['true']}\npredicted: {e['predicted']} ({e['confidence']:.2f})"
            ax.set_title(caption, fontsize=9, color="firebrick")
    if not errors:
        figure.axes[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    figure.suptitle(title)
    return _save(figure, path)


def plot_per_class(report: dict, path: str, title: str = "Per class") -> str:
    """A multi-label report's per-class average precision, F1 and threshold as bars."""
    names = list(report["per_class"])
    figure = _figure(max(5.0, 0.9 * len(names) + 2), 3.6)
    ax = figure.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    for offset, key, label in ((-0.27, "average_precision", "AP"), (0.0, "f1", "F1"), (0.27, "threshold", "threshold")):
        ax.bar(x + offset, [report["per_class"][n][key] or 0.0 for n in names], width=0.27, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: mAP {report['mean_average_precision']:.3f}, micro F1 {report['micro_f1']:.3f}")
    return _save(figure, path)


def plot_report(report: dict, folder: str, split: str) -> list[str]:
    """`confusion_<split>.png` (for a multi-label report `per_class_<split>.png`: AP, F1 and threshold
    per class) and `misclassified_<split>.png` (up to 16 images) of a report, in `folder`."""
    if report.get("multi_label"):
        return [
            plot_per_class(report, os.path.join(folder, f"per_class_{split}.png"), title=f"Per class ({split})"),
            plot_misclassified(report["most_confident_errors"][:16], os.path.join(folder, f"misclassified_{split}.png"),
                               title=f"Most wrong ({split})"),
        ]
    return [
        plot_confusion_matrix(report, os.path.join(folder, f"confusion_{split}.png"), title=f"Confusion matrix ({split})"),
        plot_misclassified(report["most_confident_errors"][:16], os.path.join(folder, f"misclassified_{split}.png"),
                           title=f"Most confidently wrong ({split})"),
    ]


def plot_lr_find(tests: dict, path: str) -> str:
    """Loss against learning rate (log scale) for each range test of a `tl_keras.tuning.lr_finder` result
    (`{"phase 1": RangeTest, ...}`), the suggested rate of each marked."""
    figure = _figure(5.0 * len(tests), 3.6)
    for i, (phase, test) in enumerate(tests.items(), start=1):
        ax = figure.add_subplot(1, len(tests), i)
        ax.plot(test.learning_rates, test.losses, color="0.75", linewidth=0.8, label="loss")
        ax.plot(test.learning_rates, test.smoothed, color="C0", label="smoothed")
        ax.axvline(test.suggestion, color="C3", linestyle="--", label=f"suggested {test.suggestion:.1e}")
        ax.set_xscale("log")
        top = np.nanpercentile(test.smoothed, 95) if test.smoothed else 1.0
        ax.set_ylim(min(test.smoothed or [0.0]) * 0.9, max(top, 1e-6) * 1.3)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(phase)
        ax.legend(fontsize=8)
    return _save(figure, path)


def plot_scratch_comparison(pretrained: dict, scratch: dict, path: str, head_epochs: int = 0) -> str:
    """Validation accuracy and loss per epoch of the pretrained run and the from-scratch run of the
    same architecture (Keras-style histories)."""
    figure = _figure(10.0, 3.6)
    for i, metric in enumerate(("val_accuracy", "val_loss"), start=1):
        ax = figure.add_subplot(1, 2, i)
        for name, history, colour in (("pretrained", pretrained, "C0"), ("from scratch", scratch, "C1")):
            values = history.get(metric, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, color=colour, label=name)
        if head_epochs:
            ax.axvline(head_epochs + 0.5, color="0.6", linestyle=":", label="pretrained: fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.replace("_", " "))
        ax.legend(fontsize=8)
    figure.suptitle("Pretrained vs from scratch, same architecture, splits and epochs")
    return _save(figure, path)
