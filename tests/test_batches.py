"""`tl_keras.utils.batches.run_batches`: stacking, and one trace of a `tf.function` per dataset."""

import numpy as np
import tensorflow as tf

from tl_keras.utils.batches import run_batches, slices


def _pairs(n: int, batch_size: int) -> tf.data.Dataset:
    x = np.arange(n * 3, dtype="float32").reshape(n, 3)
    return tf.data.Dataset.from_tensor_slices((x, np.zeros(n, "int32"))).batch(batch_size)


def _never_called(x):  # pragma: no cover - no batch to call it with
    raise AssertionError("called without a batch")


def test_a_function_over_a_dataset_is_traced_once_whatever_the_last_batch():
    doubled = tf.function(lambda x: x * 2.0, reduce_retracing=True)
    out = run_batches(doubled, _pairs(10, 4), 3, inputs_only=True)  # batches of 4, 4 and 2
    np.testing.assert_array_equal(out, np.arange(30, dtype="float32").reshape(10, 3) * 2)
    assert doubled.experimental_get_tracing_count() == 1
    # Another dataset of the same spec reuses the trace; without one (arrays), shapes decide as usual.
    run_batches(doubled, _pairs(7, 4), 3, inputs_only=True)
    assert doubled.experimental_get_tracing_count() == 1
    counted = tf.function(lambda x: x + 1.0, reduce_retracing=True)
    out = run_batches(counted, slices(np.ones((5, 3), "float32"), 4), 3)
    assert out.shape == (5, 3) and counted.experimental_get_tracing_count() == 2  # 4 rows, then 1


def test_whole_elements_plain_functions_and_no_batches():
    summed = tf.function(lambda pair: tf.reduce_sum(pair[0], axis=1, keepdims=True) + tf.cast(pair[1][:, None], tf.float32))
    out = run_batches(summed, _pairs(5, 2), 1)  # inputs_only=False: the function gets each whole element
    np.testing.assert_array_equal(out.ravel(), [3, 12, 21, 30, 39])
    assert summed.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(run_batches(lambda x: x.sum(1, keepdims=True), slices(np.ones((3, 2)), 2), 1).ravel(), [2, 2, 2])
    assert run_batches(_never_called, [], (7, 7, 160)).shape == (0, 7, 7, 160)
