"""The learning-rate range test ("LR finder") for both phases of the two-phase fit.

The learning rate rises exponentially from `min_lr` to `max_lr` over `steps` batches while the loss is
recorded; the run stops once the (smoothed) loss has grown past `divergence` times its best. The
suggested rate is a tenth of the *edge*: the largest rate at which the smoothed loss is still within
20% of its minimum (Smith's and fastai's "minimum / 10" rule, made robust to a flat start, where the
minimum itself is noise; the first tenth of the ramp is not searched): close to the fastest rate that still learns,
safely below where training breaks. The steepest-descent rate is recorded too (`steepest`).
Phase 1 is measured on the head (on cached features when given); phase 2 after a short head training
at the phase-1 suggestion, with the top blocks unfrozen, as `fine_tune` would run it. The model's
weights are restored afterwards: the finder changes nothing.

Examples:
    >>> from tl_keras.tuning.lr_finder import find_learning_rates
    >>> found = find_learning_rates(model, train_ds, unfreeze_blocks=2)  # doctest: +SKIP
    >>> found.suggestions  # doctest: +SKIP
    {'phase 1': 0.0035, 'phase 2': 0.00021}
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from tl_keras.training.caches import FeatureSet, head_model
from tl_keras.training.checkpoint import build_optimizer
from tl_keras.training.compile import compile_for_phase, layerwise_multipliers
from tl_keras.utils.checks import require_int


@dataclasses.dataclass
class RangeTest:
    """One range test: the rates tried, the loss at each (raw and smoothed), and the suggestion."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    steepest: float
    stopped_early: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LRFindResult:
    """Range tests by phase (`"phase 1"`, `"phase 2"`) and their suggested learning rates."""

    tests: dict[str, RangeTest]

    @property
    def suggestions(self) -> dict[str, float]:
        return {phase: test.suggestion for phase, test in self.tests.items()}

    def to_dict(self) -> dict:
        return {"suggestions": self.suggestions, "tests": {k: v.to_dict() for k, v in self.tests.items()}}


def suggest(learning_rates: list[float], smoothed: list[float], tolerance: float = 0.2) -> float:
    """A tenth of the largest rate, from the smoothed loss's minimum on, at which the loss is still
    within `tolerance` (relative) of that minimum: past it, the loss takes off for good. The first
    tenth of the ramp (at least 3 steps) is not searched for the minimum: the moving average has
    seen too few batches there, and one easy batch would pass for the minimum."""
    loss = np.asarray(smoothed, dtype=float)
    warmup = max(3, len(loss) // 10)
    if len(loss) <= warmup:
        warmup = 0
    best = warmup + int(np.nanargmin(loss[warmup:]))
    limit = loss[best] * (1 + tolerance)
    edge = max(k for k in range(best, len(loss)) if np.isfinite(loss[k]) and loss[k] <= limit)
    return float(learning_rates[edge] / 10)


def steepest(learning_rates: list[float], smoothed: list[float], skip: int = 3) -> float:
    """The rate where the smoothed loss falls fastest against log(rate), before its minimum."""
    lrs, loss = np.log10(np.asarray(learning_rates)), np.asarray(smoothed)
    end = int(np.argmin(loss)) + 1
    start = min(skip, max(0, end - 2))
    if end - start < 2:
        return float(learning_rates[max(0, end - 1)] / 10)  # no descent seen: a tenth of the best point
    slopes = np.gradient(loss[start:end], lrs[start:end])
    return float(10 ** lrs[start + int(np.argmin(slopes))])


def range_test(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.9,
    divergence: float = 4.0,
    lr_multipliers: dict[int, float] | None = None,
) -> RangeTest:
    """Runs one exponential learning-rate ramp on `model` (trainable variables as they are set).

    The model is compiled here (Adam, as `fine_tune` compiles it) and its weights are left as the ramp
    ends them: callers restore them (`find_learning_rates` does).
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"Need 0 < min_lr < max_lr. Received: min_lr={min_lr!r}, max_lr={max_lr!r}")
    require_int("steps", steps, 5)
    compile_for_phase(model, min_lr, lr_multipliers=lr_multipliers)
    build_optimizer(model)
    ratio = max_lr / min_lr
    rates, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    batches = iter(dataset.repeat())
    stopped = False
    for step in range(steps):
        rate = min_lr * ratio ** (step / (steps - 1))
        model.optimizer.learning_rate = rate
        x, y = next(batches)
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        average = smoothing * average + (1 - smoothing) * loss
        value = average / (1 - smoothing ** (step + 1))  # bias-corrected moving average
        rates.append(rate)
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(value) or (step >= 5 and value > divergence * best):
            stopped = True
            break
    return RangeTest(rates, losses, smoothed, suggest(rates, smoothed), steepest(rates, smoothed), stopped)


def find_learning_rates(
    model: keras.Model,
    train_data: tf.data.Dataset,
    *,
    features: FeatureSet | None = None,
    unfreeze_blocks: int | str | None = None,
    layer_decay: float | None = None,
    phases: tuple[int, ...] = (1, 2),
    head_epochs: int = 2,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
) -> LRFindResult:
    """Range tests for phase 1 (the head, backbone frozen) and phase 2 (top blocks unfrozen).

    Args:
        model: a `tl_keras.ImageClassifier`.
        train_data: the training dataset (`(images, labels)` batches).
        features: cached features of the same images: phase 1 (and the head training before phase 2)
            then runs on them, much faster. Defaults to None.
        unfreeze_blocks: blocks unfrozen for the phase-2 test. Defaults to the model's default.
        layer_decay: discriminative learning rates in the phase-2 test, as `fine_tune` takes it.
        phases: which phases to test. Defaults to both.
        head_epochs: epochs the head trains (at the phase-1 suggestion, or 1e-3) before the phase-2
            test, so it starts where `fine_tune`'s phase 2 would. Defaults to 2.
        min_lr, max_lr, steps: the ramp. Defaults 1e-7, 1, 100 batches (the data repeats as needed).

    Returns:
        An `LRFindResult`; the model's weights are as they were before the call.
    """
    if not set(phases) <= {1, 2} or not phases:
        raise ValueError(f"`phases` must be a non-empty subset of (1, 2). Received: phases={phases!r}")
    backbone = model.backbone
    saved = [v.numpy() for v in model.weights]

    def restore() -> None:
        for variable, value in zip(model.weights, saved):
            variable.assign(value)

    unfreeze = model.default_unfreeze_blocks if unfreeze_blocks is None else unfreeze_blocks
    ramp = dict(min_lr=min_lr, max_lr=max_lr, steps=steps)
    tests: dict[str, RangeTest] = {}
    head, head_data = model, train_data
    if features is not None:
        head, head_data = head_model(model), features.datasets()[0]
    try:
        backbone.set_trainable_blocks(0)
        if 1 in phases:
            tests["phase 1"] = range_test(head, head_data, **ramp)
            restore()
        if 2 in phases:
            if head_epochs:
                compile_for_phase(head, tests["phase 1"].suggestion if "phase 1" in tests else 1e-3)
                head.fit(head_data, epochs=head_epochs, verbose=0, shuffle=False)  # the dataset shuffles, seeded
            backbone.set_trainable_blocks(unfreeze)
            multipliers = layerwise_multipliers(model, layer_decay) if layer_decay is not None else None
            tests["phase 2"] = range_test(model, train_data, lr_multipliers=multipliers, **ramp)
    finally:
        backbone.set_trainable_blocks(0)
        restore()
    return LRFindResult(tests)
