"""A ridge classifier solved in closed form, its penalty chosen by leave-one-out on the training rows.

Least squares on standardised features with one-hot targets: the linear probe of the advisor and of
the symmetry check, and the weights phase 1's head can start from (`head_init="ridge"`). One thin
SVD of the standardised rows gives every penalty of a grid and each row's leave-one-out scores
(the closed form `(fitted - h_i * target) / (1 - h_i)`, `h_i` the hat matrix's diagonal), so the
penalty is chosen without holding out any row and without looking at validation data.

The penalty is a multiple of the mean squared norm of a standardised row (`trace(A A^T) / n`), so one
grid fits features of any width and scale.

>>> import numpy as np
>>> from tl_keras.utils.ridge import fit_ridge
>>> rng = np.random.default_rng(0)
>>> labels = np.repeat([0, 1, 2], 20)
>>> features = rng.normal(size=(60, 8)) + 3 * np.eye(3, 8)[labels]
>>> fit = fit_ridge(features, labels, 3)
>>> bool(fit.loo_accuracy > 0.9), bool((fit.predict(features) == labels).mean() > 0.9)
(True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

PENALTIES = (0.01, 0.1, 1.0, 10.0)


@dataclasses.dataclass
class RidgeFit:
    """A fitted ridge classifier: `scores(x) = x @ weights + bias` on raw (unstandardised) features.

    Attributes:
        weights: float64 `[dim, classes]`.
        bias: float64 `[classes]`.
        penalty: the penalty chosen (a multiple of the mean squared norm of a standardised row).
        loo_scores: float64 `[rows, classes]`: each training row scored by the fit without it.
        loo_accuracy: the accuracy of `loo_scores` on the training labels.
    """

    weights: np.ndarray
    bias: np.ndarray
    penalty: float
    loo_scores: np.ndarray
    loo_accuracy: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float64) @ self.weights + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features).argmax(1)


def fit_ridge(features: np.ndarray, labels: np.ndarray, num_classes: int,
              penalties: Sequence[float] = PENALTIES, sample_weight: np.ndarray | None = None) -> RidgeFit:
    """The ridge classifier of `features` `[rows, dim]` and integer `labels`, at the penalty of
    `penalties` with the fewest leave-one-out errors (the smallest such penalty on a tie).
    `sample_weight` (one per row, > 0) weighs each row's squared error and its leave-one-out error,
    as Keras' `class_weight` weighs its loss."""
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels) or len(x) < 2:
        raise ValueError(f"`features` must be [rows >= 2, dim] with one label per row. Received: features "
                         f"{x.shape}, labels {labels.shape}")
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != (len(x),) or not np.all(w > 0):
        raise ValueError(f"`sample_weight` must hold one weight > 0 per row ({len(x)}). Received: shape {w.shape}")
    root = np.sqrt(w / w.mean())[:, None]
    mean, std = x.mean(0), x.std(0) + 1e-6
    a = root * (x - mean) / std  # weighted least squares: each row scaled by the root of its weight
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    squares = s**2
    scale = squares.sum() / len(a)
    targets = root * np.eye(num_classes)[labels]
    projected = u.T @ targets
    best = None
    for penalty in penalties:
        shrink = squares / (squares + penalty * scale)
        hat = (u**2) @ shrink
        loo = (u @ (shrink[:, None] * projected) - hat[:, None] * targets) / ((1.0 - hat)[:, None] * root)
        errors = float(np.sum(w * (loo.argmax(1) != labels)))
        if best is None or errors < best[0]:
            best = (errors, penalty, loo)
    errors, penalty, loo = best
    standardised = vt.T @ ((s / (squares + penalty * scale))[:, None] * projected)
    weights = standardised / std[:, None]
    return RidgeFit(weights, -(mean / std) @ standardised, float(penalty), loo, 1.0 - errors / w.sum())


def softmax_temperature(scores: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """The factor `t` that makes `softmax(t * scores)` fit `labels` best (lowest mean cross-entropy,
    weighted by `sample_weight`), searched on a log grid from 0.1 to 1000; pass held-out scores
    (`RidgeFit.loo_scores`)."""
    rows = np.arange(len(labels))
    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, np.float64)

    def loss(t: float) -> float:
        z = t * scores
        z = z - z.max(1, keepdims=True)
        return float(np.average(np.log(np.exp(z).sum(1)) - z[rows, labels], weights=w))

    grid = np.geomspace(0.1, 1000.0, 161)
    return float(grid[int(np.argmin([loss(t) for t in grid]))])
