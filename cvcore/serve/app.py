"""The HTTP API and the web page of ``cvcore serve`` (FastAPI on uvicorn).

Routes
------
``GET /``                                  the web page (static files beside this module)
``GET /healthz``                           200 while the process serves requests
``GET /readyz``                            200 once every model is loaded, compiled and warmed
``GET /metrics``                           Prometheus text format
``GET /v1/models``                         the models: name, classes, input size, metrics
``GET /v1/models/{name}``                  one model
``POST /v1/models/{name}/predict``         one image: multipart field ``file`` or raw bytes
                                          (``?tta=true``: test-time augmentation, CNNs)
``POST /v1/models/{name}/predict_batch``   several images: multipart fields ``files``
``POST /v1/models/{name}/explain``         the prediction and a map of why (``class`` optional)
``GET /docs``, ``GET /openapi.json``       OpenAPI documentation (FastAPI's)

Request path of a prediction: the body is read with a size bound (413 past it), the image is
decoded and resized to the model's input in a decoding thread (:func:`cvcore.io.datasets.
decode_image`, the function ``cvcore predict`` uses on files), then queued for the model's :class:`~cvcore.serve.batching.Batcher`, whose
batches run :meth:`TrainedModel.predict_proba` on the one serving thread. The event loop only
moves bytes and futures.

Errors are JSON ``{"error": code, "detail": message, "status": status}``: 400 (no image, corrupt
or truncated, a decompression bomb), 404 (unknown model), 413 (upload too large), 415 (not an
image format), 422 (bad query parameter), 503 with ``Retry-After`` (queue full, request timed out,
not ready). Bad input never gives a 500.
"""
# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvcore.serve.batching import Batcher, Overloaded, Timeout
from cvcore.serve.metrics import BATCH_BUCKETS, Registry
from cvcore.serve.models import ServedModel, file_signature, find_model_files, warm_up

__all__ = ["ServeConfig", "create_app", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger("cvcore.serve")

#: Seconds a client is told to wait after a 503 (``Retry-After``).
RETRY_AFTER_SECONDS = 1
#: An oversized body is read and thrown away up to this many times the limit before the
#: answer, so an ordinary client gets its 413 instead of a reset connection.
DRAIN_FACTOR = 8


@dataclass
class ServeConfig:
    """Settings of a server (the ``cvcore serve`` options).

    Attributes
    ----------
    max_batch_size : int
        Largest batch of one forward pass (1 = no batching).
    max_delay_ms : float
        How long the first request of a batch waits for others (milliseconds).
    max_queue : int
        Requests that may wait per model; more get 503.
    timeout : float
        Seconds a request may wait for its result; past it 503.
    max_upload_bytes : int
        Largest request body; more gets 413.
    max_pixels : int
        Largest decoded image (width x height); more is refused as a decompression bomb (400).
    max_batch_files : int
        Most images in one ``predict_batch`` request.
    decode_threads : int
        Uploads decoded at the same time (bounds the memory of decoded images).
    top_k : int
        Classes returned by default.
    reload_interval : float
        Seconds between checks of the model files for replacement (0 = never).
    """
    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 256
    timeout: float = 30.0
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 36_000_000
    max_batch_files: int = 64
    decode_threads: int = 2
    top_k: int = 5
    reload_interval: float = 1.0


class ApiError(Exception):
    """An answer other than 200: status, machine-readable code, human-readable detail."""

    def __init__(self, status: int, code: str, detail: str, headers=None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _error_for_image(exc: Exception) -> ApiError:
    from cvcore.io.images import NotAnImageError
    if isinstance(exc, NotAnImageError):
        return ApiError(415, "unsupported_media_type", str(exc))
    text = str(exc)
    code = "decompression_bomb" if "decompression bomb" in text else (
        "truncated_or_corrupt" if "truncated or corrupt" in text else "bad_image")
    return ApiError(400, code, text)


class Server:
    """State of one running server: models, batchers, the worker thread, metrics."""

    def __init__(self, sources, config: ServeConfig):
        self.config = config
        self.paths = find_model_files(sources)
        self.models = {name: ServedModel(name, path) for name, path in self.paths.items()}
        # Read every file now, so that a bad one stops `cvcore serve` with one line before the
        # port opens; compiling and warming happen after it opens (/readyz says when).
        self._loaded = {name: ServedModel.read(m.path) for name, m in self.models.items()}
        self.batchers: dict = {}
        self.ready = False
        self.started = time.time()
        # One worker thread runs every forward pass and explanation (in order): the kernels'
        # own threads already use every core, and a network's layers keep per-call state.
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cvcore-model")
        self.decode_slots = None
        self._watch_task = None
        self._prepare_in_decoder = _threadsafe_kernels()
        m = self.metrics = Registry()
        self.m_requests = m.counter("cvcore_http_requests_total",
                                    "HTTP requests by route and status", ("route", "status"))
        self.m_latency = m.histogram("cvcore_http_request_duration_seconds",
                                     "HTTP request latency by route", ("route",))
        self.m_batch = m.histogram("cvcore_batch_size", "Images per forward pass", ("model",),
                                   buckets=BATCH_BUCKETS)
        self.m_forward = m.histogram("cvcore_batch_duration_seconds",
                                     "Seconds per forward pass (one batch)", ("model",))
        self.m_images = m.counter("cvcore_images_total", "Images predicted", ("model",))
        self.m_reloads = m.counter("cvcore_model_reloads_total",
                                   "Model file reloads by result", ("model", "result"))
        m.gauge("cvcore_queue_depth", "Images waiting for a batch", ("model",),
                read=lambda: {(n, ): b.depth for n, b in self.batchers.items()})
        m.gauge("cvcore_ready", "1 once every model is warmed", (),
                read=lambda: {(): int(self.ready)})

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        import anyio
        loop = asyncio.get_running_loop()
        self.decode_slots = anyio.CapacityLimiter(self.config.decode_threads)
        for served in self.models.values():
            loaded = self._loaded.pop(served.name)
            await loop.run_in_executor(self.executor, warm_up, loaded[0],
                                       self.config.max_batch_size)
            served.install(loaded)
            batcher = Batcher(self._runner(served), self.executor,
                              max_batch_size=self.config.max_batch_size,
                              max_delay=self.config.max_delay_ms / 1000.0,
                              max_queue=self.config.max_queue,
                              on_batch=self._batch_observer(served.name))
            batcher.start()
            self.batchers[served.name] = batcher
            log.info("model %s (%s, version %s) ready", served.name, served.model.kind,
                     served.version)
        if self.config.reload_interval > 0:
            self._watch_task = loop.create_task(self._watch())
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for b in self.batchers.values():
            await b.stop()
        self.executor.shutdown(wait=True)

    async def _watch(self) -> None:
        """Reload a model whose file was replaced; the old one answers until the new is warm."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.reload_interval)
            for served in self.models.values():
                try:
                    sig = file_signature(served.path)
                except OSError:
                    continue                      # mid-replacement or removed: keep serving
                if sig == served.signature or sig == served.failed_signature:
                    continue
                try:
                    loaded = await loop.run_in_executor(None, ServedModel.read, served.path)
                    await loop.run_in_executor(self.executor, warm_up, loaded[0],
                                               self.config.max_batch_size)
                except (ValueError, OSError, KeyError, TypeError) as exc:
                    served.failed_signature = sig
                    self.metrics.update(self.m_reloads.inc, served.name, "error")
                    log.error("reloading %s failed, the previous version keeps serving: %s",
                              served.path, exc)
                    continue
                old = served.version
                served.install(loaded)
                self.metrics.update(self.m_reloads.inc, served.name, "ok")
                log.info("model %s reloaded: version %s -> %s", served.name, old,
                         served.version)

    # -- the model side (worker thread) -------------------------------------------------------
    def _runner(self, served: ServedModel):
        def run(images):
            model, version = served.model, served.version       # one model for the batch
            shape = tuple(model.size) + (() if model.mode == "gray" else (3,))
            batch = np.stack(images) if all(im.shape == shape for im in images) else images
            proba = model.predict_proba(batch)
            return [(p, version, model) for p in proba]
        return run

    def _batch_observer(self, name):
        def observe(size, seconds):
            self.metrics.update(self.m_batch.observe, name, value=size)
            self.metrics.update(self.m_forward.observe, name, value=seconds)
            self.metrics.update(self.m_images.inc, name, amount=size)
        return observe

    # -- the request side ---------------------------------------------------------------------
    def get(self, name: str) -> ServedModel:
        if not self.ready:
            raise ApiError(503, "not_ready", "the models are still loading and warming up",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        served = self.models.get(name)
        if served is None:
            raise ApiError(404, "unknown_model", f"no model called {name!r}; the server has "
                           f"{', '.join(sorted(self.models))} (GET /v1/models)")
        return served

    async def decode(self, served: ServedModel, data: bytes, name: str = "upload"):
        """Bytes -> uint8 image at the model's input (or as read, if resizing must wait for
        the worker thread); ApiError 400/415 for anything that is not a good image."""
        import anyio
        from cvcore.io.datasets import decode_image
        from cvcore.train.pipeline import prepare_images
        model = served.model

        def work():
            # as `cvcore predict`: decode_image, then predict_proba's own prepare_images
            image = decode_image(data, model.mode, max_pixels=self.config.max_pixels)
            if self._prepare_in_decoder:
                image = prepare_images([image], model.size, model.mode)[0]
            return image
        try:
            return await anyio.to_thread.run_sync(work, limiter=self.decode_slots)
        except (ValueError, TypeError) as exc:
            raise _error_for_image(_renamed(exc, name)) from None

    async def predict(self, served: ServedModel, image) -> tuple:
        try:
            return await self.batchers[served.name].submit(image, timeout=self.config.timeout)
        except (Overloaded, Timeout) as exc:
            raise ApiError(503, "overloaded" if isinstance(exc, Overloaded) else "timeout",
                           str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None

    async def predict_tta(self, served: ServedModel, image) -> tuple:
        """Test-time augmentation (:meth:`TrainedModel.predict_proba` with ``tta=True``): ten
        forward passes of one image, run on the model thread outside the batcher, like an
        explanation; ApiError 422 for a model trained without augmentation."""
        from cvcore.train.pipeline import CNN_MODELS
        model, version = served.model, served.version
        if model.kind not in CNN_MODELS:
            raise ApiError(422, "invalid_parameter", f"tta: a {model.kind} model is trained "
                           f"on unaugmented images, so it has no test-time views to average")
        loop = asyncio.get_running_loop()
        try:
            proba = await asyncio.wait_for(loop.run_in_executor(
                self.executor, lambda: model.predict_proba([image], tta=True)[0]),
                self.config.timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "timeout", f"no prediction within the request timeout of "
                           f"{self.config.timeout:g} s",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except ValueError as exc:                      # e.g. a model trained --no-augment
            raise ApiError(422, "invalid_parameter", f"tta: {exc}") from None
        return proba, version, model

    async def explain(self, served: ServedModel, image, class_index):
        from cvcore.serve.explain import explain
        loop = asyncio.get_running_loop()
        model, version = served.model, served.version
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self.executor, explain, model, image, class_index),
                self.config.timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "timeout", f"no explanation within the request timeout of "
                           f"{self.config.timeout:g} s",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        return result, version, model


def _renamed(exc, name):
    """The decoder calls the data "upload"; use the client's file name when there is one."""
    if name != "upload" and str(exc).startswith("upload:"):
        return type(exc)(name + str(exc)[len("upload"):])
    return exc


def _threadsafe_kernels() -> bool:
    """Whether Numba's threading layer lets two threads run parallel kernels at once (OpenMP
    and TBB do; the fallback ``workqueue`` does not, and then resizing joins the forward pass
    on the worker thread)."""
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def _probe(n):
        s = 0
        for i in prange(n):
            s += i
        return s
    _probe(2)
    return numba.threading_layer() in ("omp", "tbb")


def _report_failure(task):
    if not task.cancelled() and task.exception() is not None:
        log.error("warming the models failed; the server stays unready",
                  exc_info=task.exception())


def _top(proba, class_names, k):
    order = np.argsort(-proba, kind="stable")[:k]
    return [{"label": class_names[i], "index": int(i), "probability": float(proba[i])}
            for i in order]


def _png_base64(heat: np.ndarray) -> str:
    """A (H, W) map as an 8-bit grey PNG (0..255 over the map's range), base64."""
    from PIL import Image
    lo, hi = float(heat.min()), float(heat.max())
    scaled = np.zeros(heat.shape, np.uint8) if hi <= lo else \
        np.round((heat - lo) / (hi - lo) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(scaled).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _MetricsMiddleware:
    """Pure ASGI middleware: counts every request by route template and final status, and
    times it (inside Starlette's error middleware, so an unhandled error counts as 500)."""

    def __init__(self, app, server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            m = self.server.metrics
            m.update(self.server.m_requests.inc, path, str(status[0]))
            m.update(self.server.m_latency.observe, path, value=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# the ASGI application
# ------------------------------------------------------------------------------------------------
def create_app(sources, config: ServeConfig | None = None):
    """The FastAPI application serving the models in ``sources`` (files or folders)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser

    config = config or ServeConfig()
    server = Server(sources, config)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Warm up after the port opens: /healthz answers at once, /readyz once warmed.
        starting = asyncio.get_running_loop().create_task(server.start())
        starting.add_done_callback(_report_failure)
        try:
            yield
        finally:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await server.stop()

    app = FastAPI(title="cvcore serve", version="1",
                  description="Image classification with cvcore models: predictions, batching, "
                              "explanations (Grad-CAM / HOG cell contributions).",
                  lifespan=lifespan)
    app.state.server = server

    def error_response(status, code, detail, headers=None):
        return JSONResponse({"error": code, "detail": detail, "status": status},
                            status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        detail = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                           for e in exc.errors())
        return error_response(422, "invalid_parameter", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    app.add_middleware(_MetricsMiddleware, server=server)

    # -- reading bodies ---------------------------------------------------------------------
    async def read_body(request: Request) -> bytes:
        limit = config.max_upload_bytes
        too_large = ApiError(413, "too_large", f"the request body is larger than the limit of "
                             f"{limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit * DRAIN_FACTOR:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit * DRAIN_FACTOR:
                raise too_large
            if size <= limit:
                chunks.append(chunk)
        if size > limit:
            raise too_large
        return b"".join(chunks)

    async def uploads(request: Request, field: str, many: bool) -> list:
        """``[(file name, bytes)]`` from a multipart form's ``field`` or a raw body."""
        body = await read_body(request)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            async def stream():
                yield body
            try:
                form = await MultiPartParser(Headers(scope=request.scope), stream(),
                                             max_files=config.max_batch_files,
                                             max_fields=config.max_batch_files).parse()
            except MultiPartException as exc:
                raise ApiError(400, "bad_form", f"cannot read the multipart form: {exc}") \
                    from None
            files = [f for f in form.getlist(field) if hasattr(f, "read")]
            if not files:
                raise ApiError(400, "no_image", f"the form has no file field {field!r} "
                               f"(fields: {', '.join(form.keys()) or 'none'})")
            out = []
            for f in files:
                out.append((f.filename or "upload", await f.read()))
                await f.close()
            empty = [name for name, data in out if not data]
            if empty:
                raise ApiError(400, "no_image", f"the uploaded file {empty[0]!r} is empty")
            if not many and len(out) > 1:
                raise ApiError(400, "too_many_files", f"{len(out)} files in {field!r}; this "
                               f"route takes one (use predict_batch for several)")
            if len(out) > config.max_batch_files:
                raise ApiError(413, "too_many_files", f"{len(out)} files; the limit is "
                               f"{config.max_batch_files}")
            return out
        if not body:
            raise ApiError(400, "no_image", "the request has no body: send the image bytes, or "
                           "a multipart form with the field 'file'")
        return [("upload", body)]

    def check_top_k(top_k, served):
        return max(1, min(top_k if top_k is not None else config.top_k,
                          len(served.model.class_names)))

    image_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}}}}}
    batch_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"],
                                           "properties": {"files": {
                                               "type": "array", "items": {
                                                   "type": "string", "format": "binary"}}}}}}}}

    # -- routes -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok", "uptime_seconds": round(time.time() - server.started, 3)}

    @app.get("/readyz", summary="Readiness: every model loaded, compiled and warmed")
    async def readyz():
        if not server.ready:
            return error_response(503, "not_ready", "the models are still loading and warming up",
                                  {"Retry-After": str(RETRY_AFTER_SECONDS)})
        return {"status": "ready", "models": sorted(server.models)}

    @app.get("/metrics", summary="Prometheus metrics (text format 0.0.4)",
             response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(server.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", summary="The models served")
    async def list_models():
        if not server.ready:
            raise ApiError(503, "not_ready", "the models are still loading and warming up",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        return [m.describe() for m in server.models.values()]

    @app.get("/v1/models/{name}", summary="One model")
    async def get_model(name: str):
        return server.get(name).describe()

    @app.post("/v1/models/{name}/predict", summary="Top-k classes of one image",
              openapi_extra=image_body)
    async def predict(name: str, request: Request,
                      top_k: int | None = Query(None, ge=1, description="classes returned"),
                      tta: bool = Query(False, description="CNN models: average the "
                                        "probabilities over the training flips and crops "
                                        "(test-time augmentation, 10 forward passes)")):
        t0 = time.perf_counter()
        served = server.get(name)
        with server.batchers[name].announce():
            (fname, data), = await uploads(request, "file", many=False)
            image = await server.decode(served, data, fname)
        t1 = time.perf_counter()
        if tta:
            proba, version, model = await server.predict_tta(served, image)
        else:
            proba, version, model = await server.predict(served, image)
        t2 = time.perf_counter()
        k = check_top_k(top_k, served)
        return {"model": name, "version": version, "kind": model.kind, "tta": tta,
                "predictions": _top(proba, model.class_names, k),
                "time_ms": {"decode": round((t1 - t0) * 1e3, 3),
                            "queue_and_model": round((t2 - t1) * 1e3, 3),
                            "total": round((time.perf_counter() - t0) * 1e3, 3)}}

    @app.post("/v1/models/{name}/predict_batch", summary="Top-k classes of several images",
              openapi_extra=batch_body)
    async def predict_batch(name: str, request: Request,
                            top_k: int | None = Query(None, ge=1)):
        t0 = time.perf_counter()
        served = server.get(name)
        with server.batchers[name].announce():
            files = await uploads(request, "files", many=True)
            images = [await server.decode(served, data, fname) for fname, data in files]
        results = await asyncio.gather(*[server.predict(served, im) for im in images])
        k = check_top_k(top_k, served)
        return {"model": name, "results": [
            {"file": fname, "version": version, "predictions": _top(p, model.class_names, k)}
            for (fname, _), (p, version, model) in zip(files, results)],
            "time_ms": {"total": round((time.perf_counter() - t0) * 1e3, 3)}}

    @app.post("/v1/models/{name}/explain",
              summary="Prediction and an explanation map (Grad-CAM or HOG cell contributions)",
              openapi_extra=image_body)
    async def explain_route(name: str, request: Request,
                            top_k: int | None = Query(None, ge=1),
                            cls: str | None = Query(None, alias="class",
                                                    description="class name or index "
                                                                "(default: the top class)")):
        t0 = time.perf_counter()
        served = server.get(name)
        (fname, data), = await uploads(request, "file", many=False)
        image = await server.decode(served, data, fname)
        class_index = None
        names = list(served.model.class_names)
        if cls is not None:
            if cls in names:
                class_index = names.index(cls)
            elif cls.isdigit() and int(cls) < len(names):
                class_index = int(cls)
            else:
                raise ApiError(422, "invalid_parameter", f"class {cls!r} is neither a class "
                               f"name of {name} nor an index below {len(names)}")
        result, version, model = await server.explain(served, image, class_index)
        heat = result["heatmap"]
        k = check_top_k(top_k, served)
        return {"model": name, "version": version, "kind": model.kind,
                "predictions": _top(result["proba"], model.class_names, k),
                "explanation": {
                    "method": result["method"], "class": model.class_names[result["class_index"]],
                    "class_index": result["class_index"], "signed": result["signed"],
                    "height": int(heat.shape[0]), "width": int(heat.shape[1]),
                    "min": float(heat.min()), "max": float(heat.max()),
                    "heatmap": np.round(heat.astype(np.float64), 6).tolist(),
                    "png_base64": _png_base64(heat)},
                "time_ms": {"total": round((time.perf_counter() - t0) * 1e3, 3)}}

    return app
