"""Reports on a trained model: `report` (per-class and multi-label reports), `tta` (flip
averaging), `plots` (matplotlib figures of a run).

>>> from tl_keras.evaluation import classification_report, format_report
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "DEFAULT_ERRORS_LISTED": "tl_keras.evaluation.report",
    "average_precision": "tl_keras.evaluation.report",
    "best_thresholds": "tl_keras.evaluation.report",
    "classification_report": "tl_keras.evaluation.report",
    "default_top_k": "tl_keras.evaluation.report",
    "format_multi_label_report": "tl_keras.evaluation.report",
    "format_report": "tl_keras.evaluation.report",
    "multi_label_report": "tl_keras.evaluation.report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
