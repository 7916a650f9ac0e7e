"""Test-time augmentation: class probabilities averaged over an image and its mirror image.

A classifier trained with horizontal flips (tl_keras' augmentation) has learned that a mirrored photo
is the same class; averaging its two answers cancels part of the noise of either. It costs a second
forward pass. The same function runs in `tl_keras.train`'s evaluation, in `ExportedModel` (`predict`,
`evaluate`, `tl-keras predict/evaluate --tta`) and inside an export's serving signatures
(`tl-keras train --tta`), so all of them agree.

Examples:
    >>> import numpy as np
    >>> from tl_keras.evaluation.tta import flip_averaged
    >>> probe = lambda x: x[:, 0, :1, 0] * 0 + x[:, 0, :1, 0]   # "probability" = the top-left pixel
    >>> images = np.arange(2 * 1 * 2 * 1, dtype="float32").reshape(2, 1, 2, 1)
    >>> flip_averaged(probe)(images).numpy().ravel().tolist()   # mean of the left and right pixel
    [0.5, 2.5]
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

TTA_VIEWS = ("flip",)


def mirror(images):
    """Images `[batch, height, width, channels]` flipped left to right."""
    return tf.reverse(images, axis=[2])


def flip_averaged(probabilities: Callable) -> Callable:
    """`probabilities` (images -> `[batch, classes]`) averaged over each image and its mirror image."""

    def averaged(images):
        images = tf.convert_to_tensor(images)
        return (tf.cast(probabilities(images), tf.float32) + tf.cast(probabilities(mirror(images)), tf.float32)) / 2.0

    return averaged
