"""The SavedModel graph surgery behind `HubBackbone`'s cuts and boundary caches (private).

A TF Hub module's `__call__` is a restored concrete function whose nested calls are inlined here
(`flat_graph`), so its ops can be read by name: a Keras-made module's layer calls, or a TF-slim
module's block scopes, are the places it can be cut (`cut_points`); `SubGraph` re-imports the part
of the graph that computes one tensor, reading the module's own variables, so gradients reach them;
`split_at_trainable` finds the one tensor where the trainable blocks start. With `hub`, the only code
that knows a SavedModel's insides."""

from __future__ import annotations

import re
from typing import Sequence

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tl_keras._internals import function_def_to_graph_def
from tl_keras.models.blocks import GENERIC_BLOCKS
from tl_keras.models.registry import BoundaryUnavailable

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
        body, flat_names = function_def_to_graph_def(fdef)
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


class SubGraph:
    """A differentiable piece of one of the module's concrete functions, taken from its inlined graph
    (`flat_graph`): what computes `fetch` from the tensor named `start`.

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
                    patterns: Sequence[str] = GENERIC_BLOCKS) -> "SubGraph":
        """Images -> the output of `layer` (a cut; see `cut_points`)."""
        layers = cut_points(flat, patterns)
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
            return run(images, *[local_handle(v) for v in variables])

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


def split_at_trainable(function, flat, variables_by_handle: dict, trainable: set, fetch: str):
    """Splits the graph computing `fetch` where the `trainable` variables (ids) start to matter.

    Returns `(prefix, suffix)` `SubGraph`s, images -> boundary -> `fetch`.

    Raises:
        BoundaryUnavailable: the trainable part does not hang off one tensor of the frozen part.
    """
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
        raise BoundaryUnavailable("no trainable variable reaches the output")
    if len(frontier) != 1:
        raise BoundaryUnavailable(f"the trained layers read {len(frontier)} tensors of the frozen ones, not one")
    (boundary,) = frontier
    if _source(boundary) == images:
        raise BoundaryUnavailable("the first trained layer reads the images: there is nothing frozen to cache")
    prefix = SubGraph(function, *_prune_tensors(graph, boundary), images, variables_by_handle)
    suffix = SubGraph(function, *_prune_tensors(graph, fetch, boundary), "boundary", variables_by_handle)
    return prefix, suffix


def all_handles(variable) -> list:
    """Every handle a restored function may have captured for `variable` (each copy's, if distributed)."""
    if isinstance(variable, tf.distribute.DistributedValues):
        return [v.handle for v in variable.values]
    return [variable.handle]


def local_handle(variable):
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


def flat_graph(function) -> "graph_pb2.GraphDef":
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


def cut_points(flat, patterns: Sequence[str] = GENERIC_BLOCKS) -> dict[str, str]:
    """Layer name -> output node: a Keras-made module's layer calls, else its blocks' outputs by op
    name scope (`_scope_outputs`)."""
    return _layer_calls(flat) or _scope_outputs(flat, patterns)


def module_layers(module, patterns: Sequence[str] = GENERIC_BLOCKS) -> list[str]:
    """The places a TF Hub module can be cut, bottom first: its layer names if Keras made it, else the
    output op of each block its op names show (`patterns`)."""
    return list(cut_points(flat_graph(concrete_call(module, training=False)), patterns))


def concrete_call(module, training: bool):
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
