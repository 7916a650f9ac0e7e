"""Training augmentation policies: `none`, `light` and `strong` (`TrainConfig.augment`, `--augment`).

- `light` (the default): a horizontal flip and a random square crop of 80-100% of the side, resized
  back: changes that keep any photo's class.
- `+turns` after either (`"light+turns"`, what `TrainConfig(symmetry="dihedral").augmentation` gives):
  then a random multiple of 90 degrees and a random upside-down flip: with the horizontal flip, any
  of the 8 symmetries of a square, for images without an "up" (aerial scenes, micrographs).
- `strong`: `light`, then Keras 3's own `keras.layers.RandAugment` on each image (2 of its operations
  per image, magnitude up to 0.5), and per batch Keras' `keras.layers.MixUp` or `keras.layers.CutMix`
  (one of the two at random), which blend two images and their labels (soft labels: the loss and the
  accuracy of `tl_keras.training` take both kinds).

Every draw is a function of `(seed, epoch, image)` (of `(seed, epoch, batch)` for the batch mixes),
never of how many passes ran before: a resumed run sees the images an uninterrupted one saw. Keras'
layers draw from a `SeedGenerator`, whose state is set from those numbers before each call; the
layers then run one call at a time (a tf.data map without parallel calls), so no two calls race on
it. RandAugment computes every one of its operations for each image and keeps two: on this machine's
CPU it costs about 0.1 s per 224 px image, paid in each pass that augments.

Where the mixes apply: on the tensors the phase trains on, when they are images or activation maps.
Phase 2 on the boundary cache (`tl_keras.training.caches.compute_boundary`) mixes the cached activations of
two images (Manifold Mixup, Verma et al. 2019; CutMix cuts the same box out of the activation map,
whose cells each see a region of the photo), not the photos themselves. Phase 1 on cached feature
vectors is not mixed (a vector has no region to cut, and by default phase 1 trains on un-augmented
images: see `tl_keras.training.caches`).

Examples:
    >>> import tensorflow as tf
    >>> from tl_keras.data.augment import augment_image
    >>> image = tf.zeros([32, 32, 3])
    >>> augment_image(image, tf.constant([1, 2]), 32, "light").shape
    TensorShape([32, 32, 3])
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tl_keras.config import AUGMENTS, TURNS, augment_policy
from tl_keras.data.epochs import epoch_variable, record_epoch

__all__ = ["AUGMENTS", "augment_policy", "augment_image", "StrongAugment", "mix_batches"]

RAND_AUGMENT = dict(num_ops=2, factor=0.5)
MIX_ALPHA = dict(mix_up=0.2, cut_mix=1.0)  # Keras' defaults


def augment_image(image: tf.Tensor, seed: tf.Tensor, image_size: int, policy: str = "light") -> tf.Tensor:
    """The per-image part every policy but `none` shares: flip and crop, drawn from `seed` (int32
    [2]); with `+turns`, then a turn by a multiple of 90 degrees and an upside-down flip."""
    if policy == "none":
        return image
    image = tf.image.stateless_random_flip_left_right(image, seed)
    scale = tf.random.stateless_uniform([], seed + 1, 0.8, 1.0)
    side = tf.cast(tf.cast(image_size, tf.float32) * scale, tf.int32)
    crop = tf.image.stateless_random_crop(image, tf.stack([side, side, 3]), seed + 2)
    image = tf.image.resize(crop, (image_size, image_size))
    if policy.endswith(TURNS):
        quarter_turns = tf.random.stateless_uniform([], seed + 3, 0, 4, dtype=tf.int32)
        image = tf.image.stateless_random_flip_up_down(tf.image.rot90(image, quarter_turns), seed + 4)
    return image


def _seedable(layer: keras.layers.Layer) -> keras.layers.Layer:
    """`layer`, checked to draw from a `keras.random.SeedGenerator` at `layer.generator` (Keras 3's
    random preprocessing layers do; the attribute is not documented API, so it is checked here)."""
    generator = getattr(layer, "generator", None)
    if not isinstance(generator, keras.random.SeedGenerator) or getattr(generator, "state", None) is None:
        raise RuntimeError(
            f"augment='strong' seeds keras.layers.{type(layer).__name__} through its SeedGenerator, which this "
            f"Keras ({keras.__version__}) does not expose as `generator.state`. Use augment='light', or a Keras "
            "release tl_keras is tested with (see setup.cfg)."
        )
    return layer


def _seeded(layer: keras.layers.Layer, seed: tf.Tensor) -> None:
    """Sets `layer`'s random state from `seed`, so its next call draws a function of `seed` alone."""
    state = layer.generator.state
    state.assign(tf.cast(seed, state.dtype))


class StrongAugment:
    """RandAugment on one image at a time (0-255 pixels), its draws a function of `(seed, i, epoch)`.

    Apply with `dataset.map(strong)` without `num_parallel_calls`: calls share one random state.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self.layer = _seedable(keras.layers.RandAugment(value_range=(0, 255), seed=seed, **RAND_AUGMENT))

    def __call__(self, image, label, i, epoch):
        _seeded(self.layer, tf.stack([self.seed + 7919 * epoch, tf.cast(i, tf.int64)]))
        return tf.clip_by_value(self.layer(image, training=True), 0.0, 255.0), label


def mix_batches(dataset: tf.data.Dataset, num_classes: int, seed: int) -> tf.data.Dataset:
    """Each batch of `(inputs [b, h, w, c], integer labels [b])` blended by MixUp or CutMix (one at
    random per batch) into `(inputs, soft labels [b, num_classes])`, drawn from `(seed, epoch,
    batch)`; the epoch is the dataset's epoch counter (`tl_keras.data.epoch_variable`), which the
    returned dataset keeps. Other datasets (feature vectors, no counter) are returned as they are."""
    epoch = epoch_variable(dataset)
    if epoch is None or len(dataset.element_spec[0].shape) != 4:
        return dataset
    mix_up = _seedable(keras.layers.MixUp(alpha=MIX_ALPHA["mix_up"], seed=seed))
    cut_mix = _seedable(keras.layers.CutMix(factor=MIX_ALPHA["cut_mix"], seed=seed))

    def mix(batch, pair):
        inputs, labels = pair
        # The pass's epoch: the counter was advanced when this pass began (tl_keras.data.epoch_indices).
        draw = tf.stack([seed + 104723 * (epoch.read_value() - 1), batch])
        soft = labels if labels.shape.rank == 2 else tf.one_hot(tf.cast(labels, tf.int32), num_classes)  # multi-label: flags
        use_cut = tf.random.stateless_uniform([], tf.cast(draw, tf.int32)) < 0.5
        for layer in (mix_up, cut_mix):
            _seeded(layer, draw + 1)
        data = {"images": inputs, "labels": soft}
        mixed = tf.cond(use_cut, lambda: cut_mix(data, training=True), lambda: mix_up(data, training=True))
        return tf.cast(mixed["images"], inputs.dtype), tf.cast(mixed["labels"], tf.float32)

    mixed = dataset.enumerate().map(mix).prefetch(tf.data.AUTOTUNE)
    record_epoch(mixed, epoch)
    return mixed
