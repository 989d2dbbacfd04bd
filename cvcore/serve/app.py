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
batches run :meth:`TrainedModel.predict_proba` on whichever model thread is free (see
:class:`ServeConfig` for why there are several). The event loop only
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
import dataclasses
import io
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvcore.io.datasets import decode_image
from cvcore.io.images import NotAnImageError
from cvcore.serve.batching import Batcher, Overloaded, Timeout
from cvcore.serve.metrics import BATCH_BUCKETS, Registry
from cvcore.serve.models import (ServedModel, file_signature, find_model_files,
                                 pixel_major_batch, warm_up)
from cvcore.train.pipeline import prepare_images

__all__ = ["ServeConfig", "create_app", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger("cvcore.serve")

#: Seconds a client is told to wait after a 503 (``Retry-After``).
RETRY_AFTER_SECONDS = 1
#: Images of at most this many pixels (by their header) are decoded on the event loop: for them
#: Pillow's decode (~0.15 ms for a 32x32 JPEG here) costs less than the round trip to a decoding
#: thread and back; larger ones go to the decoding threads. 128 x 128.
INLINE_DECODE_PIXELS = 128 * 128
TTA_HELP = ("CNN models: average the probabilities over the training flips and crops "
            "(test-time augmentation, 10 forward passes)")
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
    model_threads : int
        Threads that run forward passes, each one batch at a time with its own copy of the
        network, so up to this many batches run at once; 0 = one per core, at most
        ``MAX_AUTO_MODEL_THREADS`` (TorchServe's default is likewise a worker per core).
    threads : int
        Numba threads of each model thread's kernels (and of the resizing done on the event
        loop); 0 = the cores shared out among the model threads (one each by default).
    pipeline_batches : bool
        Cap each batch at ``1 / (model_threads + 1)`` of the recent load, so that a batch is
        queued whenever a model thread becomes free (:meth:`~cvcore.serve.batching.Batcher._cap`),
        until the load per model thread reaches the batch from which the model's forward pass
        is cheaper per image (a ResNet's pixel-major plan, :func:`pixel_major_batch`);
        off: a batch takes up to ``max_batch_size`` (the rule before session 7).
    pin_threads : bool
        Bind each model thread to its own share of the cores (:func:`pin_model_thread`) when
        there are at least two model threads and enough cores for every one's kernel threads;
        the event loop and the decoding threads stay free to run on any core.

    Why several single-threaded model threads rather than one model thread with a parallel
    forward pass: the event loop needs about a third of a core under load (HTTP, decoding,
    JSON). A parallel kernel splits its work evenly among its threads and waits at its end for
    the last of them, so whenever the event loop (or any other process) takes a core from one of
    them, the whole pass waits, its other threads spinning. On the idle 2-core machine of
    ``benchmarks/README.md`` one model thread with both cores served ResNet-20 at 735 img/s in
    batches of 16 (one batch per 22 ms, where offline a batch of 16 takes about 11 ms: 44% of
    the offline rate), and burnt 6 ms of CPU per request at concurrency 1. Independent threads
    never wait for each other: the operating system gives the event loop's share to whichever is
    behind, and nothing spins.
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
    threads: int = 0
    model_threads: int = 0
    pipeline_batches: bool = True
    pin_threads: bool = True


class ApiError(Exception):
    """An answer other than 200: status, machine-readable code, human-readable detail."""

    def __init__(self, status: int, code: str, detail: str, headers=None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _error_for_image(exc: Exception) -> ApiError:
    if isinstance(exc, NotAnImageError):
        return ApiError(415, "unsupported_media_type", str(exc))
    text = str(exc)
    code = "decompression_bomb" if "decompression bomb" in text else (
        "truncated_or_corrupt" if "truncated or corrupt" in text else "bad_image")
    return ApiError(400, code, text)


class Server:
    """State of one running server: models, batchers, the model threads, metrics."""

    def __init__(self, sources, config: ServeConfig):
        self.config = config
        self.paths = find_model_files(sources)
        self.models = {name: ServedModel(name, path) for name, path in self.paths.items()}
        # Read every file now, so that a bad one stops `cvcore serve` with one line before the
        # port opens; compiling and warming happen after it opens (/readyz says when).
        self._loaded = {name: ServedModel.read(m.path) for name, m in self.models.items()}
        self.batchers: dict = {}
        self._pieces: dict = {}           # (name, version) -> answer_pieces(...)
        self.ready = False
        self.started = time.time()
        # The model threads: each runs one batch at a time with its own copy of the network (a
        # network's layers keep per-call state); the first also runs explanations, test-time
        # augmentation and warm-ups.
        self._prepare_in_decoder = _threadsafe_kernels()
        self.model_threads, self.threads = _thread_counts(config, self._prepare_in_decoder)
        self._own = threading.local()
        self.executors = [concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"cvcore-model-{i}", initializer=self._model_thread,
            initargs=(i,)) for i in range(self.model_threads)]
        self.executor = self.executors[0]
        self.decode_slots = None
        self._watch_task = None
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
        _set_threads(self.threads)                # (Numba's thread count is per calling thread)
        self.decode_slots = anyio.CapacityLimiter(self.config.decode_threads)
        for served in self.models.values():
            loaded = self._loaded.pop(served.name)
            await loop.run_in_executor(self.executor, warm_up, loaded[0],
                                       self.config.max_batch_size)
            fill_from = await loop.run_in_executor(self.executor, pixel_major_batch,
                                                   loaded[0], self.config.max_batch_size)
            served.install(loaded)
            await self._warm_copies(served)
            batcher = Batcher(self._runner(served), self.executors,
                              max_batch_size=self.config.max_batch_size,
                              max_delay=self.config.max_delay_ms / 1000.0,
                              max_queue=self.config.max_queue,
                              on_batch=self._batch_observer(served.name),
                              pipeline=self.config.pipeline_batches, fill_from=fill_from)
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
        for executor in self.executors:
            executor.shutdown(wait=True)

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
                    fill_from = await loop.run_in_executor(
                        self.executor, pixel_major_batch, loaded[0], self.config.max_batch_size)
                except (ValueError, OSError, KeyError, TypeError) as exc:
                    served.failed_signature = sig
                    self.metrics.update(self.m_reloads.inc, served.name, "error")
                    log.error("reloading %s failed, the previous version keeps serving: %s",
                              served.path, exc)
                    continue
                old = served.version
                if served.name in self.batchers:
                    self.batchers[served.name].fill_from = fill_from
                served.install(loaded)
                self.metrics.update(self.m_reloads.inc, served.name, "ok")
                log.info("model %s reloaded: version %s -> %s", served.name, old,
                         served.version)

    # -- the model side (model threads) ------------------------------------------------------
    def _model_thread(self, index: int) -> None:
        """Initialiser of model thread ``index``: its Numba thread count, its cores (with
        ``pin_threads``), its model copies."""
        _set_threads(self.threads)
        if self.config.pin_threads:
            pin_model_thread(index, self.model_threads, self.threads)
        self._own.index, self._own.copies = index, {}

    def own(self, name: str, model):
        """``model`` (of the served model ``name``) as the calling model thread uses it: the
        first thread uses the model itself (as do the explanations and test-time augmentation,
        which run there only); every other thread its own copy, which shares the weights'
        arrays but builds its own network, so two threads never run one network's layers (which
        keep per-call state) at once."""
        if self._own.index == 0:
            return model
        pair = self._own.copies.get(name)
        if pair is None or pair[0] is not model:        # first use, or the file was reloaded
            pair = self._own.copies[name] = (model, dataclasses.replace(model, _net=None,
                                                                        _clf=None))
        return pair[1]

    async def _warm_copies(self, served: ServedModel) -> None:
        """Build every other model thread's copy of ``served``'s model now, not on the first
        request that thread takes (the kernels are compiled already)."""
        loop = asyncio.get_running_loop()
        model = served.model
        image = np.zeros(tuple(model.size) + (() if model.mode == "gray" else (3,)), np.uint8)
        for executor in self.executors[1:]:
            await loop.run_in_executor(executor, self._runner(served), [image])

    def _runner(self, served: ServedModel):
        def run(images):
            model, version = served.model, served.version       # one model for the batch
            mine = self.own(served.name, model)
            shape = tuple(model.size) + (() if model.mode == "gray" else (3,))
            batch = np.stack(images) if all(im.shape == shape for im in images) else images
            proba = mine.predict_proba(batch)
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
        a model thread); ApiError 400/415 for anything that is not a good image.

        A small image (at most ``INLINE_DECODE_PIXELS``, by its header) is decoded right here on
        the event loop: handing it to a thread and back costs more CPU than decoding it. A larger
        one is decoded in a decoding thread (at most ``decode_threads`` at a time), so the event
        loop is never held for long."""
        model = served.model

        def work():
            # as `cvcore predict`: decode_image, then predict_proba's own prepare_images
            image = decode_image(data, model.mode, max_pixels=self.config.max_pixels)
            if self._prepare_in_decoder and image.shape[:2] != tuple(model.size):
                image = prepare_images([image], model.size, model.mode)[0]
            return image
        try:
            if _header_pixels(data) <= INLINE_DECODE_PIXELS:
                return work()
            import anyio
            return await anyio.to_thread.run_sync(work, limiter=self.decode_slots)
        except (ValueError, TypeError) as exc:
            raise _error_for_image(_renamed(exc, name)) from None

    def top_k(self, top_k, served: ServedModel) -> int:
        """Classes to return: the request's ``top_k`` (or the default), at most all of them."""
        return max(1, min(top_k if top_k is not None else self.config.top_k,
                          len(served.model.class_names)))

    async def predict_request(self, name: str, receive, headers: dict, top_k=None,
                              tta: bool = False) -> dict:
        """``POST /v1/models/{name}/predict`` once its query is read: the JSON answer, encoded
        (UTF-8 bytes, see :func:`_answer_json`)."""
        t0 = time.perf_counter()
        served = self.get(name)
        with self.batchers[name].announce():
            body = await read_body(receive, headers, self.config.max_upload_bytes)
            (fname, data), = await parse_uploads(body, headers, "file", False,
                                                 self.config.max_batch_files)
            image = await self.decode(served, data, fname)
        t1 = time.perf_counter()
        if tta:
            (proba, version, model), = await self.predict_tta(served, [image])
        else:
            proba, version, model = await self.predict(served, image)
        t2 = time.perf_counter()
        pieces = self._pieces.get((name, version))
        if pieces is None:                  # the first answer of this model version
            if len(self._pieces) > len(self.models) * 4:
                self._pieces.clear()        # (versions replaced by reloads)
            pieces = self._pieces[name, version] = answer_pieces(name, version, model)
        return _answer_json(pieces, tta, proba, self.top_k(top_k, served),
                            round((t1 - t0) * 1e3, 3), round((t2 - t1) * 1e3, 3),
                            round((time.perf_counter() - t0) * 1e3, 3))

    async def predict_batch_request(self, name: str, receive, headers: dict, top_k=None,
                                    tta: bool = False) -> dict:
        """``POST /v1/models/{name}/predict_batch``: the JSON answer for every file."""
        t0 = time.perf_counter()
        served = self.get(name)
        with self.batchers[name].announce():
            body = await read_body(receive, headers, self.config.max_upload_bytes)
            files = await parse_uploads(body, headers, "files", True,
                                        self.config.max_batch_files)
            images = [await self.decode(served, data, fname) for fname, data in files]
        if tta:
            results = await self.predict_tta(served, images)
        else:
            results = await asyncio.gather(*[self.predict(served, im) for im in images])
        k = self.top_k(top_k, served)
        return {"model": name, "tta": tta, "results": [
            {"file": fname, "version": version, "predictions": _top(p, model.class_names, k)}
            for (fname, _), (p, version, model) in zip(files, results)],
            "time_ms": {"total": round((time.perf_counter() - t0) * 1e3, 3)}}

    async def predict(self, served: ServedModel, image) -> tuple:
        try:
            return await self.batchers[served.name].submit(image, timeout=self.config.timeout)
        except (Overloaded, Timeout) as exc:
            raise ApiError(503, "overloaded" if isinstance(exc, Overloaded) else "timeout",
                           str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None

    async def predict_tta(self, served: ServedModel, images) -> list:
        """Test-time augmentation (:meth:`TrainedModel.predict_proba` with ``tta=True``): ten
        forward passes of the images, run on the first model thread outside the batcher, like an
        explanation: ``[(proba, version, model)]`` per image; ApiError 422 for a model trained
        without augmentation."""
        from cvcore.train.pipeline import CNN_MODELS
        model, version = served.model, served.version
        if model.kind not in CNN_MODELS:
            raise ApiError(422, "invalid_parameter", f"tta: a {model.kind} model is trained "
                           f"on unaugmented images, so it has no test-time views to average")
        loop = asyncio.get_running_loop()
        try:
            proba = await asyncio.wait_for(loop.run_in_executor(
                self.executor, lambda: model.predict_proba(list(images), tta=True)),
                self.config.timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "timeout", f"no prediction within the request timeout of "
                           f"{self.config.timeout:g} s",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except ValueError as exc:                      # e.g. a model trained --no-augment
            raise ApiError(422, "invalid_parameter", f"tta: {exc}") from None
        return [(p, version, model) for p in proba]

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


# ------------------------------------------------------------------------------------------------
# reading request bodies (shared by the FastAPI routes and the fast lane)
# ------------------------------------------------------------------------------------------------
async def read_body(receive, headers: dict, limit: int) -> bytes:
    """The whole body of an ASGI request, bounded: ApiError 413 past ``limit`` bytes.

    An oversized body is still read (and thrown away) up to ``DRAIN_FACTOR`` times the limit,
    so that an ordinary client gets its 413 instead of a connection reset mid-upload; a body
    declared larger than that is refused before reading. ``headers`` maps lower-case header
    names (bytes) to values (bytes), as in the ASGI scope."""
    too_large = ApiError(413, "too_large", f"the request body is larger than the limit of "
                         f"{limit} bytes")
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit * DRAIN_FACTOR:
        raise too_large
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client_disconnected", "the client went away mid-upload")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit * DRAIN_FACTOR:
            raise too_large
        if size <= limit and chunk:
            chunks.append(chunk)
    if size > limit:
        raise too_large
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def parse_uploads(body: bytes, headers: dict, field: str, many: bool,
                        max_files: int) -> list:
    """``[(file name, bytes)]`` from a multipart form's ``field``, or the raw body as one file
    called "upload"; ApiError 400/413 for a form without the field, empty files, too many."""
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    if not ctype.startswith("multipart/form-data"):
        if not body:
            raise ApiError(400, "no_image", "the request has no body: send the image bytes, or "
                           "a multipart form with the field 'file'")
        return [("upload", body)]
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body
    try:
        form = await MultiPartParser(Headers(raw=list(headers.items())), stream(),
                                     max_files=max_files, max_fields=max_files).parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_form", f"cannot read the multipart form: {exc}") from None
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
    if len(out) > max_files:
        raise ApiError(413, "too_many_files", f"{len(out)} files; the limit is {max_files}")
    return out


def _headers(scope) -> dict:
    """The ASGI scope's headers as ``{lower-case name: value}`` (bytes; the last one wins)."""
    return dict(scope["headers"])


def _json_bytes(content) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def _json_response(content, status: int = 200, headers=None):
    """A JSON answer encoded once by :func:`json.dumps` (the dicts here hold only str, int,
    float, bool and lists: FastAPI's generic encoder would only walk them again), or already
    encoded (bytes)."""
    from starlette.responses import Response
    body = content if isinstance(content, bytes) else _json_bytes(content)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


#: Up to this many classes, :func:`_top` sorts Python floats; past it ``np.argsort`` is cheaper.
TOP_SORT_IN_PYTHON = 64


def _top_indices(proba, k) -> list:
    """Indices of the ``k`` largest of ``proba`` (1-D), largest first, ties in index order (as
    ``np.argsort(-proba, kind="stable")[:k]``)."""
    if len(proba) > TOP_SORT_IN_PYTHON:
        return np.argsort(-proba, kind="stable")[:k].tolist()
    values = proba.tolist()
    return sorted(range(len(values)), key=values.__getitem__, reverse=True)[:k]


def _top(proba, class_names, k):
    return [{"label": class_names[i], "index": i, "probability": float(proba[i])}
            for i in _top_indices(proba, k)]


def answer_pieces(name, version, model) -> tuple:
    """Pre-encoded pieces of the predict answer of model ``name`` at ``version`` (``model``'s
    ``kind`` and ``class_names``): ``(head with "tta":false, head with "tta":true, [class
    piece])``, for :func:`_answer_json`."""
    def head(tta):
        text = _json_bytes({"model": name, "version": version, "kind": model.kind, "tta": tta})
        return text[:-1] + b',"predictions":['
    return head(False), head(True), [
        _json_bytes({"label": label, "index": i})[:-1] + b',"probability":'
        for i, label in enumerate(model.class_names)]


def _answer_json(pieces, tta, proba, k, decode_ms, model_ms, total_ms) -> bytes:
    """The predict answer, ``{"model", "version", "kind", "tta", "predictions": [{"label",
    "index", "probability"}], "time_ms": {"decode", "queue_and_model", "total"}}``, encoded
    byte for byte as :func:`_json_bytes` encodes that dict, from pieces encoded once per model
    version: only the numbers are formatted per request (``repr`` of a float, as ``json``
    writes it). ``pieces`` are :func:`answer_pieces` of the model and version that answered.
    A probability that is not finite goes through :func:`_json_bytes`, which refuses it as it
    always did."""
    head_false, head_true, classes = pieces
    top = _top_indices(proba, k)
    values = [float(proba[i]) for i in top]
    if not all(math.isfinite(v) for v in values):
        return _json_bytes({"predictions": values})       # raises ValueError, as json does
    parts = [head_true if tta else head_false]
    for j, (i, v) in enumerate(zip(top, values)):
        parts.append(classes[i] if j == 0 else b"," + classes[i])
        parts.append(repr(v).encode("ascii") + b"}")
    parts.append(b'],"time_ms":{"decode":%s,"queue_and_model":%s,"total":%s}}' % (
        repr(decode_ms).encode("ascii"), repr(model_ms).encode("ascii"),
        repr(total_ms).encode("ascii")))
    return b"".join(parts)


#: JPEG start-of-frame markers (ITU-T T.81, table B.1: SOF0-3, 5-7, 9-11, 13-15), whose segment
#: holds the image's height and width; and the markers that stand alone, without a length.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF))
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _header_pixels(data: bytes) -> float:
    """Width x height read from a PNG or JPEG header without decoding it, for deciding where to
    decode; ``inf`` for any other format or a header this cannot read (the decoding threads
    then take it, and the decoder names any problem).

    PNG: the IHDR chunk comes first, width and height at bytes 16-24 (PNG spec, sec. 11.2.2).
    JPEG: the segments after SOI (FFD8) are walked to the first start-of-frame, which holds the
    height and the width after one byte of precision (T.81, sec. B.2.2). Pillow reads the same
    header for its checks, but costs ~0.1 ms doing so on a small JPEG; this costs a few us."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return math.inf
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return math.inf
        marker = data[i + 1]
        if marker == 0xFF:                              # a fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return math.inf
            return int.from_bytes(data[i + 5:i + 7], "big") * \
                int.from_bytes(data[i + 7:i + 9], "big")
        if marker == 0xDA or length < 2:                # scan data before any frame: give up
            return math.inf
        i += 2 + length
    return math.inf


#: ``?tta=`` values FastAPI reads as false (its bool parameters); any other value of ``tta`` goes
#: to the FastAPI route, which runs TTA or answers 422.
_FALSE = frozenset(("0", "false", "off", "no", "f", "n"))


def _fast_query(query_string: bytes):
    """``(True, top_k)`` for a predict query the fast lane can answer (``tta`` absent or false;
    ``top_k`` absent (None) or a positive integer, given once; nothing else), else
    ``(False, None)``."""
    if not query_string:
        return True, None
    from urllib.parse import parse_qsl
    top_k, seen = None, set()
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return False, None
        seen.add(key)
        if key == "top_k":
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                return False, None
            top_k = int(value)
        elif key != "tta" or value.lower() not in _FALSE:
            return False, None
    return True, top_k


class _FastLane:
    """Pure-ASGI fast path for the hot route, ``POST /v1/models/{name}/predict``.

    Serving tiny images, the framework's own work per request (routing over every route, the
    middleware layers, reading the query through pydantic, encoding the answer generically) cost
    more CPU than decoding the image and running the model. Requests that this lane can read
    without any validation (``top_k`` absent or a positive integer, no ``tta``) are answered here
    by the very function the FastAPI route calls (:meth:`Server.predict_request`), with the same
    JSON, errors and metrics; everything else, including every request it cannot read, passes on
    to FastAPI, which answers or refuses it as before. So both paths give the same answers: the
    lane only skips work."""

    def __init__(self, app, server, route, metrics=None):
        self.app, self.server, self.route = app, server, route
        self.metrics = metrics          # the Server whose registry counts the lane's requests

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        parts = scope["path"].split("/")                # "", "v1", "models", name, "predict"
        if len(parts) != 5 or parts[4] != "predict" or parts[1] != "v1" or \
                parts[2] != "models" or not parts[3]:
            return await self.app(scope, receive, send)
        ours, top_k = _fast_query(scope.get("query_string", b""))
        if not ours:
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        scope["route"] = self.route                     # for the metrics' route label
        scope["path_params"] = {"name": parts[3]}
        headers, status = None, 500     # (an exception escaping here is uvicorn's 500)
        try:
            try:
                body = await self.server.predict_request(parts[3], receive, _headers(scope),
                                                         top_k)
                if not isinstance(body, bytes):
                    body = _json_bytes(body)
                code = 200
            except ApiError as exc:
                body = _json_bytes({"error": exc.code, "detail": exc.detail,
                                    "status": exc.status})
                code, headers = exc.status, exc.headers
            raw = [(b"content-type", b"application/json"),
                   (b"content-length", b"%d" % len(body))]
            if headers:
                raw += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers.items()]
            status = code
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
        finally:
            # the metrics middleware's count, for the requests that never pass through it
            if self.metrics is not None:
                server = self.metrics
                with server.metrics._lock:
                    server.m_requests.inc(PREDICT_ROUTE, _STATUS_TEXT.get(status) or str(status))
                    server.m_latency.observe(PREDICT_ROUTE, value=time.perf_counter() - t0)


#: ``str(status)`` of the usual statuses, made once.
_STATUS_TEXT = {code: str(code) for code in (200, 400, 404, 413, 415, 422, 500, 503)}


PREDICT_ROUTE = "/v1/models/{name}/predict"


def serve_app_class():
    """FastAPI with a front door: the metrics middleware and the fast lane (:class:`_FastLane`)
    run *before* FastAPI's own middleware stack (error handling, its body limit and telemetry
    layers, routing), which the lane's requests do not need; every other request goes through
    that stack as usual. :func:`install_fast_lane` opens the door once the routes exist."""
    global _SERVE_APP
    if _SERVE_APP is None:
        from fastapi import FastAPI

        class ServeApp(FastAPI):
            front = None

            async def framework(self, scope, receive, send):
                await FastAPI.__call__(self, scope, receive, send)

            async def __call__(self, scope, receive, send):
                await (self.front or self.framework)(scope, receive, send)
        _SERVE_APP = ServeApp
    return _SERVE_APP


_SERVE_APP = None


def install_fast_lane(app, server, metrics: bool = True) -> None:
    """Put the fast lane for ``POST {PREDICT_ROUTE}`` (answered by ``server.predict_request``)
    in front of ``app`` (made by :func:`serve_app_class`); with ``metrics`` (it needs
    ``server``'s registry) the lane counts its own requests and the metrics middleware counts
    every other one, in front of the framework."""
    route = next(r for r in app.routes if getattr(r, "path", None) == PREDICT_ROUTE)
    framework = _MetricsMiddleware(app.framework, server) if metrics else app.framework
    app.front = _FastLane(framework, server, route, server if metrics else None)


#: The most model threads chosen by default: every batch also takes the GIL between its
#: kernels, and the event loop holds it for all its work, so past a few threads one process
#: stops scaling; run several server processes for more cores.
MAX_AUTO_MODEL_THREADS = 4


def _thread_counts(config, threadsafe: bool) -> tuple:
    """``(model threads, Numba threads per model thread)`` from the config's 0 = automatic.
    The cores are Numba's (``NUMBA_NUM_THREADS``, by default every core). With Numba's
    ``workqueue`` threading layer, which cannot launch parallel kernels from two threads at
    once, there is one model thread."""
    import numba
    cores = numba.config.NUMBA_NUM_THREADS
    model_threads = config.model_threads or min(cores, MAX_AUTO_MODEL_THREADS)
    if not threadsafe:
        if model_threads > 1:
            log.warning("Numba's threading layer is %s, which cannot run kernels on two threads "
                        "at once: one model thread", numba.threading_layer())
        model_threads = 1
    threads = min(config.threads or max(1, cores // model_threads), cores)
    return model_threads, threads


def pin_model_thread(index: int, model_threads: int, threads: int) -> bool:
    """Bind the calling thread, model thread ``index`` of ``model_threads``, to cores
    ``index * threads ... (index + 1) * threads - 1`` of those the process may use; True if it
    did. Nothing is bound (False) with fewer than two model threads, with fewer cores than
    ``model_threads * threads``, or where the system has no ``sched_setaffinity`` (Linux has).

    Why: each model thread sleeps between its batches and is woken by the event loop, and the
    event loop by it. Left to the scheduler, a woken thread is often queued on the core of the
    thread that woke it (Linux's wake-affine placement), so on a 2-core machine the two model
    threads and the event loop pile up on one core while the other idles, until the load
    balancer moves one of them a tick later. Bound, the model threads never share a core with
    each other; the event loop, unbound, runs wherever there is room. Measured with 32 clients
    on 2 cores (``benchmarks/README.md``, session 7): the server kept 1.51-1.56 cores busy
    bound against 1.22-1.49 unbound, in interleaved runs. (The same idea as PyTorch's
    ``torch.backends.xeon.run_cpu`` launcher and TorchServe's ``cpu_launcher_enable``, which
    bind each worker to its own cores.)"""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None or model_threads < 2:
        return False
    cpus = sorted(os.sched_getaffinity(0))
    if model_threads * threads > len(cpus) or not 0 <= index < model_threads:
        return False
    try:
        setaffinity(0, cpus[index * threads:(index + 1) * threads])
    except OSError:                     # e.g. a container that forbids it: run unbound
        return False
    return True


def _set_threads(threads: int) -> None:
    """Numba's thread count for parallel kernels launched from the calling thread."""
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


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
    numba.get_num_threads()       # starts the thread pool (compiling nothing), so that:
    return numba.threading_layer() in ("omp", "tbb")


def _report_failure(task):
    if not task.cancelled() and task.exception() is not None:
        log.error("warming the models failed; the server stays unready",
                  exc_info=task.exception())


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
    times it. It is the outermost layer of the app, so every request is counted: an error that
    escapes the app (which then answers 500) counts as 500, the status it had not yet sent."""

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
    from fastapi import Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

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

    app = serve_app_class()(title="cvcore serve", version="1",
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
                      tta: bool = Query(False, description=TTA_HELP)):
        # (the usual requests never get here: the fast lane answers them, see _FastLane)
        return _json_response(await server.predict_request(
            name, request.receive, _headers(request.scope), top_k, tta))

    @app.post("/v1/models/{name}/predict_batch", summary="Top-k classes of several images",
              openapi_extra=batch_body)
    async def predict_batch(name: str, request: Request,
                            top_k: int | None = Query(None, ge=1),
                            tta: bool = Query(False, description=TTA_HELP)):
        return _json_response(await server.predict_batch_request(
            name, request.receive, _headers(request.scope), top_k, tta))

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
        headers = _headers(request.scope)
        body = await read_body(request.receive, headers, config.max_upload_bytes)
        (fname, data), = await parse_uploads(body, headers, "file", False,
                                             config.max_batch_files)
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
        k = server.top_k(top_k, served)
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

    install_fast_lane(app, server, metrics=True)
    return app
