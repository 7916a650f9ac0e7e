"""Private TensorFlow/Keras APIs: each behind a guard that fails with the API, the running versions
and the tested range, instead of an AttributeError deep in a run."""

import importlib

import keras
import pytest
import tensorflow as tf

from tl_keras import _internals
from tl_keras._internals import InternalAPIError


def _versions_named(message: str) -> bool:
    return f"TensorFlow {tf.__version__}" in message and f"Keras {keras.__version__}" in message


@pytest.mark.parametrize("call, api", [
    (lambda: _internals.optimizer_variable_index(object(), None), "_get_variable_index"),
    (lambda: _internals.dataset_inputs(object()), "tf.data.Dataset._inputs"),
    (lambda: _internals.in_multi_worker_mode(type("S", (), {"extended": object()})()), "_in_multi_worker_mode"),
    (lambda: _internals.layer_inputs(object()), "_inbound_nodes"),
    (lambda: _internals.producer(object()), "_keras_history"),
])
def test_a_missing_private_api_fails_naming_it_and_the_versions(call, api):
    with pytest.raises(InternalAPIError) as raised:
        call()
    message = str(raised.value)
    assert api in message and _versions_named(message) and "pip install" in message


def test_a_moved_private_module_fails_naming_it(monkeypatch):
    real = importlib.import_module

    def moved(name, *args):
        if name == "tensorflow.python.framework.function_def_to_graph":
            raise ImportError("No module named it")
        return real(name, *args)

    monkeypatch.setattr(_internals.importlib, "import_module", moved)
    with pytest.raises(InternalAPIError, match="function_def_to_graph_def") as raised:
        _internals.function_def_to_graph_def(None)
    assert _versions_named(str(raised.value))


def test_the_guards_pass_on_the_running_releases():
    ds = tf.data.Dataset.range(3)
    assert _internals.dataset_inputs(ds.map(lambda x: x))[0] is ds
    optimizer = keras.optimizers.Adam()
    variable = keras.Variable(1.0)
    optimizer.build([variable])
    assert _internals.optimizer_variable_index(optimizer, variable) == 0
    # in_multi_worker_mode runs on real clusters in tests/test_distribute.py (a strategy made here would
    # configure this process's collectives for every later test).
    _internals.check_keras_version()
    with pytest.raises(InternalAPIError, match="3.10.2"):
        _internals.check_keras_version("3.10.2")
