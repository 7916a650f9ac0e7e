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

Examples:
    >>> from tl_keras.serving.server import ServerSettings, serve
    >>> serve("saved_models/hymenoptera", ServerSettings(port=8501))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
from typing import Callable

from tl_keras.serving.rest import (
    Batcher,
    ModelVersions,
    RequestError,
    format_predict,
    metadata,
    parse_predict,
)

log = logging.getLogger("tl_keras.server")  # the name users configure; kept from 0.1

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


# Versions, requests and batching are `tl_keras.serving.rest`'s; the application is here.


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

        return web.Response(text=page_html().replace("{{NAME}}", json.dumps(self.name)), content_type="text/html")

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


def page_html() -> str:
    """The page `GET /` answers: `page.html` beside this module, where a person drops an image."""
    from importlib import resources

    return resources.files("tl_keras.serving").joinpath("page.html").read_text(encoding="utf-8")
