"""Where a classifier fails: top-k accuracy, per-class precision/recall/F1, confusion matrix, and the
most confidently wrong images. Plain NumPy on predicted probabilities; no TensorFlow, no plotting.

Example:

>>> import numpy as np
>>> from tl_keras.evaluation import classification_report, format_report
>>> report = classification_report(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]),
...                                class_names=["ants", "bees"], paths=["a.jpg", "b.jpg", "c.jpg"])
>>> report["accuracy"], report["per_class"]["bees"]["recall"]
(0.6666666666666666, 0.5)
>>> report["most_confident_errors"][0]["path"]
'c.jpg'
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_ERRORS_LISTED = 20


def default_top_k(num_classes: int) -> int:
    """Top-5 when there are more than 5 classes; otherwise top-2 (top-k with k >= classes is always 1)."""
    return 5 if num_classes > 5 else min(2, num_classes - 1) or 1


def classification_report(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    *,
    paths: Sequence[str] | None = None,
    top_k: int | None = None,
    max_errors: int = DEFAULT_ERRORS_LISTED,
) -> dict:
    """Metrics of predicted `probabilities` `[n, classes]` against integer `labels` `[n]`.

    Returns a JSON-able dict: `num_images`, `accuracy`, `top_k`, `top_k_accuracy`, `per_class`
    (name -> `precision`, `recall`, `f1`, `support`, and `accuracy` = recall, kept for older
    readers), `macro_avg` and `weighted_avg` (precision, recall, f1), `confusion_matrix` (rows: true
    class, columns: predicted, in `class_names` order) and `most_confident_errors` (up to
    `max_errors` wrong predictions, most confident first: `path`, `true`, `predicted`,
    `confidence`, `true_probability`). Precision of a class never predicted is None (its F1 is 0); a class
    without images has recall and F1 None.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), num_classes):
        raise ValueError(
            f"`probabilities` must have shape [num_images, num_classes] = [{len(labels)}, {num_classes}]. "
            f"Received: {list(probabilities.shape)}"
        )
    if paths is not None and len(paths) != len(labels):
        raise ValueError(f"`paths` must name every image ({len(labels)}). Received: {len(paths)} paths")
    k = top_k or default_top_k(num_classes)
    predicted = probabilities.argmax(axis=1) if len(labels) else np.zeros(0, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    top = np.argsort(-probabilities, axis=1)[:, :k]
    per_class, rows = {}, []
    for i, name in enumerate(class_names):
        tp, support, predicted_count = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        precision = tp / predicted_count if predicted_count else None
        recall = tp / support if support else None
        if recall is None:  # no image of this class: nothing to measure
            f1 = None
        elif not precision or not recall:  # never predicted, or never right
            f1 = 0.0
        else:
            f1 = 2 * precision * recall / (precision + recall)
        per_class[name] = {"precision": _num(precision), "recall": _num(recall), "f1": _num(f1),
                           "support": int(support), "accuracy": _num(recall)}
        rows.append((precision, recall, f1, support))
    errors = np.flatnonzero(predicted != labels)
    errors = errors[np.argsort(-probabilities[errors, predicted[errors]], kind="stable")][:max_errors]
    return {
        "num_images": int(len(labels)),
        "accuracy": _num((predicted == labels).mean() if len(labels) else None),
        "top_k": int(k),
        "top_k_accuracy": _num((top == labels[:, None]).any(axis=1).mean() if len(labels) else None),
        "per_class": per_class,
        "macro_avg": _average(rows, weighted=False),
        "weighted_avg": _average(rows, weighted=True),
        "confusion_matrix": confusion.tolist(),
        "most_confident_errors": [
            {
                "path": paths[i] if paths is not None else None,
                "true": class_names[labels[i]],
                "predicted": class_names[predicted[i]],
                "confidence": float(probabilities[i, predicted[i]]),
                "true_probability": float(probabilities[i, labels[i]]),
            }
            for i in errors
        ],
    }


def _num(value) -> float | None:
    return None if value is None else float(value)


def _average(rows, weighted: bool) -> dict:
    out = {}
    for j, key in enumerate(("precision", "recall", "f1")):
        pairs = [(r[j], r[3]) for r in rows if r[j] is not None]
        total = sum(w for _, w in pairs) if weighted else len(pairs)
        out[key] = float(sum(v * (w if weighted else 1) for v, w in pairs) / total) if total else None
    return out


def format_report(report: dict, title: str = "") -> str:
    """The report as aligned text: summary, per-class table, confusion matrix, confident errors."""
    names = list(report["per_class"])
    width = max([len(n) for n in names] + [12])
    lines = [title] if title else []
    lines.append(f"images {report['num_images']}   accuracy {_fmt(report['accuracy'])}   "
                 f"top-{report['top_k']} accuracy {_fmt(report['top_k_accuracy'])}")
    lines.append(f"{'class'.ljust(width)}  precision  recall     f1  support")
    for name, m in report["per_class"].items():
        lines.append(f"{name.ljust(width)}  {_fmt(m['precision']):>9}  {_fmt(m['recall']):>6}  {_fmt(m['f1']):>5}  {m['support']:>7}")
    for avg in ("macro_avg", "weighted_avg"):
        m = report[avg]
        lines.append(f"{avg.replace('_', ' ').ljust(width)}  {_fmt(m['precision']):>9}  {_fmt(m['recall']):>6}  {_fmt(m['f1']):>5}")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    cell = max([len(str(v)) for row in report["confusion_matrix"] for v in row] + [3])
    short = [n[:cell + 3] for n in names]
    lines.append(" " * width + "  " + " ".join(s.rjust(max(cell, len(s))) for s in short))
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(name.ljust(width) + "  " + " ".join(str(v).rjust(max(cell, len(s))) for v, s in zip(row, short)))
    if report["most_confident_errors"]:
        lines.append("most confidently wrong")
        for e in report["most_confident_errors"]:
            lines.append(f"  {e['confidence']:.3f} {e['predicted']} (true {e['true']})  {e['path']}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
