"""The epoch record of a training pipeline: which pass over the data is running.

A training pipeline (`make_dataset(training=True)`, the cached-feature pipelines, `mix_batches`)
draws its order and augmentation from `(seed, epoch)`, reading and advancing a counter each pass.
Setting the counter before a pass (`fine_tune` does at every epoch's start) makes epoch `e` see the
same data whatever ran before, so a resumed run repeats an uninterrupted one.

The counter is recorded against the dataset (`record_epoch`), not set on it as an attribute, and
`epoch_variable` finds it through any datasets made from that one: a `.map()`, `.batch()` or
`.prefetch()` of a tl_keras pipeline keeps exact resume.

>>> import tensorflow as tf
>>> counter = tf.Variable(0, dtype=tf.int64)
>>> ds = record_epoch(epoch_indices(4, seed=0, shuffle=True, epoch=counter), counter)
>>> epoch_variable(ds.map(lambda i, e: i)) is counter
True
"""

from __future__ import annotations

import weakref

import tensorflow as tf

from tl_keras._internals import dataset_inputs

# Before 0.2 the counter was set on the dataset under this attribute; a dataset that still carries
# it (set by older code) is found too.
EPOCH_ATTRIBUTE = "_tl_keras_epoch"
_RECORDS: "weakref.WeakKeyDictionary[tf.data.Dataset, tf.Variable]" = weakref.WeakKeyDictionary()


def record_epoch(dataset: tf.data.Dataset, epoch: tf.Variable) -> tf.data.Dataset:
    """Records `epoch` as the counter of `dataset` (and of every dataset made from it); returns it."""
    _RECORDS[dataset] = epoch
    return dataset


def epoch_variable(dataset: tf.data.Dataset) -> tf.Variable | None:
    """The epoch counter of a training pipeline, or of the pipeline a dataset was made from (None for
    others: evaluation data, a user's own datasets).

    Each pass over such a dataset draws its order and augmentation from `(seed, epoch)` and then
    advances the counter. Setting it before a pass (`tl_keras.fine_tune` does, at every epoch's start)
    makes epoch `e` see the same data whatever ran before: a resumed run repeats an uninterrupted one.
    """
    todo, seen = [dataset], set()
    while todo:
        ds = todo.pop()
        if id(ds) in seen:
            continue
        seen.add(id(ds))
        found = _RECORDS.get(ds) if _weakrefable(ds) else None
        found = found if found is not None else getattr(ds, EPOCH_ATTRIBUTE, None)
        if found is not None:
            return found
        if isinstance(ds, tf.data.Dataset):
            todo.extend(dataset_inputs(ds))
    return None


def _weakrefable(value) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


def epoch_indices(n: int, seed: int, shuffle: bool, epoch: tf.Variable) -> tf.data.Dataset:
    """`(index, epoch)` for one pass over `n` items: a permutation drawn from `(seed, epoch)` (or
    `0..n-1`), then the counter `epoch` advances. Stateless, so a pass depends only on its epoch."""

    def one_pass(_):
        e = epoch.assign_add(1) - 1
        if shuffle:
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), e]))
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(n)
        return tf.data.Dataset.from_tensor_slices((tf.cast(order, tf.int64), tf.fill([n], e)))

    return tf.data.Dataset.from_tensors(0).flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(n))
