"""``cvcore serve MODEL... [--host 127.0.0.1] [--port 8000]``: the HTTP API and web page."""
from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Add the ``serve`` sub-command to ``cvcore``'s sub-parsers."""
    from cvcore.serve.app import ServeConfig
    d = ServeConfig()
    p = subparsers.add_parser(
        "serve", help="serve models over HTTP: a JSON API and a web page",
        description="Serve model.npz files (or folders of them) over HTTP with dynamic batching. "
                    "Open http://HOST:PORT/ for the page, /docs for the API. Needs the `serve` "
                    "extra: pip install 'cvcore[serve]'.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model.npz files written by `cvcore train`, or folders of them")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                   help=f"largest batch per forward pass; 1 turns batching off "
                        f"(default {d.max_batch_size})")
    p.add_argument("--max-delay-ms", type=float, default=d.max_delay_ms,
                   help=f"how long a batch waits to fill, ms (default {d.max_delay_ms:g})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"waiting requests per model before 503 (default {d.max_queue})")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help=f"seconds a request may wait for its answer (default {d.timeout:g})")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2 ** 20,
                   help=f"largest request body in MiB; more gets 413 "
                        f"(default {d.max_upload_bytes / 2 ** 20:g})")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help=f"largest decoded image in pixels (default {d.max_pixels})")
    p.add_argument("--reload-interval", type=float, default=d.reload_interval,
                   help=f"seconds between checks for a replaced model file; 0 = never "
                        f"(default {d.reload_interval:g})")
    p.add_argument("--model-threads", type=int, default=d.model_threads,
                   help="threads running forward passes, each one batch at a time with its own "
                        "copy of the network; 0 = one per core, at most 4 (default 0)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="Numba threads of each model thread's kernels; 0 = the cores shared out "
                        "among the model threads (default 0)")
    p.add_argument("--pipeline-batches", action=argparse.BooleanOptionalAction,
                   default=d.pipeline_batches,
                   help="cap each batch at a share of the recent load (1 / (model threads + 1)), "
                        "so that a batch is queued whenever a model thread becomes free: for "
                        "many clients each waiting for its last answer, until the load per "
                        "model thread reaches the batch from which the model's forward pass is "
                        "cheaper per image (a ResNet's pixel-major plan); --no-pipeline-batches: "
                        "a batch takes whatever is queued, up to --max-batch-size (default on)")
    p.add_argument("--pin-threads", action=argparse.BooleanOptionalAction,
                   default=d.pin_threads,
                   help="bind each model thread to its own cores, when there are two or more "
                        "and enough cores for all (default on)")
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    from cvcore.serve.app import ServeConfig
    for name in ("max_batch_size", "max_queue", "max_pixels"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, "
                             f"got {getattr(args, name)}")
    for name in ("max_delay_ms", "reload_interval"):
        if not getattr(args, name) >= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not args.timeout > 0 or not args.max_upload_mb > 0:
        raise ValueError("--timeout and --max-upload-mb must be positive")
    for name in ("threads", "model_threads"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    return ServeConfig(max_batch_size=args.max_batch_size, max_delay_ms=args.max_delay_ms,
                       max_queue=args.max_queue, timeout=args.timeout,
                       max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                       max_pixels=args.max_pixels, reload_interval=args.reload_interval,
                       threads=args.threads, model_threads=args.model_threads,
                       pipeline_batches=args.pipeline_batches, pin_threads=args.pin_threads)


def run(args) -> None:
    """Start uvicorn with the app; returns when the server stops (Ctrl-C)."""
    try:
        import uvicorn
        from cvcore.serve.app import create_app
    except ImportError as exc:
        raise OSError(f"cvcore serve needs the serve extra ({exc.name} is missing): "
                      f"pip install 'cvcore[serve]'") from None
    app = create_app(args.models, config_from_args(args))
    # The access log is written at level info: above it, uvicorn would still format each
    # request's log arguments (client address, path) only to drop them.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=str(args.log_level).lower() in ACCESS_LOG_LEVELS,
                timeout_graceful_shutdown=10)


#: uvicorn log levels that show the access log (one line per request, at level info).
ACCESS_LOG_LEVELS = ("trace", "debug", "info")
