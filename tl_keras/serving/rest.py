"""TF Serving's REST protocol, without a web framework: the served versions (`ModelVersions`:
load, keep the newest, status and metadata), requests (`parse_predict`: row or columnar JSON, base64
binaries) and answers (`format_predict`), and the batching of concurrent requests (`Batcher`)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import threading
from typing import Any, Callable

import numpy as np

log = logging.getLogger("tl_keras.server")  # the name users configure; kept from 0.1



class RequestError(Exception):
    """A request the server answers with `{"error": message}` and `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Signature:
    function: Callable
    inputs: dict  # name -> tf.TensorSpec
    outputs: dict  # name -> tf.TensorSpec


@dataclasses.dataclass
class Version:
    number: int
    path: str
    loaded: Any
    signatures: dict[str, Signature]
    class_names: list[str]


def _load_version(number: int, path: str) -> Version:
    import tensorflow as tf

    from tl_keras.export.saved_model import read_labels

    loaded = tf.saved_model.load(path)
    signatures = {}
    for name, function in loaded.signatures.items():
        inputs = function.structured_input_signature[1]
        outputs = {key: tf.TensorSpec(t.shape, t.dtype) for key, t in function.structured_outputs.items()}
        signatures[name] = Signature(function, dict(inputs), outputs)
    labels = os.path.join(path, "assets", "labels.txt")
    return Version(number, path, loaded, signatures, read_labels(path) if os.path.exists(labels) else [])


class ModelVersions:
    """The loaded versions of one model folder; `refresh()` loads new ones and drops old ones."""

    def __init__(self, base: str, keep: int = 1):
        self.base, self.keep = base, keep
        self.loaded: dict[int, Version] = {}
        self.failed: dict[int, tuple[str, tuple]] = {}  # version -> (error, file stamp when it failed)
        self._lock = threading.Lock()

    def on_disk(self) -> list[int]:
        """Complete version folders (a `saved_model.pb` inside; exports appear whole), newest last."""
        if not os.path.isdir(self.base):
            return []
        return sorted(int(d) for d in os.listdir(self.base)
                      if d.isdigit() and os.path.exists(os.path.join(self.base, d, "saved_model.pb")))

    def refresh(self) -> list[int]:
        """Loads the newest `keep` versions not loaded yet, then unloads the rest; returns those loaded now."""
        from tl_keras.export.saved_model import files_stamp

        wanted = self.on_disk()[-self.keep:]
        new = []
        for number in wanted:
            stamp = files_stamp(os.path.join(self.base, str(number)))
            if number in self.loaded or self.failed.get(number, (None, None))[1] == stamp:
                continue  # loaded, or failed and unchanged since: a folder still being copied is tried again
            try:
                version = _load_version(number, os.path.join(self.base, str(number)))
            except Exception as err:  # a broken version must not stop the ones that work
                self.failed[number] = (f"{type(err).__name__}: {err}", stamp)
                log.error("version %d of %s failed to load: %s", number, self.base, err)
                continue
            self.failed.pop(number, None)
            with self._lock:
                self.loaded[number] = version
            new.append(number)
            log.info("loaded version %d from %s", number, version.path)
        if wanted:
            with self._lock:
                for number in [n for n in self.loaded if n not in wanted and n < max(self.loaded)]:
                    del self.loaded[number]
                    log.info("unloaded version %d", number)
        return new

    def get(self, model: str, version: str | None) -> Version:
        with self._lock:
            if version is None:
                if not self.loaded:
                    raise RequestError(f"Servable not found for request: Latest({model})", 404)
                return self.loaded[max(self.loaded)]
            if not version.isdigit() or int(version) not in self.loaded:
                raise RequestError(f"Servable not found for request: Specific({model}, {version})", 404)
            return self.loaded[int(version)]

    def status(self, version: str | None) -> dict:
        with self._lock:
            states = {n: ("AVAILABLE", "OK", "") for n in self.loaded}
        states.update({n: ("END", "UNKNOWN", message) for n, (message, _) in self.failed.items()})
        if version is not None:
            states = {n: s for n, s in states.items() if str(n) == version}
        return {"model_version_status": [
            {"version": str(n), "state": state, "status": {"error_code": code, "error_message": message}}
            for n, (state, code, message) in sorted(states.items(), reverse=True)
        ]}


def _tensor_info(spec, name: str) -> dict:
    from tensorflow.core.framework import types_pb2

    dims = None if spec.shape.rank is None else [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
            "tensor_shape": {"dim": dims or [], "unknown_rank": dims is None}, "name": name}


def metadata(model: str, version: Version) -> dict:
    """`GET .../metadata`: TF Serving's `GetModelMetadata` answer, as its REST API writes it."""
    defs = {
        name: {"inputs": {k: _tensor_info(s, f"{name}_{k}:0") for k, s in sig.inputs.items()},
               "outputs": {k: _tensor_info(s, f"{name}_{k}:0") for k, s in sig.outputs.items()},
               "method_name": "tensorflow/serving/predict"}
        for name, sig in version.signatures.items()
    }
    return {"model_spec": {"name": model, "signature_name": "", "version": str(version.number)},
            "metadata": {"signature_def": {"signature_def": defs}}}


def _value(value: Any, spec, where: str) -> np.ndarray:
    """A JSON value as an array of `spec`'s dtype; `{"b64": ...}` as bytes for string inputs."""
    import tensorflow as tf

    if spec.dtype == tf.string:
        def leaf(v):
            if isinstance(v, dict) and set(v) == {"b64"}:
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except (ValueError, TypeError) as err:
                    raise RequestError(f"{where}: the 'b64' value is not valid base64 ({err}).") from None
            if isinstance(v, str):
                return v.encode()
            if isinstance(v, list):
                return [leaf(x) for x in v]
            raise RequestError(f"{where}: expected a string or {{\"b64\": ...}}, got {type(v).__name__}.")
        array = np.array(leaf(value), dtype=object)
    else:
        try:
            array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError, OverflowError) as err:
            raise RequestError(f"{where}: cannot be read as {spec.dtype.name} ({err}).") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(f"{where}: expected shape {_shape(spec.shape)}, got {list(array.shape)}.")
    return array


def _shape(shape) -> list:
    return ["?" if d is None else d for d in shape.as_list()]


def parse_predict(body: bytes, signatures: dict[str, Signature]) -> tuple[str, dict[str, np.ndarray], bool]:
    """A `:predict` body -> (signature name, input arrays, row format?)."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"The request body is not JSON: {err}") from None
    if not isinstance(request, dict):
        raise RequestError("The request body must be a JSON object with \"instances\" or \"inputs\".")
    name = request.get("signature_name", "serving_default")
    if name not in signatures:
        raise RequestError(f"Serving signature name: \"{name}\" not found in signature def; the model has "
                           f"{', '.join(sorted(signatures))}.")
    specs = signatures[name].inputs
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("The request must have exactly one of \"instances\" (row format) or \"inputs\" (columnar).")
    rows = "instances" in request
    data = request["instances" if rows else "inputs"]
    if rows:
        if not isinstance(data, list) or not data:
            raise RequestError("\"instances\" must be a non-empty list.")
        named = all(isinstance(i, dict) and set(i) != {"b64"} for i in data)
        if named:
            for index, instance in enumerate(data):
                if set(instance) != set(specs):
                    raise RequestError(f"instances[{index}] must name the inputs {sorted(specs)} of signature "
                                       f"\"{name}\". Received: {sorted(instance)}.")
        columns = {k: [i[k] for i in data] for k in specs} if named else {next(iter(specs)): data}
        if not named and len(specs) != 1:
            raise RequestError(f"Signature \"{name}\" has inputs {sorted(specs)}: each instance must name them.")
    else:
        columns = data if isinstance(data, dict) and set(data) != {"b64"} else {next(iter(specs)): data}
    unknown = sorted(set(columns) - set(specs))
    missing = sorted(k for k in specs if columns.get(k) is None)
    if unknown or missing:
        raise RequestError(f"Signature \"{name}\" takes the inputs {sorted(specs)}; "
                           + (f"unknown: {unknown}" if unknown else f"missing: {missing}") + ".")
    return name, {k: _value(columns[k], specs[k], f"input '{k}'") for k in specs}, rows


def _json_value(array: np.ndarray, name: str) -> Any:
    if array.dtype == object:  # strings: text, or {"b64": ...} for binary outputs (TF Serving's rule)
        def leaf(v):
            if isinstance(v, np.ndarray):
                return [leaf(x) for x in v]
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode()}
            return v.decode("utf-8", errors="replace")
        return leaf(array)
    return array.tolist()


def format_predict(outputs: dict[str, np.ndarray], rows: bool) -> dict:
    """Row format: `{"predictions": [...]}` (one value per instance, or a dict per instance when the
    signature has several outputs); columnar: `{"outputs": ...}`."""
    if rows:
        n = len(next(iter(outputs.values())))
        values = {k: _json_value(v, k) for k, v in outputs.items()}
        if len(values) == 1:
            return {"predictions": next(iter(values.values()))}
        return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(n)]}
    values = {k: _json_value(v, k) for k, v in outputs.items()}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}


def run_signature(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Calls the signature; an error in the inputs (a payload that is not an image) is a RequestError."""
    import tensorflow as tf

    try:
        outputs = signature.function(**{k: tf.constant(v, dtype=signature.inputs[k].dtype) for k, v in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise RequestError(error_text(getattr(err, "message", None) or str(err)) or type(err).__name__) from None
    return {k: v.numpy() for k, v in outputs.items()}


def error_text(message: str) -> str:
    """What a TensorFlow error says, without its graph framing: `Graph execution error:`, `Detected
    at node ...`, `[[{{node ...}}]]`; an `Assert`'s bracketed pieces joined as one sentence."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(("Graph execution error", "Detected at node", "<stack traces", "[["))]
    text = " ".join(kept) or message.strip()
    if text.startswith("assertion failed: "):
        text = text[len("assertion failed: "):].strip()
        text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        text = text.replace("] [", " ").replace("[ ", "[").replace(" ]", "]")
    return re.sub(r"\s*\[\[\{\{.*$", "", text).strip()


@dataclasses.dataclass
class _Job:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future


class Batcher:
    """Runs signatures in a thread pool, merging concurrent requests of one key into one batch."""

    def __init__(self, max_batch_size: int, timeout_ms: float, executor: concurrent.futures.Executor):
        self.max_batch_size, self.timeout = max_batch_size, timeout_ms / 1000
        self.executor = executor
        self._queues: dict[tuple, list[_Job]] = {}
        self._timers: dict[tuple, asyncio.TimerHandle] = {}

    async def run(self, signature: Signature, key: tuple, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        rows = len(next(iter(inputs.values())))
        if self.max_batch_size <= 1 or rows >= self.max_batch_size:
            return await loop.run_in_executor(self.executor, run_signature, signature, inputs)
        key = (id(signature), key)
        job = _Job(inputs, rows, loop.create_future())
        queue = self._queues.setdefault(key, [])
        queue.append(job)
        if sum(j.rows for j in queue) >= self.max_batch_size:
            self._flush(key, signature)
        elif len(queue) == 1:
            self._timers[key] = loop.call_later(self.timeout, self._flush, key, signature)
        return await job.future

    def _flush(self, key: tuple, signature: Signature) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        jobs = self._queues.pop(key, [])
        if jobs:
            asyncio.ensure_future(self._execute(signature, jobs))

    async def _execute(self, signature: Signature, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        merged = {k: np.concatenate([j.inputs[k] for j in jobs]) for k in jobs[0].inputs}
        try:
            outputs = await loop.run_in_executor(self.executor, run_signature, signature, merged)
        except RequestError as err:
            if len(jobs) == 1:
                _settle(jobs[0].future, None, err)
                return
            # One request's input broke the batch: run each alone, so only that one fails.
            for job in jobs:
                try:
                    _settle(job.future, await loop.run_in_executor(self.executor, run_signature, signature, job.inputs), None)
                except Exception as err:
                    _settle(job.future, None, err)
            return
        except Exception as err:
            for job in jobs:
                _settle(job.future, None, err)
            return
        start = 0
        for job in jobs:
            _settle(job.future, {k: v[start:start + job.rows] for k, v in outputs.items()}, None)
            start += job.rows


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
