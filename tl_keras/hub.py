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
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import function_def_to_graph

from tl_keras.registry import (
    GENERIC_BLOCKS,
    BackboneDownloadError,
    BlockSelection,
    CutUnsupportedError,
    group_blocks,
    resolve_cut,
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


# --- Cutting a SavedModel at an intermediate layer -------------------------------------------------
# A Keras-made TF Hub module's `__call__` is one function call whose body calls one function per
# layer. TensorFlow cannot differentiate a call op imported from a GraphDef (it falls back to the
# legacy SymbolicGradient, which has no kernel here), so `_inline_calls` replaces every call op by its
# function's body: the result is one flat graph of primitive ops, which can be pruned at any layer's
# output and imported into the caller's graph, where gradients flow into the real variables.
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _inline_calls(graph_def, library: dict) -> "graph_pb2.GraphDef":
    """`graph_def` with every (Stateful)PartitionedCall replaced by its function's body, recursively.

    A call node `n` becomes the body's nodes, named `n/...`, with its argument placeholders turned into
    Identity ops of the call's inputs, plus an IdentityN named `n` holding its outputs, so every
    reference to `n:k` (and `^n`) still resolves.
    """
    flat = graph_pb2.GraphDef()
    for node in graph_def.node:
        if node.op not in _CALL_OPS:
            flat.node.add().CopyFrom(node)
            continue
        fdef = library[node.attr["f"].func.name]
        body, flat_names = function_def_to_graph.function_def_to_graph_def(fdef)
        body = _inline_calls(body, library)
        prefix = node.name + "/"
        data = [i for i in node.input if not i.startswith("^")]
        controls = [i for i in node.input if i.startswith("^")]
        arg_index = {arg.name: k for k, arg in enumerate(fdef.signature.input_arg)}
        for sub in body.node:
            new = flat.node.add()
            new.CopyFrom(sub)
            new.name = prefix + sub.name
            del new.input[:]
            if sub.op == "Placeholder" and sub.name in arg_index:
                new.op = "Identity"
                new.ClearField("attr")
                new.attr["T"].type = sub.attr["dtype"].type
                new.input.extend([data[arg_index[sub.name]]] + controls)
            else:
                new.input.extend("^" + prefix + i[1:] if i.startswith("^") else prefix + i for i in sub.input)
        outputs = flat.node.add(name=node.name, op="IdentityN")
        outputs.input.extend(prefix + flat_names[fdef.ret[arg.name]] for arg in fdef.signature.output_arg)
        outputs.attr["T"].list.type.extend(node.attr["Tout"].list.type)
    return flat


class _SubGraph:
    """A differentiable piece of one of the module's concrete functions, taken from its inlined graph
    (`_flat_graph`): what computes `fetch` from the tensor named `start`.

    Attributes:
        graph_def: the flat, pruned graph.
        fetch: the name of the output tensor in it.
        images: the name of the input placeholder (the images, or the boundary activations).
        variables: placeholder name -> the module variable it stands for, for the variables used.
    """

    def __init__(self, function, graph_def, fetch: str, images: str, variables_by_handle: dict):
        self.graph_def, self.fetch, self.images = graph_def, fetch, images
        kept = {n.name for n in graph_def.node}
        self.variables = {
            internal.op.name: variables_by_handle[id(external)]
            for external, internal in function.graph.captures
            if internal.op.name in kept and id(external) in variables_by_handle
        }
        unknown = [n.name for n in graph_def.node if n.op == "Placeholder" and n.name not in self.variables and n.name != images]
        if unknown:  # pragma: no cover - guards a change in how TensorFlow restores captures
            raise RuntimeError(f"Cannot tell which variables the graph's inputs {unknown[:3]} read; please report your TF version.")

    @classmethod
    def up_to_layer(cls, function, flat, variables_by_handle: dict, layer: str,
                    patterns: Sequence[str] = GENERIC_BLOCKS) -> "_SubGraph":
        """Images -> the output of `layer` (a cut; see `_cut_points`)."""
        layers = _cut_points(flat, patterns)
        if layer not in layers:
            raise ValueError(f"Layer {layer!r} is not in this module. Its layers: {', '.join(layers)}")
        return cls(function, _prune(flat, layers[layer]), layers[layer] + ":0", _images_placeholder(function), variables_by_handle)

    def __call__(self, images, handles: dict):
        """Imports the piece into the current graph: `handles` maps each variable placeholder to the
        resource handle (a tensor of this graph) to read."""
        (output,) = tf.graph_util.import_graph_def(
            self.graph_def, input_map={self.images: images, **handles}, return_elements=[self.fetch], name="cut"
        )
        return output

    def function(self):
        """The piece as a function of its input, calling a `tf.function` of `(input, *variable
        handles)`: gradient tapes record it as one differentiable call, and the handles are
        arguments, so every replica reads its own copy of a mirrored variable."""
        names = list(self.variables)

        @tf.function(autograph=False)
        def run(images, *handles):
            return self(images, dict(zip(names, handles)))

        def call(images):
            variables = [self.variables[name] for name in names]
            for variable in variables:
                variable.read_value()  # registers the read, so gradient tapes watch the variable
            return run(images, *[_local_handle(v) for v in variables])

        return call


def _images_placeholder(function) -> str:
    return [op.name for op in function.graph.get_operations() if op.type == "Placeholder"][0]


def _source(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _tensor(name: str) -> str:
    return name if ":" in name else name + ":0"


def _prune_tensors(graph_def, fetch: str, boundary: str | None = None) -> tuple["graph_pb2.GraphDef", str]:
    """What computes the tensor `fetch`, tensor by tensor: an IdentityN (an inlined call's outputs)
    keeps only the outputs used, so a call whose function TensorFlow rewrote to also return its
    intermediates (it does once the function has been differentiated) does not pull them in. Control
    inputs are dropped (inference ops need no ordering). With `boundary`, that tensor is read from a
    new float32 placeholder named "boundary" instead of being computed.

    Returns the pruned graph and `fetch`'s name in it."""
    nodes = {node.name: node for node in graph_def.node}
    used: dict[str, set[int]] = {}  # IdentityN name -> output indices needed
    keep, todo = set(), [_tensor(fetch)]
    while todo:
        tensor = todo.pop()
        if tensor == boundary:
            continue
        name, index = tensor.rsplit(":", 1)
        node = nodes[name]
        data = [i for i in node.input if not i.startswith("^")]
        if node.op == "IdentityN":
            if int(index) not in used.setdefault(name, set()):
                used[name].add(int(index))
                todo.append(_tensor(data[int(index)]))
            keep.add(name)
        elif name not in keep:
            keep.add(name)
            todo.extend(_tensor(i) for i in data)
    position = {name: {k: j for j, k in enumerate(sorted(ks))} for name, ks in used.items()}

    def rename(tensor: str) -> str:
        if tensor == boundary:
            return "boundary"
        name, index = tensor.rsplit(":", 1)
        return f"{name}:{position[name][int(index)]}" if name in position else tensor

    pruned = graph_pb2.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    if boundary is not None:
        pruned.node.add(name="boundary", op="Placeholder").attr["dtype"].type = tf.float32.as_datatype_enum
    for node in graph_def.node:
        if node.name not in keep:
            continue
        new = pruned.node.add()
        new.CopyFrom(node)
        del new.input[:]
        data = [i for i in node.input if not i.startswith("^")]
        if node.op == "IdentityN":
            picked = sorted(used[node.name])
            new.input.extend(rename(_tensor(data[k])) for k in picked)
            types = list(node.attr["T"].list.type)
            new.attr["T"].list.ClearField("type")
            new.attr["T"].list.type.extend(types[k] for k in picked)
        else:
            new.input.extend(rename(_tensor(i)) for i in data)
    return pruned, rename(_tensor(fetch))


def _split_at_trainable(function, flat, variables_by_handle: dict, trainable: set, fetch: str):
    """Splits the graph computing `fetch` where the `trainable` variables (ids) start to matter.

    Returns `(prefix, suffix)` `_SubGraph`s, images -> boundary -> `fetch`, or a reason (str) when the
    trainable part does not hang off one tensor of the frozen part (then it cannot be split)."""
    graph, fetch = _prune_tensors(flat, fetch)
    nodes = {n.name: n for n in graph.node}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(_source(i), []).append(node.name)

    def downstream(starts) -> set:
        seen, todo = set(), list(starts)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(consumers.get(name, ()))
        return seen

    images = _images_placeholder(function)
    captured = {internal.op.name: variables_by_handle.get(id(external)) for external, internal in function.graph.captures}
    trained = downstream(n for n, v in captured.items() if n in nodes and v is not None and id(v) in trainable)
    from_images = downstream([images])
    frontier = set()
    for name in trained:
        for i in nodes[name].input:
            if _source(i) in from_images and _source(i) not in trained:
                while nodes[_source(i)].op == "Identity":  # an inlined call's argument: look through it
                    i = nodes[_source(i)].input[0]
                frontier.add(_tensor(i))
    if _source(fetch) not in trained:
        return "no trainable variable reaches the output"
    if len(frontier) != 1:
        return f"the trained layers read {len(frontier)} tensors of the frozen ones, not one"
    (boundary,) = frontier
    if _source(boundary) == images:
        return "the first trained layer reads the images: there is nothing frozen to cache"
    prefix = _SubGraph(function, *_prune_tensors(graph, boundary), images, variables_by_handle)
    suffix = _SubGraph(function, *_prune_tensors(graph, fetch, boundary), "boundary", variables_by_handle)
    return prefix, suffix


def _all_handles(variable) -> list:
    """Every handle a restored function may have captured for `variable` (each copy's, if distributed)."""
    if isinstance(variable, tf.distribute.DistributedValues):
        return [v.handle for v in variable.values]
    return [variable.handle]


def _local_handle(variable):
    """The handle this replica reads; in cross-replica context (a call outside `strategy.run`), the
    first copy's, as reading a mirrored variable there does."""
    if isinstance(variable, tf.distribute.DistributedValues) and tf.distribute.in_cross_replica_context():
        return variable.values[0].handle
    return variable.handle


def _prune(graph_def, output: str) -> "graph_pb2.GraphDef":
    """The nodes `output` depends on (data and control inputs), in their original order."""
    nodes = {node.name: node for node in graph_def.node}
    keep, todo = set(), [output]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    pruned = graph_pb2.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.node.extend(node for node in graph_def.node if node.name in keep)
    return pruned


def _layer_calls(flat) -> dict[str, str]:
    """Layer name -> its output node in an inlined Keras-made module (`<call>/<layer>/...Call`), in
    network order."""
    layers = {}
    for node in flat.node:
        parts = node.name.split("/")
        if node.op == "IdentityN" and len(parts) == 3 and parts[2] in _CALL_OPS:
            layers[parts[1]] = node.name
    return layers


def _flat_graph(function) -> "graph_pb2.GraphDef":
    """A concrete function's graph with every nested function call inlined."""
    graph_def = function.graph.as_graph_def()
    return _inline_calls(graph_def, {f.signature.name: f for f in graph_def.library.function})


def _scope_outputs(flat, patterns: Sequence[str]) -> dict[str, str]:
    """Cut points of a module made without Keras (TF-slim and the like), from its op names: for each
    block (ops whose name scope matches `patterns`, e.g. `resnet_v2_50/block3/unit_6/...`), the last
    op whose output is read outside the block, in network order. Each is named by its op names up to
    the block's name, plus `output` (`resnet_v2_50/block3/unit_6/output`), the same in every trace."""
    compiled = [re.compile(p) for p in patterns]

    def block(name: str) -> tuple[str, str] | None:
        match = next((m for m in (r.search(name) for r in compiled) if m), None)
        return (match.group(1), name[:match.end()] + "output") if match else None

    blocks = {node.name: block(node.name) for node in flat.node}
    read_outside = set()
    for node in flat.node:
        for tensor in node.input:
            if not tensor.startswith("^") and (blocks.get(_source(tensor)) or (None,))[0] != (blocks[node.name] or (None,))[0]:
                read_outside.add(_source(tensor))
    outputs: dict[str, str] = {}
    for node in flat.node:
        if blocks[node.name] and node.name in read_outside and node.op not in ("Const", "ReadVariableOp", "Placeholder"):
            outputs[blocks[node.name][1]] = node.name  # the last such op of the block wins
    return outputs


def _cut_points(flat, patterns: Sequence[str] = GENERIC_BLOCKS) -> dict[str, str]:
    """Layer name -> output node: a Keras-made module's layer calls, else its blocks' outputs by op
    name scope (`_scope_outputs`)."""
    return _layer_calls(flat) or _scope_outputs(flat, patterns)


def module_layers(module, patterns: Sequence[str] = GENERIC_BLOCKS) -> list[str]:
    """The places a TF Hub module can be cut, bottom first: its layer names if Keras made it, else the
    output op of each block its op names show (`patterns`)."""
    return list(_cut_points(_flat_graph(_concrete_call(module, training=False)), patterns))


def _concrete_call(module, training: bool):
    """The module's `__call__` traced for `training` (or its only trace)."""
    functions = list(getattr(getattr(module, "__call__", None), "concrete_functions", ()))
    for fn in functions:
        args, kwargs = fn.structured_input_signature
        flag = kwargs.get("training", args[1] if len(args) > 1 else None)
        if flag is training:
            return fn
    if not functions:
        raise ValueError("The module has no traced `__call__`: it cannot be cut.")
    return functions[0]


class ModulePool:
    """Loaded SavedModels, kept for reuse in this process: loading one again costs seconds (restoring
    hundreds of functions), and a run loads the same backbone several times (the advisor and the
    model, `compare_scratch`, k-fold, the LR finder).

    A module is handed out again only when nothing can reach it any more: the `HubBackbone` that had
    it and every `keras.Variable` wrapping its variables have been garbage-collected. Its variables
    are then set back to the values they were loaded with, so the new layer starts from exactly the
    pretrained weights a fresh load gives. Modules loaded under a `tf.distribute` strategy scope are
    never pooled (their variables belong to that strategy).

    >>> from tl_keras.hub import MODULE_POOL
    >>> MODULE_POOL.loads  # SavedModel loads so far in this process   # doctest: +SKIP
    3
    """

    def __init__(self, max_per_path: int = 2):
        self.max_per_path = max_per_path
        self.loads = 0  # SavedModel loads, for tests and curious users
        self._entries: dict[str, list[dict]] = {}

    def acquire(self, path: str, owner: keras.layers.Layer):
        """A module of `path` for `owner` alone: a free pooled one (weights restored), else a new load."""
        import gc
        import weakref

        if tf.distribute.has_strategy():
            self.loads += 1
            return tf.saved_model.load(path)
        entries = self._entries.setdefault(path, [])
        for attempt in range(2):
            for entry in entries:
                if all(ref() is None for ref in entry["owners"]):
                    for variable, value in zip(entry["module"].variables, entry["values"]):
                        variable.assign(value)
                    entry["owners"] = [weakref.ref(owner)]
                    return entry["module"]
            if attempt == 0 and entries:
                gc.collect()  # Keras models sit in reference cycles: free the dead ones now
        module = tf.saved_model.load(path)
        self.loads += 1
        if len(entries) < self.max_per_path:
            entries.append({"module": module, "values": [v.numpy() for v in module.variables],
                            "owners": [weakref.ref(owner)]})
        return module

    def watch(self, module, wrappers: Sequence) -> None:
        """Keeps `module` in use while any of `wrappers` (the keras.Variables adopting its variables) lives."""
        import weakref

        for entries in self._entries.values():
            for entry in entries:
                if entry["module"] is module:
                    entry["owners"] += [weakref.ref(w) for w in wrappers]


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
        module = module if module is not None else MODULE_POOL.acquire(resolve_handle(handle), self)
        # A plain holder keeps the module out of Keras/TF object tracking: the wrapped variables
        # below are the only path from this layer to the module's state, so nothing is saved twice.
        self._hub = types.SimpleNamespace(module=module, accepts_training=_accepts_training(module), cuts={})
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
        MODULE_POOL.watch(module, self.hub_variables)
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
        functions = {flag: _concrete_call(module, flag) for flag in flags}
        flats = {flag: _flat_graph(fn) for flag, fn in functions.items()}
        layers = list(_cut_points(flats[False], self.block_patterns))
        if not layers:
            raise CutUnsupportedError(
                f"The SavedModel at {self.handle!r} has neither per-layer functions nor op names that show "
                "its blocks, so tl_keras cannot find its intermediate layers. Use cut=None."
            )
        self.cut_layer = resolve_cut(layers, cut, self.block_patterns)
        # Restored functions capture a variable's handle, or under tf.distribute the variable itself.
        by_handle = {id(h): v for v in module.variables for h in [v, *_all_handles(v)]}
        self._hub.cuts = {flag: _SubGraph.up_to_layer(functions[flag], flats[flag], by_handle, self.cut_layer, self.block_patterns)
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
        mode; or a string saying why the module cannot be split (no trainable block, every block
        trainable, the trained layers reading more than one frozen tensor, BatchNormalization not in
        inference mode). The split is found in the module's graph, op by op: the frozen part is what
        does not depend on a trainable variable, and it must hand one tensor to the trainable part.
        """
        if not self.inference_mode:
            return "BatchNormalization is not in inference mode, so the frozen part's output is not fixed"
        trainable = {id(kv.value) for kv in self.hub_variables if kv.trainable}
        if not trainable:
            return "no block is trainable"
        function = _concrete_call(self.module, training=False)
        flat = _flat_graph(function)
        by_handle = {id(h): v for v in self.module.variables for h in [v, *_all_handles(v)]}
        if self._hub.cuts:
            fetch = self._hub.cuts[False].fetch
        else:
            outputs = function.structured_outputs
            index = sorted(outputs).index(self.output_key or next(iter(outputs))) if isinstance(outputs, dict) else 0
            fetch = function.outputs[index].name
        parts = _split_at_trainable(function, flat, by_handle, trainable, fetch)
        if isinstance(parts, str):
            return parts
        bottom, top = (part.function() for part in parts)

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

    def call(self, inputs, training=None):
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
