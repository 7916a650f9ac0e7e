"""How phase 1's softmax head starts (`head_init`): from the ridge classifier of the cached features,
from class prototypes, or from Keras' random weights.

`"ridge"` (what the default, `"auto"`, chooses) starts from the least-squares classifier of the cached, un-augmented training
features (`tl_keras.utils.ridge.fit_ridge`: standardised features, one-hot targets, the penalty
chosen by leave-one-out on the training images), its scores scaled by the softmax temperature that fits
the same leave-one-out scores best. Neither choice looks at the val images. Training then goes on
from there as usual (Adam, early stopping on `val_loss`). A softmax head from random weights, stopped
where its val loss is lowest, ends short of what the features can say: on the five shared sets (3
seeds) the ridge start's trained head scores 0.7-3.7 points more (docs/benchmarks/accuracy.md).

`"prototypes"` starts from the nearest-class-mean classifier instead: class `c`'s weights are its mean
feature vector `m_c` over the shared per-dimension variance `s2` of the features around their class
means, its bias `-|m_c|^2 / (2 s2)` (the log-likelihood of a Gaussian per class with one shared
spherical covariance, as few-shot learning's prototype classifiers use). On 35 classes of 6 images
(benchmarks/few_shot.py, 3 seeds) it raised the head's val accuracy from 0.610 to 0.632 but the final
one moved -0.002 +- 0.075.

Both need phase 1's cached features and a plain softmax head: `"auto"` (the default) starts from the
ridge classifier where it can, else (a head with hidden layers, multi-label data, no cached features)
from random weights; `"ridge"` or `"prototypes"` set where they cannot is an error.

Examples:
    >>> from tl_keras.config import TrainConfig
    >>> head_init_for(TrainConfig(), counts=[40, 35], hidden_units=(), multi_label=False)
    ('ridge', 'the default (auto)')
    >>> head_init_for(TrainConfig(), counts=None, hidden_units=(), multi_label=False)[0]
    'random'
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tl_keras.config import TrainConfig
from tl_keras.distribute import workers_mean
from tl_keras.training.caches import FeatureSet
from tl_keras.utils.ridge import fit_ridge, softmax_temperature

# A sample this large keeps the ridge start's SVD to seconds (20,000 x 1,280 features).
MAX_RIDGE_ROWS = 20_000


def head_init_for(config: TrainConfig, counts: Sequence[int] | None, hidden_units: Sequence[int] | None,
                  multi_label: bool) -> tuple[str, str]:
    """How phase 1's head starts (`"ridge"`, `"prototypes"` or `"random"`), and why; `counts` are the
    training images per class in the cached phase-1 features (None: phase 1 caches none)."""
    if config.head_init == "random":
        return "random", "set: head_init='random'"
    why = ("multi-label data" if multi_label else "the head has hidden layers" if hidden_units
           else "phase 1 caches no features (cache_features=False or head_epochs=0)" if counts is None else None)
    if why is None:
        return ("ridge", "the default (auto)") if config.head_init == "auto" else (config.head_init, f"set: head_init={config.head_init!r}")
    if config.head_init != "auto":
        raise ValueError(f"head_init={config.head_init!r} sets a softmax head's weights from the cached phase-1 "
                         f"features; here {why}. Use head_init='random' (or 'auto').")
    return "random", f"a ridge start does not apply: {why}"


def head_init_of(config: TrainConfig, model: keras.Model, features: FeatureSet | None) -> tuple[str, str]:
    """`head_init_for` for a classifier and the phase-1 features it trains on (None: not cached)."""
    multi_label = bool(getattr(model, "multi_label", False))
    counts = None if features is None or multi_label else np.bincount(features.train_labels, minlength=int(model.output.shape[-1]))
    return head_init_for(config, counts, getattr(model, "hidden_units", ()), multi_label)


def _seen_features(model: keras.Model, features: FeatureSet) -> np.ndarray:
    """The cached (un-augmented) training features as the `predictions` layer sees them (after `feature_norm`)."""
    x = features.train[0].astype(np.float64)
    try:
        return np.asarray(model.get_layer("feature_norm")(x.astype(np.float32)), np.float64)
    except ValueError:
        return x  # no normalisation layer: the layer sees the raw features


def _assign(model: keras.Model, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Sets the `predictions` layer; in a cluster, to the workers' mean (each computed it from its own features)."""
    layer = model.get_layer("predictions")
    strategy = model.distribute_strategy
    kernel, bias = workers_mean(strategy, kernel), workers_mean(strategy, bias)
    with strategy.scope():
        layer.kernel.assign(kernel.astype(np.float32))
        layer.bias.assign(bias.astype(np.float32))


def init_from_prototypes(model: keras.Model, features: FeatureSet) -> None:
    """Sets the classifier's `predictions` layer to the class-prototype classifier of the cached
    (un-augmented) training features, seen as the layer sees them (after `feature_norm`)."""
    x = _seen_features(model, features)
    labels = np.asarray(features.train_labels)
    num_classes = int(model.get_layer("predictions").units)
    means = np.stack([x[labels == c].mean(0) if np.any(labels == c) else np.zeros(x.shape[1]) for c in range(num_classes)])
    spread = float(np.mean((x - means[labels]) ** 2)) + 1e-12  # per dimension, shared by the classes
    _assign(model, means.T / spread, -(means**2).sum(1) / (2 * spread))


def init_from_ridge(model: keras.Model, features: FeatureSet, max_rows: int = MAX_RIDGE_ROWS,
                    class_weight: dict | None = None) -> dict:
    """Sets the classifier's `predictions` layer to the ridge classifier of the cached (un-augmented)
    training features (up to `max_rows` of them, a seeded sample), its scores times the softmax
    temperature fitted on their leave-one-out scores; `class_weight` (class -> weight, as `fit` takes
    it) weighs each image as training will. Returns what it measured: the penalty, the leave-one-out
    accuracy and the temperature."""
    x, labels = _seen_features(model, features), np.asarray(features.train_labels)
    if len(x) > max_rows:
        rows = np.sort(np.random.default_rng(features.seed).permutation(len(x))[:max_rows])
        x, labels = x[rows], labels[rows]
    weights = np.array([max(float(class_weight.get(int(c), 1.0)), 1e-6) for c in labels]) if class_weight else None
    fit = fit_ridge(x, labels, int(model.get_layer("predictions").units), sample_weight=weights)
    temperature = softmax_temperature(fit.loo_scores, labels, weights)
    _assign(model, fit.weights * temperature, fit.bias * temperature)
    return {"penalty": fit.penalty, "loo_accuracy": round(fit.loo_accuracy, 4), "temperature": round(temperature, 3),
            "rows": len(x)}


def start_head(model: keras.Model, config: TrainConfig, features: FeatureSet | None) -> dict:
    """Starts phase 1's head as `config.head_init` says (`head_init_of`); returns `{"chosen", "reason"}`
    and, for a ridge start, what it measured (`init_from_ridge`)."""
    chosen, reason = head_init_of(config, model, features)
    measured = {}
    if chosen == "prototypes":
        init_from_prototypes(model, features)
    elif chosen == "ridge":
        measured = init_from_ridge(model, features, class_weight=config.class_weight)
    return {"chosen": chosen, "reason": reason, **measured}
