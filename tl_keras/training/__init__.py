"""Step 3 of the flow: the two-phase fit.

`phases` (`fine_tune`: head on a frozen backbone, then the top blocks), `compile` (losses,
optimizers, per-phase compile), `callbacks`, `history` (`FineTuneHistory`), `caches` (features
and boundary activations computed once), `checkpoint` (resumable runs).

>>> from tl_keras.training import fine_tune, FineTuneHistory
"""

from tl_keras._lazy import lazy_names

_EXPORTS = {
    "BestEpoch": "tl_keras.training.callbacks",
    "EpochSeed": "tl_keras.training.callbacks",
    "FineTuneHistory": "tl_keras.training.history",
    "LayerwiseAdam": "tl_keras.training.compile",
    "SmoothedSparseCategoricalCrossentropy": "tl_keras.training.compile",
    "adapt_feature_norm": "tl_keras.training.phases",
    "balanced_class_weights": "tl_keras.training.compile",
    "compile_for_phase": "tl_keras.training.compile",
    "fine_tune": "tl_keras.training.phases",
    "label_accuracy": "tl_keras.training.compile",
    "layerwise_multipliers": "tl_keras.training.compile",
    "phase_schedule": "tl_keras.training.compile",
    "phase_two_depth": "tl_keras.training.phases",
    "subset_accuracy": "tl_keras.training.compile",
    "train_from_scratch": "tl_keras.training.phases",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
