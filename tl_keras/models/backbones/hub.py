"""TF Hub / SavedModel backbones as native Keras 3 layers, and their downloads: with `_savedmodel` (the
graph surgery), the only code that knows their quirks.

`tensorflow_hub.KerasLayer` builds on tf_keras and cannot sit inside a Keras 3 model, and
`keras.layers.TFSMLayer` copies the SavedModel's variables into new Keras variables that its forward
pass never reads, so training it changes nothing the model computes. `HubBackbone` instead wraps the
restored `tf.Variable`s themselves in `keras.Variable`s (the TensorFlow backend adopts an existing
`tf.Variable` as its storage), so the optimizer updates exactly the variables the SavedModel's
restored functions read, and Keras sees them as ordinary weights: per-variable `trainable` flags
(hence block-level unfreezing), `get_weights`, `.keras` saving, and tf.distribute variables when the
layer is built inside a strategy scope.

Example (offline, with a local copy of a TF Hub feature vector):

>>> import keras
>>> from tl_keras.models.backbones.hub import HubBackbone
>>> backbone = HubBackbone("../shared/assets/hub/mobilenet_v2_035_224_feature_vector")
>>> model = keras.Sequential([keras.Input((96, 96, 3)), backbone, keras.layers.Dense(2)])
>>> backbone.set_trainable_blocks(2)   # block_15, block_16 (+ Conv_1) train; the rest stays frozen
>>> cut = HubBackbone("../shared/assets/hub/mobilenet_v2_035_224_feature_vector", cut="block_12")
>>> cut.cut_layer, cut.block_names[-1]   # pooled block_12 activations; only blocks up to 12 remain
('block_12_add', 'block_12')
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import types
import weakref
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from tl_keras.models.backbones._savedmodel import (
    SubGraph,
    all_handles,
    concrete_call,
    cut_points,
    flat_graph,
    split_at_trainable,
)
from tl_keras.models.blocks import (
    GENERIC_BLOCKS,
    BlockSelection,
    group_blocks,
    resolve_cut,
)
from tl_keras.models.registry import (
    BackboneDownloadError,
    BoundaryUnavailable,
    CutUnsupportedError,
)

DEFAULT_DOWNLOAD_TIMEOUT = 30.0


def download_timeout() -> float:
    """Seconds a download may wait on the network for any one step: `TL_KERAS_DOWNLOAD_TIMEOUT`, else 30."""
    raw = os.environ.get("TL_KERAS_DOWNLOAD_TIMEOUT")
    if raw is None:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"TL_KERAS_DOWNLOAD_TIMEOUT must be a number of seconds > 0. Received: {raw!r}")
    return value


@contextlib.contextmanager
def socket_timeout(seconds: float | None = None) -> Iterator[None]:
    """Bounds every blocking socket operation of a download (connect, each read), then restores the
    previous default: with no network a download fails in seconds instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if seconds is not None else download_timeout())
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def resolve_handle(handle: str, timeout: float | None = None) -> str:
    """Returns a local SavedModel folder for a TF Hub/Kaggle handle, URL or local path.

    Remote handles are downloaded by `tensorflow_hub` into its cache (`TFHUB_CACHE_DIR`, default
    a temporary folder), so a second call is served from disk. Every network step is bounded by
    `timeout` seconds (default: `TL_KERAS_DOWNLOAD_TIMEOUT`, else 30). `tensorflow_hub` is imported only
    here, and only for remote handles: it pulls in tf_keras, which a local folder never needs.

    Raises:
        ValueError: the folder exists but holds no SavedModel.
        BackboneDownloadError: the download failed; the message says how to use a local copy.
    """
    local = os.path.expanduser(handle[len("file://"):] if handle.startswith("file://") else handle)
    if os.path.isdir(local):
        if not any(os.path.exists(os.path.join(local, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise ValueError(
                f"{local!r} is not a TF2 SavedModel folder: it has no saved_model.pb. Pass the folder "
                "that holds saved_model.pb and variables/ (an unpacked TF Hub / Kaggle download)."
            )
        return local
    try:
        import tensorflow_hub as hub
    except ImportError as err:  # pragma: no cover - tensorflow-hub is a dependency
        raise ImportError("Downloading TF Hub handles needs `pip install tensorflow-hub`.") from err
    seconds = timeout if timeout is not None else download_timeout()  # a bad setting is not a download error
    try:
        with socket_timeout(seconds):
            return hub.resolve(handle)
    except Exception as err:
        cache = os.environ.get("TFHUB_CACHE_DIR", "(unset: a temporary folder)")
        raise BackboneDownloadError(
            f"Could not download the backbone {handle!r}: {type(err).__name__}: {err}\n"
            "tl_keras fetches TF Hub / Kaggle handles over the network. To work offline, use a local "
            "copy: on a machine with internet run `python -c \"import tensorflow_hub as hub; "
            f"print(hub.resolve('{handle}'))\"` (or download the model's archive from "
            "kaggle.com/models and unpack it), then pass that folder as the backbone "
            "(`--backbone /path/to/folder`), or point TFHUB_CACHE_DIR at a cache that holds it "
            f"(TFHUB_CACHE_DIR={cache})."
        ) from err


def takes_any_size(path: str) -> bool:
    """Whether the SavedModel in the local folder `path` takes images of any height and width, read
    from its `saved_model.pb` without loading it: the image argument of its `__call__` (the TF Hub
    reusable format), else of its `serving_default` signature, has free spatial dimensions. False
    when neither says so (a module traced at one size only takes that size)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved.ParseFromString(f.read())
    except (OSError, ValueError):
        return False
    shapes = [shape for graph in saved.meta_graphs for shape in _call_image_shapes(graph)]
    if not shapes:
        shapes = [[d.size for d in spec.tensor_shape.dim] for graph in saved.meta_graphs
                  if "serving_default" in graph.signature_def
                  for spec in graph.signature_def["serving_default"].inputs.values()]
    images = [shape for shape in shapes if len(shape) == 4]
    return bool(images) and all(shape[1] == shape[2] == -1 for shape in images)


def _call_image_shapes(graph) -> list[list[int]]:
    """The shapes of the first tensor argument of every concrete function of the root's `__call__`."""
    objects = graph.object_graph_def
    if not objects.nodes:
        return []
    calls = [child.node_id for child in objects.nodes[0].children if child.local_name == "__call__"]
    shapes = []
    for node in calls:
        for name in objects.nodes[node].function.concrete_functions:
            signature = objects.concrete_functions[name].canonicalized_input_signature
            first = _first_tensor_spec(signature)
            if first is not None:
                shapes.append([d.size for d in first.shape.dim])
    return shapes


def _first_tensor_spec(value):
    """The first `TensorSpecProto` in a `StructuredValue` (depth first), or None."""
    if value.HasField("tensor_spec_value"):
        return value.tensor_spec_value
    for field in ("tuple_value", "list_value"):
        if value.HasField(field):
            for item in getattr(value, field).values:
                found = _first_tensor_spec(item)
                if found is not None:
                    return found
    return None


class ModulePool:
    """Loaded SavedModels handed back for reuse in this process: loading one again costs seconds
    (restoring hundreds of functions), and a run loads the same backbone several times (the advisor
    and the model, the scratch comparison, k-fold, the LR finder).

    A module goes back to the pool only when its owner says it is done with it
    (`HubBackbone.release()`; tl_keras does so for the layers it builds and throws away), never
    because the garbage collector happened to run. The next `HubBackbone` of the same folder takes
    the module released last, its variables set back to the values it was loaded with, so it starts
    from exactly the pretrained weights a fresh load gives. Modules loaded under a `tf.distribute`
    strategy scope are never pooled (their variables belong to that strategy).

    >>> from tl_keras.models.backbones.hub import MODULE_POOL
    >>> MODULE_POOL.loads  # SavedModel loads so far in this process   # doctest: +SKIP
    3
    """

    def __init__(self, max_per_path: int = 2):
        self.max_per_path = max_per_path
        self.loads = 0  # SavedModel loads, for tests and curious users
        self._free: dict[str, list] = {}  # path -> released modules, the last released last
        self._pristine: dict[str, list[np.ndarray]] = {}  # path -> the variables' values as loaded
        self._poolable: weakref.WeakSet = weakref.WeakSet()  # loaded outside a strategy scope

    def acquire(self, path: str):
        """A module of `path` for one owner: the last one released (weights restored), else a new load."""
        if tf.distribute.has_strategy():
            self.loads += 1
            return tf.saved_model.load(path)
        free = self._free.get(path)
        if free:
            module = free.pop()
            for variable, value in zip(module.variables, self._pristine[path]):
                variable.assign(value)
            return module
        module = tf.saved_model.load(path)
        self.loads += 1
        self._pristine.setdefault(path, [v.numpy() for v in module.variables])
        self._poolable.add(module)
        return module

    def release(self, module, path: str) -> bool:
        """Takes `module` back for the next owner of `path`; whether it was kept (not when it was
        loaded under a strategy scope, or `max_per_path` are free already)."""
        free = self._free.setdefault(path, [])
        if module not in self._poolable or len(free) >= self.max_per_path or any(m is module for m in free):
            return False
        free.append(module)
        return True


MODULE_POOL = ModulePool()


def _keras_name(variable_name: str) -> str:
    """`block_16_project/kernel:0` -> `block_16_project_kernel` (Keras names cannot hold '/')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", variable_name.split(":")[0])


def _accepts_training(module) -> bool:
    """Whether the module's `__call__` takes a `training` argument (TF Hub reusable SavedModels do)."""
    call = getattr(module, "__call__", None)
    for fn in getattr(call, "concrete_functions", ()):
        args, kwargs = fn.structured_input_signature
        if "training" in kwargs or any(isinstance(a, bool) for a in args[1:]):
            return True
    return False


@keras.saving.register_keras_serializable(package="tl_keras")
class HubBackbone(BlockSelection, keras.layers.Layer):
    """A TF2 SavedModel in TF Hub format (image feature vector) as a trainable Keras 3 layer.

    Args:
        handle: a local SavedModel folder, a TF Hub or Kaggle Models handle, or a URL.
        trainable: whether the backbone's variables train. Defaults to `False` (frozen).
        block_patterns: regexes that tell blocks apart by variable name (see
            `tl_keras.models.registry.group_blocks`). Defaults to the generic patterns, which know
            MobileNet (`block_16_*`), Keras ResNet (`conv5_block3_*`), TF-slim ResNet
            (`block4/unit_3`) and EfficientNet (`block6a_*`) names.
        output_key: for modules returning a dict, the key of the feature vector. Defaults to the
            only/first value.
        inference_mode: if True, the module always runs with `training=False`, whatever Keras'
            training flag: BatchNormalization normalises with its moving statistics and never
            updates them, while gamma/beta (and every other trainable variable) still learn. This is
            how tl_keras fine-tunes. Keras 3 functional models pass the outer `training` value to
            nested layers even when the layer was called with `training=False`, so this switch,
            not the call argument, is what pins inference mode. Defaults to `False`.
        cut: a block name (`"block_12"`) or layer name to cut the module at: the layer outputs that
            layer's activations, average-pooled, and holds only the variables below it. The
            module's graph is inlined and pruned at that layer (Keras-made modules, whose layers
            are separate functions), and gradients reach the variables it reads. Defaults to None
            (the module's own output).
        module: the SavedModel of `handle`, already loaded (`other_layer.module`), to wrap instead of
            loading it again: the layers then share its variables, so use it for inference (the
            advisor probes several cuts of one module this way). Defaults to None (load it).
        **kwargs: `name`, `dtype` and other `keras.layers.Layer` arguments. `dtype` defaults to
            float32 whatever the global policy: a SavedModel's functions were traced for the dtypes
            it was exported with, so under mixed precision the module still computes in float32.

    The layer expects what the module expects: for TF Hub image modules, float images in [0, 1].
    `training` is passed to the module when it accepts it (BatchNormalization then follows Keras'
    `training` flag) unless `inference_mode=True`.
    """

    def __init__(
        self,
        handle: str,
        trainable: bool = False,
        block_patterns: Sequence[str] | None = None,
        output_key: str | None = None,
        inference_mode: bool = False,
        cut: str | None = None,
        module=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self.block_patterns = tuple(block_patterns or GENERIC_BLOCKS)
        self.output_key = output_key
        self.inference_mode = bool(inference_mode)
        self.cut = cut
        # Loading inside the layer's constructor puts the variables under whatever tf.distribute
        # strategy scope is active, so they become distributed variables like any Keras weight.
        path = resolve_handle(handle)
        module = module if module is not None else MODULE_POOL.acquire(path)
        # A plain holder keeps the module out of Keras/TF object tracking: the wrapped variables
        # below are the only path from this layer to the module's state, so nothing is saved twice.
        self._hub = types.SimpleNamespace(module=module, accepts_training=_accepts_training(module), cuts={}, path=path,
                                          released=False)
        if not module.variables:
            raise ValueError(f"The SavedModel at {handle!r} has no variables: nothing to fine-tune.")
        variables = list(module.variables)
        if cut is not None:
            variables = self._make_cut(module, cut)
        trainable_ids = {id(v) for v in module.trainable_variables}
        self.source_names = [v.name.split(":")[0] for v in variables]
        self._source_trainable = [id(v) in trainable_ids for v in variables]
        self.hub_variables = [
            keras.Variable(initializer=v, trainable=t, name=_keras_name(v.name))
            for v, t in zip(variables, self._source_trainable)
        ]
        for kv, v in zip(self.hub_variables, variables):
            if kv.value is not v:  # pragma: no cover - guards a change in Keras' TF backend
                raise RuntimeError(
                    "keras.Variable copied a SavedModel variable instead of adopting it; training "
                    "would not reach the forward pass. Please report your keras/tensorflow versions."
                )
        self.blocks = group_blocks(self.source_names, self.block_patterns)
        self.set_trainable_blocks("all" if trainable else 0)
        self.built = True

    @property
    def module(self):
        """The loaded SavedModel this layer wraps."""
        return self._hub.module

    def _make_cut(self, module, cut: str) -> list:
        """Prunes the module at `cut` (both `training` traces); returns the variables the cut reads."""
        flags = (False, True) if self._hub.accepts_training else (False,)
        functions = {flag: concrete_call(module, flag) for flag in flags}
        flats = {flag: flat_graph(fn) for flag, fn in functions.items()}
        layers = list(cut_points(flats[False], self.block_patterns))
        if not layers:
            raise CutUnsupportedError(
                f"The SavedModel at {self.handle!r} has neither per-layer functions nor op names that show "
                "its blocks, so tl_keras cannot find its intermediate layers. Use cut=None."
            )
        self.cut_layer = resolve_cut(layers, cut, self.block_patterns)
        # Restored functions capture a variable's handle, or under tf.distribute the variable itself.
        by_handle = {id(h): v for v in module.variables for h in [v, *all_handles(v)]}
        self._hub.cuts = {flag: SubGraph.up_to_layer(functions[flag], flats[flag], by_handle, self.cut_layer, self.block_patterns)
                          for flag in flags}
        used = {id(v) for c in self._hub.cuts.values() for v in c.variables.values()}
        self._hub.run = {flag: c.function() for flag, c in self._hub.cuts.items()}
        self._hub.channels = int(self._hub.run[False](tf.zeros([1, 64, 64, 3])).shape[-1])
        return [v for v in module.variables if id(v) in used]

    def _weights_of(self, indices: list[int]) -> list:
        return [self.hub_variables[i] for i in indices]

    def split_at_trainable(self):
        """Splits the module where its trainable blocks start, for phase 2 with a cached boundary.

        Returns `(bottom, top)`: functions images -> activations at the boundary (frozen) and
        activations -> this layer's output (the trainable blocks, differentiable), both in inference
        mode. The split is found in the module's graph, op by op: the frozen part is what
        does not depend on a trainable variable, and it must hand one tensor to the trainable part.

        Raises:
            BoundaryUnavailable: why the module cannot be split (no trainable block, every block
                trainable, the trained layers reading more than one frozen tensor, BatchNormalization
                not in inference mode).
        """
        if not self.inference_mode:
            raise BoundaryUnavailable("BatchNormalization is not in inference mode, so the frozen part's output is not fixed")
        trainable = {id(kv.value) for kv in self.hub_variables if kv.trainable}
        if not trainable:
            raise BoundaryUnavailable("no block is trainable")
        function = concrete_call(self.module, training=False)
        flat = flat_graph(function)
        by_handle = {id(h): v for v in self.module.variables for h in [v, *all_handles(v)]}
        if self._hub.cuts:
            fetch = self._hub.cuts[False].fetch
        else:
            outputs = function.structured_outputs
            index = sorted(outputs).index(self.output_key or next(iter(outputs))) if isinstance(outputs, dict) else 0
            fetch = function.outputs[index].name
        bottom, top = (part.function() for part in split_at_trainable(function, flat, by_handle, trainable, fetch))

        def top_pooled(activations):
            outputs = top(tf.cast(activations, tf.float32))
            return tf.reduce_mean(outputs, axis=[1, 2]) if outputs.shape.rank == 4 else outputs

        return (lambda images: bottom(tf.cast(images, tf.float32))), top_pooled

    def reinitialize(self, seed: int | None = None) -> None:
        """Replaces the pretrained weights by random ones, as a fresh Keras layer would start: kernels
        He-normal, biases and BatchNormalization beta/mean 0, gamma/variance 1 (the baseline for
        training from scratch)."""
        rng = keras.random.SeedGenerator(seed)
        for name, variable in zip(self.source_names, self.hub_variables):
            leaf = name.rsplit("/", 1)[-1]
            shape = tuple(variable.shape)
            if leaf in ("gamma", "moving_variance"):
                value = keras.ops.ones(shape)
            elif leaf in ("beta", "bias", "moving_mean") or len(shape) < 2:
                value = keras.ops.zeros(shape)
            else:
                fan_in = int(np.prod(shape[:-1])) if "depthwise" not in leaf else int(np.prod(shape[:2]))
                value = keras.random.normal(shape, stddev=float(np.sqrt(2.0 / max(1, fan_in))), seed=rng)
            variable.assign(keras.ops.cast(value, variable.dtype))

    def set_trainable_blocks(self, num_blocks: int | str) -> list[str]:
        """Makes only the top `num_blocks` blocks trainable (`"all"`: every block; 0: frozen).

        Variables the SavedModel marks non-trainable (BatchNormalization moving statistics) never
        become trainable. Recompile the model afterwards, as for any change of `trainable`.

        Returns:
            The names of the blocks now trainable, bottom first.
        """
        names, top = self._select_top_blocks(num_blocks)
        self.trainable = bool(names)  # Keras sets every trainable variable's flag; refined below.
        for i, (kv, source_trainable) in enumerate(zip(self.hub_variables, self._source_trainable)):
            if source_trainable:
                kv.trainable = i in top
        return names

    def release(self) -> bool:
        """Hands this layer's loaded module back, so the next `HubBackbone` of the same handle in this
        process reuses it instead of loading it again (seconds), from its pretrained values. Call it
        once you are done with this layer and every model holding it: it cannot run afterwards.
        Returns whether the module was pooled (not for a module loaded under a strategy scope).

        >>> backbone = HubBackbone("../shared/assets/hub/mobilenet_v2_035_224_feature_vector")  # doctest: +SKIP
        >>> backbone.release()  # doctest: +SKIP
        True
        """
        if self._hub.released:
            return False
        self._hub.released = True
        return MODULE_POOL.release(self._hub.module, self._hub.path)

    def call(self, inputs, training=None):
        if self._hub.released:
            raise RuntimeError(f"This HubBackbone ({self.name}) released its module with `release()`; build a new one.")
        images = tf.cast(inputs, tf.float32)
        module = self._hub.module
        if self._hub.cuts:
            flag = self._batch_norm_training(training) and self._hub.accepts_training
            activations = self._hub.run[flag](images)
            return tf.reduce_mean(activations, axis=[1, 2]) if activations.shape.rank == 4 else activations
        if self._hub.accepts_training:
            outputs = module(images, training=self._batch_norm_training(training))
        else:
            outputs = module(images)
        if isinstance(outputs, dict):
            outputs = outputs[self.output_key] if self.output_key else next(iter(outputs.values()))
        return outputs

    def compute_output_shape(self, input_shape):
        if self._hub.cuts:
            return (input_shape[0], self._hub.channels)
        call = getattr(self._hub.module, "__call__", None)
        for fn in getattr(call, "concrete_functions", ()):
            spec = fn.structured_outputs
            if isinstance(spec, dict):
                spec = spec[self.output_key] if self.output_key else next(iter(spec.values()))
            if hasattr(spec, "shape"):
                return (input_shape[0],) + tuple(spec.shape[1:])
        return super().compute_output_shape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        return {**config, "handle": self.handle, "output_key": self.output_key, **self.block_config()}

    @classmethod
    def from_config(cls, config: dict) -> "HubBackbone":
        return cls.from_block_config(config)


def save_hub_module(feature_extractor: keras.Model, path: str) -> str:
    """Saves a Keras feature extractor as a TF2 SavedModel in TF Hub's reusable format.

    The folder offers what `HubBackbone` and `hub.load` expect: `__call__(images, training=False)`
    (traced for both values of `training`, any batch and image size), and the attributes
    `variables`, `trainable_variables` and `regularization_losses`. Variable names keep the Keras
    layer names (`my_model/block_1_conv/kernel`), so blocks can be told apart after loading.

    Args:
        feature_extractor: a Keras model mapping float images `[batch, h, w, 3]` to features.
        path: the folder to write.

    Returns:
        `path`.
    """
    root = tf.train.Checkpoint()
    root.variables = [v.value for v in feature_extractor.variables]
    root.trainable_variables = [v.value for v in feature_extractor.trainable_variables]
    root.regularization_losses = []

    @tf.function
    def call(images, training=False):
        return feature_extractor(images, training=training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    for training in (True, False):
        call.get_concrete_function(spec, training)
    root.__call__ = call
    tf.saved_model.save(root, path)
    return path
