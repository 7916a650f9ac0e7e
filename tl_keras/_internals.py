"""Every private TensorFlow / Keras API tl_keras touches, each behind a guard.

A private API can change in any release. Each accessor here checks that the API is still there and
has the shape tl_keras was tested with; if not, it raises `InternalAPIError` naming the API, the
TensorFlow and Keras versions running and the tested range, with what to do. No other module of
tl_keras imports a private TensorFlow module or calls a private method.

>>> from tl_keras._internals import versions
>>> sorted(versions())
['keras', 'tensorflow']
"""

from __future__ import annotations

import importlib
from typing import Any

# The ranges tl_keras' private uses were tested with; setup.cfg declares the same.
TESTED_TENSORFLOW = ((2, 16), (2, 22))  # [low, high)
TESTED_KERAS = ((3, 11), (3, 16))  # [low, high)


class InternalAPIError(RuntimeError):
    """A private TensorFlow/Keras API tl_keras relies on is missing or changed in this release."""


def versions() -> dict[str, str]:
    """The running TensorFlow and Keras versions."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def _range(bounds) -> str:
    (a, b), (c, d) = bounds
    return f">={a}.{b},<{c}.{d}"


def _fail(api: str, err: BaseException | None = None) -> InternalAPIError:
    running = versions()
    detail = f" ({type(err).__name__}: {err})" if err else ""
    return InternalAPIError(
        f"tl_keras relies on the private API {api}, which this TensorFlow {running['tensorflow']} / "
        f"Keras {running['keras']} does not provide as expected{detail}. tl_keras is tested with "
        f"tensorflow{_range(TESTED_TENSORFLOW)} and keras{_range(TESTED_KERAS)}: install those "
        f"(pip install \"tensorflow{_range(TESTED_TENSORFLOW)}\" \"keras{_range(TESTED_KERAS)}\"), "
        "or report the versions at the project's issue tracker."
    )


def check_keras_version(version: str | None = None, api: str = "keras.Model._maybe_symbolic_build") -> None:
    """Fails when the running Keras is outside `TESTED_KERAS`, for overrides of private Keras methods
    whose shape other releases may not share."""
    import keras

    version = version or keras.__version__
    try:
        running = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        running = (0, 0)
    low, high = TESTED_KERAS
    if not low <= running < high:
        raise InternalAPIError(
            f"tl_keras overrides the private Keras method {api}, tested with Keras {_range(TESTED_KERAS)} "
            f"only; this is Keras {version}. Install a tested release (pip install \"keras{_range(TESTED_KERAS)}\")"
            " or train without MultiWorkerMirroredStrategy."
        )


def function_def_to_graph_def(fdef) -> tuple[Any, dict]:
    """`tensorflow.python.framework.function_def_to_graph.function_def_to_graph_def`: a FunctionDef
    as a GraphDef and its name map (used to inline a SavedModel's nested calls)."""
    api = "tensorflow.python.framework.function_def_to_graph.function_def_to_graph_def"
    try:
        module = importlib.import_module("tensorflow.python.framework.function_def_to_graph")
        convert = module.function_def_to_graph_def
    except (ImportError, AttributeError) as err:
        raise _fail(api, err) from err
    return convert(fdef)


def optimizer_variable_index(optimizer, variable) -> int:
    """`keras.optimizers.Optimizer._get_variable_index`: the slot index of a trained variable."""
    method = getattr(optimizer, "_get_variable_index", None)
    if method is None:
        raise _fail("keras.optimizers.Optimizer._get_variable_index")
    return method(variable)


def in_multi_worker_mode(strategy) -> bool:
    """`MultiWorkerMirroredStrategy.extended._in_multi_worker_mode()`: whether the strategy spans
    several workers (a one-worker cluster does not)."""
    method = getattr(strategy.extended, "_in_multi_worker_mode", None)
    if method is None:
        raise _fail("tf.distribute.MultiWorkerMirroredStrategy.extended._in_multi_worker_mode")
    return bool(method())


def dataset_inputs(dataset) -> list:
    """`tf.data.Dataset._inputs()`: the datasets a dataset was made from (`ds.map(f)` -> `[ds]`)."""
    method = getattr(dataset, "_inputs", None)
    if method is None:
        raise _fail("tf.data.Dataset._inputs")
    return list(method())


def layer_inputs(layer) -> list:
    """The symbolic tensors a layer of a functional Keras model was called on
    (`Layer._inbound_nodes[*].input_tensors`), in call order."""
    import keras

    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes is None:
        raise _fail("keras.layers.Layer._inbound_nodes")
    return [t for node in nodes for t in keras.tree.flatten(node.input_tensors)]


def producer(tensor):
    """The layer that produced a symbolic Keras tensor (`KerasTensor._keras_history.operation`)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or not hasattr(history, "operation"):
        raise _fail("keras.KerasTensor._keras_history")
    return history.operation
