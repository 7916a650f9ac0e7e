"""Serving exports over HTTP with TF Serving's REST API, so a client written for it works unchanged.

`tl-keras serve MODEL_BASE` serves `MODEL_BASE/VERSION/` folders (the layout `export_saved_model`
writes and TF Serving reads) as the model `NAME` (the folder's name):

- `GET /v1/models/NAME[/versions/N]`: version status (`model_version_status`);
- `GET /v1/models/NAME[/versions/N]/metadata`: every signature's inputs and outputs (`signature_def`);
- `POST /v1/models/NAME[/versions/N]:predict` with `"instances"` (row format, answered with
  `"predictions"`) or `"inputs"` (columnar, answered with `"outputs"`), `"signature_name"` (default
  `serving_default`), and `{"b64": ...}` for binary inputs (`image_bytes`);
- `GET /`: a page where a person drops an image and sees the top classes (`GET /labels.json` gives
  it the class names of the version it asks).

As TF Serving does, the folder is polled (every `poll_seconds`) and a new version folder is loaded
without a restart; the newest `keep_versions` versions stay loaded and requests without a version go
to the newest. Bad requests get `{"error": "..."}` with status 400 (404 for an unknown model or
version, 413 for a body over `max_request_bytes`) and never stop the server. Concurrent requests to
the same signature, with inputs of the same shape past the batch axis, are run as one batch (at most
`max_batch_size` rows, waiting at most `batch_timeout_ms` for company); when a batch fails on one
request's input, its requests are run one by one, so only the bad one gets the error. SIGTERM or
SIGINT stop accepting connections and let requests in progress finish.

Built on aiohttp (the `serve` extra): asyncio handles the connections, and TensorFlow runs in a small
thread pool, where it releases the GIL.

Example:

>>> from tl_keras.server import ServerSettings, serve
>>> serve("saved_models/hymenoptera", ServerSettings(port=8501))  # doctest: +SKIP
"""

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

log = logging.getLogger("tl_keras.server")

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How `serve` listens, batches and reloads.

    Args:
        host: the address to listen on. Defaults to "127.0.0.1" (this machine only).
        port: the port. Defaults to 8501, TF Serving's REST port.
        model_name: the `NAME` in the URLs. Defaults to the model folder's name.
        max_batch_size: most rows run as one batch; 1 turns batching off. Defaults to 32.
        batch_timeout_ms: how long a request waits for others to share its batch. Defaults to 5.
        max_request_bytes: the largest request body accepted. Defaults to 32 MiB.
        poll_seconds: how often the folder is checked for new versions. Defaults to 1.0.
        keep_versions: how many of the newest versions stay loaded. Defaults to 1.
        threads: TensorFlow calls run at once. Defaults to 4.
    """

    host: str = "127.0.0.1"
    port: int = 8501
    model_name: str | None = None
    max_batch_size: int = 32
    batch_timeout_ms: float = 5.0
    max_request_bytes: int = 32 * 1024 * 1024
    poll_seconds: float = 1.0
    keep_versions: int = 1
    threads: int = 4

    def __post_init__(self):
        for name in ("port", "max_batch_size", "max_request_bytes", "keep_versions", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "port" else 1):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        for name in ("batch_timeout_ms", "poll_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={getattr(self, name)!r}")


class RequestError(Exception):
    """A request the server answers with `{"error": message}` and `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------------
# Versions: load, keep the newest, answer status and metadata.


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

    from tl_keras.export import read_labels

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
        from tl_keras.export import files_stamp

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


# ---------------------------------------------------------------------------------------------------
# Requests: TF Serving's JSON in, arrays out; arrays in, TF Serving's JSON out.


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


# ---------------------------------------------------------------------------------------------------
# Batching: concurrent requests to one signature with the same input shapes run as one call.


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


# ---------------------------------------------------------------------------------------------------
# The application.


class _Model:
    """The request handlers of one served model folder."""

    def __init__(self, base: str, settings: ServerSettings):
        self.base, self.settings = base, settings
        self.name = settings.model_name or os.path.basename(os.path.normpath(base))
        self.versions = ModelVersions(base, settings.keep_versions)
        self.executor = concurrent.futures.ThreadPoolExecutor(settings.threads, thread_name_prefix="tl_keras_serve")
        self.batcher = Batcher(settings.max_batch_size, settings.batch_timeout_ms, self.executor)

    def _route(self, request) -> re.Match:
        match = _PATH.match(request.path)
        if not match:
            raise RequestError(f"Malformed request: {request.method} {request.path}", 404)
        if match["name"] != self.name:
            raise RequestError(f"Servable not found for request: Latest({match['name']})", 404)
        return match

    async def get(self, request):
        from aiohttp import web

        match = self._route(request)
        if match["verb"]:
            raise RequestError(f"Malformed request: GET {request.path} (use POST for :{match['verb']})", 405)
        if match["metadata"]:
            return web.json_response(metadata(self.name, self.versions.get(self.name, match["version"])))
        status = self.versions.status(match["version"])
        if not status["model_version_status"]:
            raise RequestError(f"Could not find version {match['version']} of model {self.name}" if match["version"]
                               else f"Could not find any versions of model {self.name}", 404)
        return web.json_response(status)

    async def post(self, request):
        from aiohttp import web

        match = self._route(request)
        if match["verb"] != "predict":
            raise RequestError(f"Malformed request: POST {request.path}" if not match["verb"]
                               else f"The verb :{match['verb']} is not supported; use :predict.")
        version = self.versions.get(self.name, match["version"])
        signature_name, inputs, rows = parse_predict(await request.read(), version.signatures)
        key = tuple((k, str(v.dtype), v.shape[1:]) for k, v in sorted(inputs.items()))
        outputs = await self.batcher.run(version.signatures[signature_name], key, inputs)
        return web.json_response(format_predict(outputs, rows))

    async def labels(self, request):
        from aiohttp import web

        version = self.versions.get(self.name, request.query.get("version"))
        return web.json_response({"model": self.name, "version": version.number, "class_names": version.class_names})

    async def page(self, request):
        from aiohttp import web

        return web.Response(text=PAGE.replace("{{NAME}}", json.dumps(self.name)), content_type="text/html")

    async def start(self, app):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.versions.refresh)
        if not self.versions.loaded:
            log.warning("no loadable version in %s yet: waiting for one", self.base)
        app["poller"] = asyncio.ensure_future(self._poll())

    async def _poll(self):
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await loop.run_in_executor(None, self.versions.refresh)

    async def stop_polling(self, app):
        app["poller"].cancel()

    async def close(self, app):  # after the requests in progress have been answered
        self.executor.shutdown(wait=True)


def _error_middleware(max_request_bytes: int):
    from aiohttp import web

    @web.middleware
    async def errors(request, handler):
        try:
            return await handler(request)
        except RequestError as err:
            return web.json_response({"error": str(err)}, status=err.status)
        except web.HTTPException as err:  # aiohttp's own: body too large, no such route, wrong method
            if err.status < 400:
                raise
            message = f"The request body is larger than {max_request_bytes} bytes." if err.status == 413 else err.reason
            return web.json_response({"error": message}, status=err.status)
        except Exception as err:  # a bug, not the client's fault: 500, and the server goes on
            log.exception("error answering %s %s", request.method, request.path)
            return web.json_response({"error": f"{type(err).__name__}: {err}"}, status=500)

    return errors


def make_app(model_dir: str, settings: ServerSettings = ServerSettings()):
    """The aiohttp application serving `model_dir` (`NAME/`, holding version folders)."""
    from aiohttp import web

    model = _Model(os.path.abspath(model_dir), settings)
    app = web.Application(client_max_size=settings.max_request_bytes,
                          middlewares=[_error_middleware(settings.max_request_bytes)])
    app.router.add_get("/", model.page)
    app.router.add_get("/labels.json", model.labels)
    app.router.add_get("/v1/models/{path:.*}", model.get)
    app.router.add_post("/v1/models/{path:.*}", model.post)
    app.on_startup.append(model.start)
    app.on_shutdown.append(model.stop_polling)
    app.on_cleanup.append(model.close)
    app["model"] = model
    return app


def serve(model_dir: str, settings: ServerSettings = ServerSettings(), ready: Callable[[str], None] | None = None) -> None:
    """Serves `model_dir` until SIGINT or SIGTERM; requests in progress finish (up to 30 s).

    `ready(url)` is called once the first version is loaded and the port is open.
    """
    try:
        from aiohttp import web
    except ImportError:
        raise ImportError("`tl-keras serve` needs aiohttp: pip install \"tl_keras[serve]\"") from None
    if not os.path.isdir(model_dir):
        raise ValueError(f"`model_dir` must be a model folder holding version folders (NAME/1/, ...). Received: {model_dir!r} (not a folder)")
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        raise ValueError(f"{model_dir!r} is one version of a model: serve its parent folder NAME/, which holds the "
                         "version folders (as TF Serving's --model_base_path), so new versions are picked up.")
    app = make_app(model_dir, settings)
    url = f"http://{settings.host}:{settings.port}/v1/models/{app['model'].name}"
    # run_app calls `print` once the versions are loaded (on_startup) and the port is open.
    web.run_app(app, host=settings.host, port=settings.port, shutdown_timeout=30, access_log=None,
                print=(lambda _: ready(url)) if ready else None)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tl_keras: try the model</title>
<style>
 body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
 #drop { border: 3px dashed #888; border-radius: 12px; padding: 2em; text-align: center; }
 #drop.over { border-color: #06c; background: #eef5ff; }
 #preview { max-width: 100%; max-height: 16em; display: block; margin: 1em auto; }
 table { border-collapse: collapse; width: 100%; } td { padding: .3em; }
 .bar { background: #06c; height: 1em; } #error { color: #b00; }
</style></head>
<body>
<h1>Model <span id="name"></span></h1>
<div id="drop">Drop an image here, or <input type="file" id="file" accept="image/*"></div>
<img id="preview" alt="">
<p id="error" role="alert"></p>
<table id="results"></table>
<p id="version"></p>
<script>
const NAME = {{NAME}};
document.getElementById("name").textContent = NAME;
const drop = document.getElementById("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); classify(e.dataTransfer.files[0]); });
document.getElementById("file").addEventListener("change", e => classify(e.target.files[0]));

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.split(",")[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function classify(file) {
  if (!file) return;
  const error = document.getElementById("error"), results = document.getElementById("results");
  error.textContent = ""; results.innerHTML = "";
  document.getElementById("preview").src = URL.createObjectURL(file);
  try {
    const labels = await (await fetch("/labels.json")).json();
    const response = await fetch(`/v1/models/${NAME}/versions/${labels.version}:predict`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({signature_name: "serving_bytes", instances: [{image_bytes: {b64: await base64(file)}}]})});
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    const p = answer.predictions[0].probabilities;
    const top = p.map((v, i) => [v, labels.class_names[i]]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    for (const [v, label] of top) {
      const row = results.insertRow();
      row.className = "result";
      row.insertCell().textContent = label;
      row.insertCell().textContent = v.toFixed(3);
      row.insertCell().innerHTML = `<div class="bar" style="width:${(100 * v).toFixed(1)}%"></div>`;
    }
    document.getElementById("version").textContent = `version ${labels.version}`;
  } catch (e) {
    error.textContent = e.message;
  }
}
</script>
</body></html>
"""
