"""Choosing the tf.distribute strategy: one device, several GPUs, or several machines via TF_CONFIG.

Examples:
    >>> from tl_keras.distribute import get_strategy
    >>> strategy = get_strategy()          # default strategy on a CPU-only machine
    >>> strategy.num_replicas_in_sync
    1
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from tl_keras._internals import TESTED_KERAS, check_keras_version  # noqa: F401  (TESTED_KERAS: its home was here)
from tl_keras._internals import in_multi_worker_mode as _in_multi_worker_mode
from tl_keras.config import DISTRIBUTIONS

STRATEGY_NAMES = DISTRIBUTIONS
def _tf_config_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}. Received: TF_CONFIG={raw!r}") from err
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def get_strategy(strategy: str | tf.distribute.Strategy | None = "auto") -> tf.distribute.Strategy:
    """Returns the strategy to build and train under.

    Args:
        strategy: a `tf.distribute.Strategy` (returned as is), or one of
            - `"auto"` (default): `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster,
              `MirroredStrategy` when several GPUs are visible, the default strategy otherwise;
            - `"default"`: no distribution; `"mirrored"`: all local GPUs (or CPU);
            - `"multi-worker"`: `MultiWorkerMirroredStrategy` (reads `TF_CONFIG`).

    The global batch is the per-replica batch times `strategy.num_replicas_in_sync`.
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    strategy = strategy or "auto"
    if strategy == "custom":
        raise ValueError(
            "distribute='custom' records that a tf.distribute.Strategy object was passed to train(); a name "
            "cannot rebuild it: pass the object again, train(..., distribute=strategy)."
        )
    if strategy not in STRATEGY_NAMES:
        raise ValueError(f"`strategy` must be a tf.distribute.Strategy or one of {STRATEGY_NAMES}. Received: strategy={strategy!r}")
    if strategy == "auto":
        if _tf_config_workers() > 0:
            strategy = "multi-worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if strategy == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def distribution_name(strategy: tf.distribute.Strategy) -> str:
    """The `TrainConfig.distribute` name a strategy object is recorded under (`"custom"` when no name
    rebuilds it, e.g. a TPUStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "default"
    return "custom"


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (only the chief exports)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    cluster = config.get("cluster", {})
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster


def precision_policy(mixed_precision: bool) -> str:
    """The Keras dtype policy to build under: `"mixed_float16"` on GPU (`"mixed_bfloat16"` on TPU)
    when asked, `"float32"` otherwise. On CPU mixed precision is slower, not faster, so asking for it
    there warns and stays in float32."""
    if not mixed_precision:
        return "float32"
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16"
    warnings.warn("Mixed precision needs a GPU or TPU; none is visible, so training stays in float32.")
    return "float32"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under the Keras dtype policy `name`, then restores the previous global policy.

    Layers keep the policy they were built with; the classifier's output layer is always float32.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and _in_multi_worker_mode(strategy)


def workers_agree(strategy: tf.distribute.Strategy, value: int) -> bool:
    """Whether every worker holds the same integer `value` (one all-reduce; always True on one worker)."""
    if not in_multi_worker_mode(strategy):
        return True
    v = tf.constant([float(value), float(value) ** 2, 1.0], tf.float64)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(v)), axis=None).numpy()
    mean = total[0] / total[2]
    return abs(total[1] / total[2] - mean * mean) < 1e-9 and mean == value


def workers_mean(strategy: tf.distribute.Strategy, value: np.ndarray) -> np.ndarray:
    """`value` averaged over the workers (one all-reduce; `value` itself on one worker): weights each
    worker computed from its own copy of the data start every replica from the same values even if
    the machines' round-off differs."""
    if not in_multi_worker_mode(strategy):
        return value
    v = tf.constant(value, tf.float64)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(v)), axis=None)
    return total.numpy() / strategy.num_replicas_in_sync


class MultiWorkerFitMixin:
    """Makes Keras 3 `fit`/`evaluate` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Mix it in before `keras.Model`; every tl_keras model trained with `fit` does.
    """

    def _multi_worker(self) -> bool:
        return in_multi_worker_mode(self.distribute_strategy)

    def _as_vectors(self, logs: dict) -> dict:
        # Keras 3 reduces each log across workers with `strategy.reduce("MEAN", v, axis=0)`, which a
        # scalar has no axis for (keras-team/keras#20585). A 1-element vector per worker makes that
        # reduction the plain mean of the workers' values, a scalar again.
        if not self._multi_worker():
            return logs
        return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v for k, v in logs.items()}

    def train_step(self, data):
        return self._as_vectors(super().train_step(data))

    def test_step(self, data):
        return self._as_vectors(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # A private Keras method, overridden for the Keras range tl_keras is tested with only.
        # Keras 3 (keras-team/keras#20585) takes a sample batch for its symbolic build with
        # `strategy.reduce("MEAN", (images, labels))`; MultiWorkerMirroredStrategy cannot reduce a
        # tuple across workers, so `fit` fails before the first step. The build needs only shapes and
        # dtypes: hand it this worker's local batch instead, consumed exactly as Keras does.
        strategy = self.distribute_strategy
        if iterator is not None and self._multi_worker():
            check_keras_version()
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
