"""Where a classifier fails: top-k accuracy, per-class precision/recall/F1, confusion matrix, and the
most confidently wrong images. Plain NumPy on predicted probabilities; no TensorFlow, no plotting.

Examples:
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
    """The report as aligned text: summary, per-class table, confusion matrix, confident errors (a
    multi-label report: `format_multi_label_report`)."""
    if report.get("multi_label"):
        return format_multi_label_report(report, title)
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


# Multi-label data (one 0/1 flag per class and image; see tl_keras.data.label_files).

def best_thresholds(flags: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per class, the probability threshold with the best F1 on these images (validation images:
    `train` chooses them there and stores them in the export). Candidates are the midpoints between
    the class's sorted distinct probabilities; among equal F1 the one nearest 0.5 wins. A class
    without a positive image keeps 0.5."""
    flags, probabilities = np.asarray(flags) >= 0.5, np.asarray(probabilities, dtype=np.float64)
    thresholds = []
    for c in range(probabilities.shape[1]):
        truth, p = flags[:, c], probabilities[:, c]
        if not truth.any():
            thresholds.append(0.5)
            continue
        values = np.unique(p)
        candidates = np.concatenate([[values[0] / 2], (values[:-1] + values[1:]) / 2, [(values[-1] + 1) / 2]])
        predicted = p[None, :] >= candidates[:, None]
        tp = (predicted & truth).sum(1)
        f1 = 2 * tp / np.maximum(predicted.sum(1) + truth.sum(), 1)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        thresholds.append(float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]]))
    return thresholds


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve as the mean of the precision at each positive's rank
    (ties ranked together, scikit-learn's definition); None without a positive."""
    truth = np.asarray(truth) >= 0.5
    if not truth.any():
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    scores, truth = np.asarray(scores, dtype=np.float64)[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]  # the end of each group of ties
    tp = np.cumsum(truth)[last]
    precision, recall = tp / (last + 1), tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multi_label_report(
    flags: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | None = None,
    *,
    paths: Sequence[str] | None = None,
    max_errors: int = DEFAULT_ERRORS_LISTED,
) -> dict:
    """Metrics of per-class probabilities `[n, classes]` against 0/1 `flags` `[n, classes]`, each class
    predicted where its probability reaches its threshold (default 0.5).

    Returns a JSON-able dict: `multi_label` True, `num_images`, `subset_accuracy` (every flag of an
    image right), `micro_f1` (over all image-class pairs), `macro_f1` (the mean of the classes' F1),
    `mean_average_precision` (mAP: the mean of the classes' AP, threshold-free), `per_class` (name ->
    `precision`, `recall`, `f1`, `average_precision`, `threshold`, `support`), `label_cardinality`
    (labels per image, true and predicted) and `most_confident_errors` (images whose predicted labels
    differ from the true ones, by the largest flag error: `path`, `true`, `predicted`, `error`).
    `accuracy` is `subset_accuracy`, for readers of single-label reports.
    """
    flags = np.asarray(flags, dtype=np.float64) >= 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != flags.shape or flags.ndim != 2 or flags.shape[1] != len(class_names):
        raise ValueError(f"`flags` and `probabilities` must both have shape [num_images, {len(class_names)}]. "
                         f"Received: {list(flags.shape)} and {list(probabilities.shape)}")
    thresholds = np.full(len(class_names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    predicted = probabilities >= thresholds[None, :]
    per_class, f1s, aps = {}, [], []
    for c, name in enumerate(class_names):
        tp, pred, true = int((predicted[:, c] & flags[:, c]).sum()), int(predicted[:, c].sum()), int(flags[:, c].sum())
        precision, recall = (tp / pred if pred else None), (tp / true if true else None)
        f1 = None if not true else (2 * tp / (pred + true))
        ap = average_precision(flags[:, c], probabilities[:, c])
        per_class[name] = {"precision": _num(precision), "recall": _num(recall), "f1": _num(f1), "average_precision": ap,
                           "threshold": float(thresholds[c]), "support": true}
        f1s += [f1] if f1 is not None else []
        aps += [ap] if ap is not None else []
    tp, pred, true = (predicted & flags).sum(), predicted.sum(), flags.sum()
    wrong = np.flatnonzero((predicted != flags).any(axis=1))
    error = np.abs(probabilities - flags).max(axis=1)
    wrong = wrong[np.argsort(-error[wrong], kind="stable")][:max_errors]
    subset = float((predicted == flags).all(axis=1).mean()) if len(flags) else None
    return {
        "multi_label": True,
        "num_images": int(len(flags)),
        "subset_accuracy": subset,
        "accuracy": subset,
        "micro_f1": float(2 * tp / (pred + true)) if pred + true else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "mean_average_precision": float(np.mean(aps)) if aps else None,
        "per_class": per_class,
        "label_cardinality": {"true": float(flags.sum(1).mean()) if len(flags) else None,
                              "predicted": float(predicted.sum(1).mean()) if len(flags) else None},
        "most_confident_errors": [
            {"path": paths[i] if paths is not None else None,
             "true": [n for n, f in zip(class_names, flags[i]) if f],
             "predicted": [n for n, f in zip(class_names, predicted[i]) if f],
             "error": float(error[i])}
            for i in wrong
        ],
    }


def format_multi_label_report(report: dict, title: str = "") -> str:
    """A multi-label report as aligned text: summary, per-class table, the images most wrong."""
    names = list(report["per_class"])
    width = max([len(n) for n in names] + [12])
    lines = [title] if title else []
    lines.append(f"images {report['num_images']}   mAP {_fmt(report['mean_average_precision'])}   micro F1 "
                 f"{_fmt(report['micro_f1'])}   macro F1 {_fmt(report['macro_f1'])}   subset accuracy {_fmt(report['subset_accuracy'])}")
    lines.append(f"{'class'.ljust(width)}  precision  recall     f1     AP  threshold  support")
    for name, m in report["per_class"].items():
        lines.append(f"{name.ljust(width)}  {_fmt(m['precision']):>9}  {_fmt(m['recall']):>6}  {_fmt(m['f1']):>5}  "
                     f"{_fmt(m['average_precision']):>5}  {m['threshold']:>9.3f}  {m['support']:>7}")
    if report["most_confident_errors"]:
        lines.append("most wrong (largest probability error)")
        for e in report["most_confident_errors"]:
            lines.append(f"  {e['error']:.3f} predicted {';'.join(e['predicted']) or '-'} (true {';'.join(e['true']) or '-'})  {e['path']}")
    return "\n".join(lines)
