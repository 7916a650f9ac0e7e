"""Cached backbone features ("bottlenecks") for the frozen phase, in memory or on disk.

While the backbone is frozen (phase 1), its output for an image never changes, so it is computed once
and the head is trained on the stored vectors: an epoch then costs a pass through one Dense layer
instead of the whole backbone. The head trained this way *is* the classifier's head (the same layer
objects), so phase 2 starts from exactly the model phase 1 ended with.

Augmentation and the cache: by default (`copies=0`) phase 1 trains on the features of the
un-augmented images, and augmentation applies in phase 2 only. `copies=K` caches K augmented variants
of each training image instead, and every epoch picks one of them per image at random.

A `FeatureStore` keeps features on disk, keyed by the backbone (its class, input size, pixel range and
the values of all its weights), and each file's content (SHA-1), so a second run over the same images
with another head, or with files added, computes only what is new.

Examples:
    >>> from tl_keras.models.classifier import build_classifier
    >>> from tl_keras.data import load_image_folder
    >>> from tl_keras.training.caches import compute_features
    >>> folder = load_image_folder("../shared/assets/datasets/hymenoptera", image_size=96)
    >>> model = build_classifier("../shared/assets/hub/mobilenet_v2_035_224_feature_vector", 2, image_size=96)
    >>> features = compute_features(model, folder, store="~/.cache/tl_keras/features")
    >>> features.train.shape, features.val.shape
    ((1, 245, 1280), (153, 1280))
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tl_keras.config import TrainConfig
from tl_keras.data.epochs import epoch_indices, record_epoch
from tl_keras.data.folder import ImageFolder
from tl_keras.data.pipeline import finish
from tl_keras.data.samples import Split
from tl_keras.distribute import MultiWorkerFitMixin
from tl_keras.models.registry import BoundaryUnavailable
from tl_keras.utils.batches import run_batches
from tl_keras.utils.checks import require_int
from tl_keras.utils.files import atomic_write, file_digest

DEFAULT_BATCH_SIZE = 64


class FeatureHead(MultiWorkerFitMixin, keras.Model):
    """The classifier's own head layers (hidden layers, `output_dropout`, `predictions`) on a
    feature-vector input.

    Training it trains the classifier's head: the layers, and so the weights, are shared. It is
    `multi_label` when the classifier is (`tl_keras.training.compile_for_phase` reads it).
    """

    multi_label = False


def head_model(model: keras.Model) -> FeatureHead:
    """A `FeatureHead` sharing `model`'s head layers, built in `model`'s distribution strategy."""
    dim = int(model.backbone.output.shape[-1])
    with model.distribute_strategy.scope():
        inputs = keras.Input((dim,), name="features")
        x = inputs
        for layer in model.head_layers:
            x = layer(x)
        head = FeatureHead(inputs, x, name="feature_head")
    head.multi_label = bool(getattr(model, "multi_label", False))
    return head


def backbone_fingerprint(model: keras.Model, crop_to_aspect_ratio: bool = False) -> str:
    """A SHA-256 over what decides the features: backbone class, input size, pixel range, weights, and
    the images' framing (`crop_to_aspect_ratio` of the folder they were read from)."""
    h = hashlib.sha256()
    backbone = model.backbone
    h.update(f"{type(backbone).__module__}.{type(backbone).__name__}|{model.image_size}|{model.pixel_mode}".encode())
    h.update(f"|cut={getattr(backbone, 'cut', None)}".encode())
    if crop_to_aspect_ratio:  # only then: stores written for squeezed images keep their keys
        h.update(b"|crop_to_aspect_ratio")
    for variable in sorted(backbone.weights, key=lambda v: v.path):
        h.update(variable.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return h.hexdigest()


class FeatureStore:
    """Features on disk: one `<fingerprint>.npz` per backbone, holding file digests and vectors.

    Writes go to a temporary file in the same folder and are renamed into place, so a reader never
    sees a half-written file; two runs writing at once each leave a complete file (one of them wins).
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(os.path.expanduser(directory))

    def _path(self, fingerprint: str) -> str:
        return os.path.join(self.directory, f"{fingerprint}.npz")

    def load(self, fingerprint: str) -> dict[str, np.ndarray]:
        """Digest -> feature vector, for every entry stored under `fingerprint` (empty if none)."""
        path = self._path(fingerprint)
        if not os.path.exists(path):
            return {}
        try:
            with np.load(path) as data:
                return dict(zip(data["keys"].tolist(), data["features"]))
        except (OSError, ValueError, KeyError) as err:  # a damaged cache file is recomputed, not fatal
            import warnings

            warnings.warn(f"Ignoring the unreadable feature cache {path!r} ({err}); it will be rewritten.")
            return {}

    def save(self, fingerprint: str, entries: dict[str, np.ndarray]) -> None:
        """Merges `entries` into the file of `fingerprint`."""
        if not entries:
            return
        merged = {**self.load(fingerprint), **entries}
        atomic_write(self._path(fingerprint), lambda f: np.savez(f, keys=np.array(list(merged)),
                                                                 features=np.stack(list(merged.values()))))


@dataclasses.dataclass
class FeatureSet:
    """Backbone features of a folder's train and val images, ready to train a head on.

    The same class holds phase 2's boundary activations (`compute_boundary`): then each row is an
    activation map `[h, w, channels]` instead of a vector `[dim]`.

    Attributes:
        train: float32 `[copies, n_train, dim]`: one row per training image and cached variant.
        train_labels: int32 `[n_train]`.
        val: float32 `[n_val, dim]`, from the un-augmented images.
        val_labels: int32 `[n_val]`.
        batch_size: the batch size of `datasets()`.
        augmented: whether the train variants are augmented.
        computed: feature vectors computed by the backbone this time.
        loaded: feature vectors read from the `FeatureStore`.
        seconds: time spent computing and loading.
    """

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray
    batch_size: int = DEFAULT_BATCH_SIZE
    augmented: bool = False
    seed: int = 42
    computed: int = 0
    loaded: int = 0
    seconds: float = 0.0

    @property
    def copies(self) -> int:
        return int(self.train.shape[0])

    def datasets(self) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """(train, val) datasets of `(features, labels)`. Train is reshuffled every epoch and, with
        several cached variants, takes one per image at random; both are drawn from `(seed, epoch)`
        (see `tl_keras.data.epoch_variable`), so a resumed run sees what an uninterrupted one saw."""
        per_image = tf.constant(np.ascontiguousarray(np.moveaxis(self.train, 0, 1)))  # [n, copies, ...]
        labels = tf.constant(self.train_labels)
        copies, seed = self.copies, self.seed

        def element(i, e):
            pick = tf.random.stateless_uniform([], tf.stack([seed + 104729 * e, i]), 0, copies, dtype=tf.int64)
            return tf.gather(tf.gather(per_image, i), pick), tf.gather(labels, i)

        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="feature_epoch")
        train = epoch_indices(len(self.train_labels), seed, True, epoch).map(element, num_parallel_calls=tf.data.AUTOTUNE)
        train = finish(train, self.batch_size)
        record_epoch(train, epoch)
        val = finish(tf.data.Dataset.from_tensor_slices((self.val, self.val_labels)), self.batch_size)
        return train, val

    def describe(self) -> dict:
        """A JSON-able summary, as `train`'s metrics report it."""
        return {
            "used": True,
            "copies": self.copies,
            "augmented": self.augmented,
            "computed": self.computed,
            "loaded": self.loaded,
            "seconds": round(self.seconds, 2),
            "megabytes": round((self.train.nbytes + self.val.nbytes) / 2**20, 1),
        }


def feature_extractor(model: keras.Model):
    """A compiled function `images (0-255, any size) -> backbone feature vectors` of a classifier;
    its `dim` attribute is the vector length."""
    sub = keras.Model(model.inputs, model.backbone.output, name="feature_extractor")

    @tf.function(reduce_retracing=True)
    def run(images):
        return sub(images, training=False)

    run.dim = int(model.backbone.output.shape[-1])
    return run


def extract_features(run, dataset: tf.data.Dataset) -> np.ndarray:
    """`run` (a `feature_extractor`) over every batch of `(images, labels)`, stacked `[n, dim]`."""
    return run_batches(run, dataset, run.dim, inputs_only=True, progress="computing backbone features")


def _features_for(
    run, folder: ImageFolder, split: str, batch_size: int, store: FeatureStore | None, fingerprint: str | None
) -> tuple[np.ndarray, int, int]:
    """Un-augmented features of `split`, through the store when there is one: (features, computed, loaded)."""
    data = folder.splits[split]
    if store is None:
        return extract_features(run, folder.dataset(split, batch_size=batch_size)), len(data), 0
    digests = [s.digest or file_digest(s.path) for s in data.samples]  # taken when the files were checked
    known = store.load(fingerprint)
    missing = [i for i, d in enumerate(digests) if d not in known]
    if missing:
        todo = Split([data.samples[i] for i in missing], data.images[missing] if data.images is not None else None)
        subset = dataclasses.replace(folder, splits={**folder.splits, split: todo})
        new = extract_features(run, subset.dataset(split, batch_size=batch_size))
        fresh = {digests[i]: new[j] for j, i in enumerate(missing)}
        store.save(fingerprint, fresh)
        known.update(fresh)
    rows = [known[d] for d in digests]
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, run.dim), np.float32)
    return features, len(missing), len(data) - len(missing)


def compute_features(
    model: keras.Model,
    folder: ImageFolder,
    *,
    copies: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    store: FeatureStore | str | None = None,
    augment: str = "light",
) -> FeatureSet:
    """Runs the frozen backbone of `model` once over `folder`'s train and val images.

    Args:
        model: a `tl_keras.ImageClassifier` (its `backbone` output is what is cached).
        folder: the `ImageFolder` to train on.
        copies: 0 caches the un-augmented training images; K > 0 caches K augmented variants of each.
            Defaults to 0.
        batch_size: batch size for the backbone pass and of the returned `datasets()`. Defaults to 64.
        store: a `FeatureStore` or a folder for one, to reuse features across runs. Augmented
            variants are never stored (they depend on the seed and epoch). Defaults to None.
        augment: the per-image augmentation policy of the `copies` (`"light"` or `"strong"`, see
            `tl_keras.data.augment`). Defaults to `"light"`.

    Returns:
        A `FeatureSet`.
    """
    require_int("copies", copies)
    require_int("batch_size", batch_size, 1)
    if isinstance(store, str):
        store = FeatureStore(store)
    started = time.perf_counter()
    run = feature_extractor(model)
    fingerprint = backbone_fingerprint(model, folder.crop_to_aspect_ratio) if store is not None else None
    computed = loaded = 0
    if copies == 0:
        train, c, l = _features_for(run, folder, "train", batch_size, store, fingerprint)
        train, computed, loaded = train[None], computed + c, loaded + l
    else:
        # One pass of the augmenting pipeline, unshuffled so rows stay aligned with labels, per variant;
        # the augmentation seeds are re-drawn on every pass.
        augmenting = folder.dataset("train", batch_size=batch_size, training=True, augment=augment, shuffle=False)
        train = np.stack([extract_features(run, augmenting) for _ in range(copies)])
        computed += train.shape[0] * train.shape[1]
    val, c, l = _features_for(run, folder, "val", batch_size, store, fingerprint)
    return FeatureSet(
        train=train, train_labels=folder.train.labels, val=val, val_labels=folder.val.labels,
        batch_size=batch_size, augmented=copies > 0, seed=folder.seed,
        computed=computed + c, loaded=loaded + l, seconds=time.perf_counter() - started,
    )


def use_feature_cache(config: TrainConfig) -> bool:
    """Phase 1 on cached features: asked for, or (`"auto"`) whenever it saves backbone passes."""
    if config.head_epochs == 0 or config.cache_features is False:
        return False
    return (config.cache_features is True or config.feature_cache_dir is not None
            or config.head_epochs > max(1, config.feature_copies))


def phase_one_features(model: keras.Model, folder: ImageFolder, config: TrainConfig, batch_size: int) -> FeatureSet | None:
    """The features phase 1 of a `config` run trains on, computed once (None when caching would not
    save backbone passes): what `train` computes before both phases."""
    if not use_feature_cache(config):
        return None
    return compute_features(model, folder, copies=config.feature_copies, batch_size=batch_size,
                            store=config.feature_cache_dir, augment=config.augmentation)


# --- Phase 2 on cached boundary activations -------------------------------------------------------
# With BatchNormalization in inference mode, the frozen blocks below the first trainable one compute
# the same activations for an image in every epoch of phase 2. `compute_boundary` runs them once
# and `boundary_model` trains the trainable blocks and the head on the stored activations.


class _BackboneTop(keras.layers.Layer):
    """The trainable top of a backbone, as split by its `split_at_trainable`: boundary activations ->
    features. It holds the backbone as a sublayer, so its trainable weights are the top blocks'
    (the very variables the full model reads)."""

    def __init__(self, backbone, top, dim: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.backbone, self._top, self._dim = backbone, top, dim

    def call(self, activations):
        return self._top(activations)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._dim)


def boundary_model(model: keras.Model, top, shape: tuple[int, ...]) -> FeatureHead:
    """A model from boundary activations (`shape`, e.g. `(7, 7, 160)`) to class probabilities: the
    backbone's trainable top (`top`, from `compute_boundary`) and `model`'s head layers, sharing
    their weights with `model`, built in `model`'s distribution strategy."""
    shape = tuple(int(d) for d in shape)
    with model.distribute_strategy.scope():
        inputs = keras.Input(shape, name="boundary")
        x = _BackboneTop(model.backbone, top, int(model.backbone.output.shape[-1]), name="backbone_top")(inputs)
        for layer in model.head_layers:
            x = layer(x)
        head = FeatureHead(inputs, x, name="boundary_model")
    head.multi_label = bool(getattr(model, "multi_label", False))
    return head


def boundary_megabytes(folder: ImageFolder, views: int, run, images: tf.TensorSpec) -> tuple[tuple[int, ...], float]:
    """The boundary's activation shape, and the megabytes `compute_boundary` would hold for `folder`
    (`views` training copies, or 1 when 0, plus val; counted twice, as the training dataset copies
    the array). `run` is the `boundary_pass`, traced here for `images` (the spec of the folder's
    batches): the trace gives the shape, and the pass over those batches reuses it."""
    shape = tuple(int(d) for d in run.get_concrete_function(images).structured_outputs.shape[1:])
    rows = max(views, 1) * len(folder.train) + len(folder.val)
    return shape, 2 * rows * int(np.prod(shape)) * 4 / 2**20


def free_megabytes() -> float:
    """Physical memory not in use, in MiB (`inf` where the system does not say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX systems
        return float("inf")


@dataclasses.dataclass
class BoundarySet(FeatureSet):
    """Phase 2's cached activations at the boundary below the trainable blocks (`compute_boundary`):
    rows are activation maps `[h, w, channels]`; `top` is the backbone's trainable part that reads
    them (for `boundary_model`)."""

    top: Callable | None = None

    def describe(self) -> dict:
        return {**super().describe(), "views": self.copies if self.augmented else 0, "shape": list(self.train.shape[2:])}


def boundary_pass(model: keras.Model, bottom) -> Callable:
    """A compiled function `images (0-255) -> boundary activations`: `model`'s pixel scaling, then
    `bottom`, the frozen part of its backbone (from `split_at_trainable`), in inference mode."""
    pixels = keras.Model(model.inputs, model.get_layer("pixel_range").output, name="boundary_input")

    @tf.function(reduce_retracing=True)
    def run(images):
        return bottom(pixels(images, training=False))

    return run


def compute_boundary(model: keras.Model, folder: ImageFolder, *, views: int = 0, augment: str = "light",
                     batch_size: int = DEFAULT_BATCH_SIZE, limit_megabytes: float | None = None):
    """Runs the frozen part of `model`'s backbone (everything below its trainable blocks) once over
    `folder`'s images, for phase 2 to train on.

    Args:
        model: a `tl_keras.ImageClassifier` whose top blocks are trainable (`set_trainable_blocks`).
        folder: the `ImageFolder` to train on.
        views: 0 caches the un-augmented training images (phase 2 without augmentation: exact); K > 0
            caches K augmented views of each, one pass each, and every epoch picks one per image
            at random (the views are epochs 0..K-1 of the augmenting pipeline, as phase 1's copies).
            Validation images are never augmented.
        augment: the views' per-image augmentation policy (`"light"` or `"strong"`, see
            `tl_keras.data.augment`). Defaults to `"light"`.
        batch_size: batch size of the pass and of the returned `datasets()`.
        limit_megabytes: the most memory the cache may take. Defaults to half the free memory.

    Returns:
        A `BoundarySet`.

    Raises:
        BoundaryUnavailable: the backbone cannot be split, or the cache would not fit (phase 2 then
            streams images through the whole model); the message says which.
    """
    require_int("views", views)
    split = getattr(model.backbone, "split_at_trainable", None)
    if split is None:
        raise BoundaryUnavailable(f"{type(model.backbone).__name__} backbones do not split at a block boundary")
    bottom, top = split()
    started = time.perf_counter()
    run = boundary_pass(model, bottom)
    val_batches = folder.dataset("val", batch_size=batch_size)
    shape, megabytes = boundary_megabytes(folder, views, run, val_batches.element_spec[0])
    limit = free_megabytes() / 2 if limit_megabytes is None else limit_megabytes
    if megabytes > limit:
        raise BoundaryUnavailable(f"the activations need {megabytes:,.0f} MB, more than the {limit:,.0f} MB allowed")

    def over(dataset):
        return run_batches(run, dataset, shape, inputs_only=True, progress="computing the boundary cache")

    if views:
        augmenting = folder.dataset("train", batch_size=batch_size, training=True, augment=augment, shuffle=False)
        train = np.stack([over(augmenting) for _ in range(views)])
    else:
        train = over(folder.dataset("train", batch_size=batch_size))[None]
    val = over(val_batches)
    return BoundarySet(train=train, train_labels=folder.train.labels, val=val, val_labels=folder.val.labels,
                       batch_size=batch_size, augmented=views > 0, seed=folder.seed,
                       computed=train.shape[0] * train.shape[1] + len(val), seconds=time.perf_counter() - started, top=top)
