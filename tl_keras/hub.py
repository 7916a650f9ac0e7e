"""TF Hub / SavedModel backbones as native Keras 3 layers: the only module that knows their quirks.

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
>>> from tl_keras.hub import HubBackbone
>>> backbone = HubBackbone("../shared/assets/hub/mobilenet_v2_035_224_feature_vector")
>>> model = keras.Sequential([keras.Input((96, 96, 3)), backbone, keras.layers.Dense(2)])
>>> backbone.set_trainable_blocks(2)   # block_15, block_16 (+ Conv_1) train; the rest stays frozen
"""

from __future__ import annotations

import os
import re
import types
from typing import Sequence

import keras
import tensorflow as tf

from tl_keras.registry import GENERIC_BLOCKS, BackboneDownloadError, BlockSelection, download_timeout, group_blocks, socket_timeout

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
            `tl_keras.registry.group_blocks`). Defaults to the generic patterns, which know
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
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self.block_patterns = tuple(block_patterns or GENERIC_BLOCKS)
        self.output_key = output_key
        self.inference_mode = bool(inference_mode)
        # Loading inside the layer's constructor puts the variables under whatever tf.distribute
        # strategy scope is active, so they become distributed variables like any Keras weight.
        module = tf.saved_model.load(resolve_handle(handle))
        # A plain holder keeps the module out of Keras/TF object tracking: the wrapped variables
        # below are the only path from this layer to the module's state, so nothing is saved twice.
        self._hub = types.SimpleNamespace(module=module, accepts_training=_accepts_training(module))
        if not module.variables:
            raise ValueError(f"The SavedModel at {handle!r} has no variables: nothing to fine-tune.")
        trainable_ids = {id(v) for v in module.trainable_variables}
        self.source_names = [v.name.split(":")[0] for v in module.variables]
        self._source_trainable = [id(v) in trainable_ids for v in module.variables]
        self.hub_variables = [
            keras.Variable(initializer=v, trainable=t, name=_keras_name(v.name))
            for v, t in zip(module.variables, self._source_trainable)
        ]
        for kv, v in zip(self.hub_variables, module.variables):
            if kv.value is not v:  # pragma: no cover - guards a change in Keras' TF backend
                raise RuntimeError(
                    "keras.Variable copied a SavedModel variable instead of adopting it; training "
                    "would not reach the forward pass. Please report your keras/tensorflow versions."
                )
        self.blocks = group_blocks(self.source_names, self.block_patterns)
        self.set_trainable_blocks("all" if trainable else 0)
        self.built = True

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

    def call(self, inputs, training=None):
        images = tf.cast(inputs, tf.float32)
        module = self._hub.module
        if self._hub.accepts_training:
            outputs = module(images, training=bool(training) and not self.inference_mode)
        else:
            outputs = module(images)
        if isinstance(outputs, dict):
            outputs = outputs[self.output_key] if self.output_key else next(iter(outputs.values()))
        return outputs

    def compute_output_shape(self, input_shape):
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
        config.update(
            handle=self.handle,
            block_patterns=list(self.block_patterns),
            output_key=self.output_key,
            inference_mode=self.inference_mode,
            unfrozen_blocks=self.unfrozen_blocks,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "HubBackbone":
        config = dict(config)
        unfrozen = config.pop("unfrozen_blocks", None)
        layer = cls(**config)
        if unfrozen is not None:
            layer.set_trainable_blocks(unfrozen)
        return layer


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
