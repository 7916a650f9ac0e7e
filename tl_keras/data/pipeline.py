"""The tf.data pipelines of a split: evaluation (file order, no augmentation) and training
(shuffled and augmented from `(seed, epoch)`, with an epoch record: `tl_keras.data.epochs`), batched,
sharded by data under tf.distribute, deterministic, prefetched, with tf.data autotuning off."""

from __future__ import annotations

import tensorflow as tf

from tl_keras.data.augment import StrongAugment, augment_image, augment_policy
from tl_keras.data.epochs import epoch_indices, record_epoch
from tl_keras.data.samples import Split
from tl_keras.images.codec import decode_streamed, orient
from tl_keras.utils.checks import require_int

PREFETCH_BATCHES = 2


def finish(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batch, shard by data under tf.distribute, keep element order deterministic, prefetch.

    tf.data's autotuning is off: Keras makes a new iterator every epoch, and with autotuning on,
    tearing the last one down held up the first step of most phase-2 epochs (1.3 s each in
    `benchmarks/epoch_stalls.py`, up to 4-5 s in whole runs). Parallel maps asked for `AUTOTUNE`
    then run on min(16, cores) threads, and `PREFETCH_BATCHES` batches are prepared ahead."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    options.autotune.enabled = False
    return ds.batch(batch_size).with_options(options).prefetch(PREFETCH_BATCHES)


def make_dataset(
    split: Split,
    image_size: int,
    *,
    batch_size: int = 32,
    training: bool = False,
    augment: bool | str = True,
    shuffle: bool | None = None,
    seed: int = 42,
    crop_to_aspect_ratio: bool = True,
    exif_orientation: bool = True,
) -> tf.data.Dataset:
    """Builds the tf.data pipeline for a split (see `ImageFolder.dataset`).

    Training datasets carry an epoch counter (`epoch_variable`): their order and augmentation are a
    function of `(seed, epoch)` only.
    """
    require_int("batch_size", batch_size, 1)
    labels = split.labels
    if shuffle is None:
        shuffle = training
    if not training and not shuffle:  # evaluation: file order, no augmentation
        if split.images is not None:
            ds = tf.data.Dataset.from_tensor_slices((split.images, labels))
        else:
            ds = tf.data.Dataset.from_tensor_slices((split.paths, labels, split.orientations)).map(
                lambda p, y, o: (orient(decode_streamed(tf.io.read_file(p), image_size, crop_to_aspect_ratio, exif_orientation), o), y),
                num_parallel_calls=tf.data.AUTOTUNE)
        return finish(ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE), batch_size)

    if split.images is not None:
        pixels = tf.constant(split.images)

        def load(i):
            return tf.gather(pixels, i)
    else:
        paths = tf.constant(split.paths if split.paths else [""], tf.string)
        orientations = tf.constant(split.orientations if split.paths else [1], tf.int32)

        def load(i):  # turned upright as the checked, held-in-memory pixels would be
            image = decode_streamed(tf.io.read_file(tf.gather(paths, i)), image_size, crop_to_aspect_ratio, exif_orientation)
            return orient(image, tf.gather(orientations, i))

    label_table = tf.constant(labels)
    policy = augment_policy(augment) if training else "none"

    def element(i, e):
        image = augment_image(tf.cast(load(i), tf.float32), tf.cast(tf.stack([seed + 7919 * e, i]), tf.int32), image_size, policy)
        return image, tf.gather(label_table, i), i, e

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    ds = epoch_indices(len(split), seed, shuffle, epoch).map(element, num_parallel_calls=tf.data.AUTOTUNE)
    if policy.startswith("strong"):
        ds = ds.map(StrongAugment(seed))  # one call at a time: its calls share a random state
    ds = finish(ds.map(lambda image, label, *_: (image, label)), batch_size)
    record_epoch(ds, epoch)
    return ds
