"""``cvcore serve`` under load: images/s and latency, batching on and off, beside the offline
ceiling and the same ResNet-20 in PyTorch behind the same web stack.

    python -m benchmarks.serve                       # the whole table (~6 min on 2 idle cores)
    python -m benchmarks.serve --requests 1000 --images 500

For a ``hog-svm`` (trained on the embedded Fashion-MNIST subset) and a ``resnet20`` (seeded
weights, 32x32 RGB), each served by ``cvcore serve`` in its own process on a free loopback port,
the load generator sends CIFAR-10 test JPEGs as raw bodies, keeping ``c`` requests in flight, at
concurrency 1, 8 and 32, with dynamic batching on (``--max-batch-size 32 --max-delay-ms 5``) and
off (``--max-batch-size 1``). The load generator is ``wrk`` (Debian's package, with the Lua
script ``serve_post.lua`` beside this file) for ``--seconds`` per row: written in C, it takes
~0.02 ms of CPU per request, so on a small machine it leaves the cores to the server. Without
``wrk`` an asyncio ``httpx`` client in another process takes its place (``--requests`` per row);
it costs ~1 ms of CPU per request on the same cores, so it lowers every served figure (the
output says which client ran).

Beside them:

* ``offline``: :meth:`TrainedModel.predict_proba` on the same images already decoded, in
  batches of 32 and of 500 in this process: the ceiling a server can approach (no HTTP, no
  decoding); and one batch-1 forward pass, the floor of a request's latency.
* ``torch``: the same ResNet-20 weights in PyTorch (``benchmarks.torch_models``) behind the same
  stack: uvicorn, the same fast lane for ``POST /predict`` (:class:`cvcore.serve.app._FastLane`,
  the same body reading and the same rule for decoding small images on the event loop), the same
  :class:`cvcore.serve.batching.Batcher` (on and off), Pillow decoding, ``torch.no_grad()``
  forward on as many model threads as ``cvcore serve`` has, each with its own copy of the
  network and the same share of the cores for PyTorch's own threads (``torch.set_num_threads``).

Every server runs with ``cvcore serve``'s default threads (one model thread per core, each with
one kernel thread, on a small machine, bound to its own core; the ``threads`` column says model
threads x kernel threads) unless ``--model-threads`` / ``--threads`` say otherwise. Batching
``on`` is ``cvcore serve``'s default design (each batch at most 1 / (model threads + 1) of the
recent load, so that a batch is queued whenever a model thread becomes free; model threads
bound to their own cores), ``off`` is ``--max-batch-size 1``. ``--one-model-thread`` adds both
ResNet-20 servers, batched, with session 4's design: one model thread whose kernels use every
core.

Printed: one row per (server, batching, threads, concurrency): images/s, p50 and p99 latency
(ms), mean batch size of that row (from the server's /metrics), the server process's CPU time
per request (ms, user + system, all its threads), the cores it kept busy (its CPU seconds per
second of the row: at most the machine's cores; where it falls short of them with many clients,
the server left cores idle), the cores the load generator took (``wrk``), and images/s as a
share of the offline batch-32 ceiling.

Then the goal's comparison, made robust to a machine whose speed drifts (``--rounds``, default
3): every batched ResNet-20 server, both engines in three designs (``on``; ``fill``: ``cvcore
serve --no-pipeline-batches``, the rule before session 7, where a batch takes whatever is
queued; ``free``: ``--no-pin-threads``, model threads left unbound), is started at once, and
each round runs every one at c=32 in a fixed order that reverses every other round, after
measuring the offline ceiling again; the medians over the rounds are printed with ``loop ms``
(the CPU per request of the server's event-loop thread: HTTP, body, decoding, answer), ``idle``
(the machine's idle cores during the row, from /proc/stat), ``/offline`` (over the median ceiling)
and ``/torch best`` (over the best PyTorch design's median), and one line with the goal. Each
round also runs both engines' default design at c=1 and times cvcore's batch-1 forward pass
offline: the goal's latency line (median p99 at c=1 against the median forward pass).
The machine's load (``os.getloadavg``) is printed before and after: the machine is shared, and the
CPU time per request is the figure that moves least with the load.
"""
# (no `from __future__ import annotations`: FastAPI reads the torch app's annotations)
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10" / "test"
CONCURRENCY = (1, 8, 32)
BATCH_ON = ("--max-batch-size", "32", "--max-delay-ms", "5")
BATCH_OFF = ("--max-batch-size", "1", "--max-delay-ms", "0")
STARTUP_SECONDS = 300
OFFLINE_SECONDS = 3.0      # each offline figure is timed over at least this long


# -- the load generator (run in its own process) --------------------------------------------------
async def _load(url, files, concurrency, n):
    import httpx
    bodies = [Path(f).read_bytes() for f in files]
    latencies, errors = [], 0
    counter = iter(range(n))

    async def worker(client):
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            r = await client.post(url, content=bodies[i % len(bodies)],
                                  headers={"content-type": "image/jpeg"})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        # warm the connections and the server's allocator
        await asyncio.gather(*[client.post(url, content=bodies[0],
                                           headers={"content-type": "image/jpeg"})
                               for _ in range(concurrency)])
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": n, "errors": errors,
            "p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}


def loadgen_main(args):
    files = Path(args.files).read_text().split("\n")
    print(json.dumps(asyncio.run(_load(args.url, files, args.concurrency, args.requests))))


def run_load(url, files_list, concurrency, n):
    """The Python fallback: ``n`` requests from an httpx client in another process."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.serve", "--loadgen", "--url", url,
                          "--files", str(files_list), "--concurrency", str(concurrency),
                          "--requests", str(n)], cwd=ROOT, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


WRK_SCRIPT = Path(__file__).resolve().parent / "serve_post.lua"


def run_wrk(url, files_list, concurrency, seconds):
    """``seconds`` of ``wrk`` (one thread, ``concurrency`` connections) posting the files."""
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s",
                          "-s", str(WRK_SCRIPT), url], env={**os.environ, "FILES": str(files_list)},
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def process_cpu_seconds(pid, tid=None) -> float:
    """User + system CPU seconds of a process (all its threads), or of its thread ``tid`` (the
    process's first thread, its event loop, is ``tid=pid``), from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- servers --------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, argv, port):
        import httpx
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(argv)} exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(argv)} not ready in {STARTUP_SECONDS} s")
            time.sleep(0.25)

    def batches(self, model):
        """(images, forward passes) so far, from the server's Prometheus metrics."""
        import httpx
        text = httpx.get(self.url + "/metrics").text
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith(f'cvcore_batch_size_sum{{model="{model}"}}'):
                total = float(line.split()[-1])
            elif line.startswith(f'cvcore_batch_size_count{{model="{model}"}}'):
                count = float(line.split()[-1])
        return total, count

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: Batching designs of the rows: ``cvcore serve`` options, given alike to the PyTorch server.
#: "on" is ``cvcore serve``'s default (batches capped at a share of the load so that one stays
#: queued, model threads bound to their own cores); "fill" is the rule before session 7 (a
#: batch takes whatever is queued); "free" is "on" with the model threads left unbound.
DESIGNS = {"on": (), "fill": ("--no-pipeline-batches",), "free": ("--no-pin-threads",),
           "off": ()}


def cvcore_server(model_path, batching, threads=0, model_threads=0):
    port = _free_port()
    return Server([sys.executable, "-m", "cvcore.cli", "serve", str(model_path), "--port",
                   str(port), "--log-level", "warning", "--reload-interval", "0",
                   "--threads", str(threads), "--model-threads", str(model_threads),
                   *(BATCH_OFF if batching == "off" else BATCH_ON), *DESIGNS[batching]], port)


def torch_server(model_path, batching, threads=0, model_threads=0):
    port = _free_port()
    return Server([sys.executable, "-m", "benchmarks.serve", "--torch-server", str(model_path),
                   "--port", str(port), "--max-batch-size", "1" if batching == "off" else "32",
                   "--threads", str(threads), "--model-threads", str(model_threads),
                   *DESIGNS[batching]], port)


def torch_app(model_path, max_batch_size, threads=0, model_threads=0, pipeline=True, pin=True):
    """The same ResNet-20 weights in PyTorch behind the same stack as ``cvcore serve``: uvicorn,
    the fast lane for ``POST /predict``, the same body reading, decoding rule and Batcher, and
    the same model threads (as many, each with its own copy of the network and the same share
    of the cores for PyTorch's own threads, bound to them as ``cvcore serve`` binds its own:
    ``pin``) and the same batch rule (``pipeline``: ``cvcore serve --pipeline-batches``, the
    default of both)."""
    import concurrent.futures
    import contextlib
    import copy
    import io
    import threading

    import anyio
    import torch
    from fastapi.responses import PlainTextResponse
    from PIL import Image

    from benchmarks.torch_models import torch_resnet
    from cvcore.serve import app as serve_app
    from cvcore.serve.batching import Batcher
    from cvcore.serve.metrics import BATCH_BUCKETS, Registry
    from cvcore.train.pipeline import load_model

    model = load_model(model_path)
    net = torch_resnet(model.kind, len(model.class_names), 3 if model.mode == "rgb" else 1)
    net.load_state_dict({k: torch.from_numpy(np.array(v))
                         for k, v in model.arrays["state_dict"].items()})
    net.eval()
    mean = torch.from_numpy(model.arrays["mean"]).reshape(1, -1, 1, 1)
    std = torch.from_numpy(model.arrays["std"]).reshape(1, -1, 1, 1)
    H, W = model.size
    pieces = serve_app.answer_pieces(model.kind, "torch", model)
    registry = Registry()
    hist = registry.histogram("cvcore_batch_size", "images per forward", ("model",),
                              buckets=BATCH_BUCKETS)

    from cvcore.serve.app import ServeConfig, _thread_counts
    model_threads, threads = _thread_counts(ServeConfig(threads=threads,
                                                        model_threads=model_threads), True)
    own = threading.local()

    def model_thread(index):
        torch.set_num_threads(threads)
        if pin:
            serve_app.pin_model_thread(index, model_threads, threads)
        own.net = net if index == 0 else copy.deepcopy(net)

    def run(images):
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            p = torch.softmax(own.net((x - mean) / std), dim=1).numpy()
        return list(p)

    def decode(data):
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB").resize((W, H), Image.BILINEAR))

    pools = [concurrent.futures.ThreadPoolExecutor(1, initializer=model_thread, initargs=(i,))
             for i in range(model_threads)]
    batcher = Batcher(run, pools, max_batch_size=max_batch_size, max_delay=0.005,
                      on_batch=lambda n, s: registry.update(hist.observe, "torch", value=n),
                      pipeline=pipeline)
    decode_slots = anyio.CapacityLimiter(2)

    class TorchServer:
        """What the fast lane calls: the body, the image, the batch, the top 5 as JSON
        (:func:`cvcore.serve.app._answer_json`, as ``cvcore serve`` encodes it)."""

        async def predict_request(self, name, receive, headers, top_k=None, tta=False):
            t0 = time.perf_counter()
            with batcher.announce():
                body = await serve_app.read_body(receive, headers, 10 * 2 ** 20)
                (_, data), = await serve_app.parse_uploads(body, headers, "file", False, 1)
                try:
                    if serve_app._header_pixels(data) <= serve_app.INLINE_DECODE_PIXELS:
                        image = decode(data)
                    else:
                        image = await anyio.to_thread.run_sync(decode, data,
                                                               limiter=decode_slots)
                except Exception as exc:                      # Pillow's many error types
                    raise serve_app.ApiError(400, "bad_image", str(exc)) from None
            t1 = time.perf_counter()
            p = await batcher.submit(image, timeout=60)
            t2 = time.perf_counter()
            # the same answer, encoded the same way, as cvcore serve's
            return serve_app._answer_json(pieces, False, p, min(top_k or 5, len(p)),
                                          round((t1 - t0) * 1e3, 3), round((t2 - t1) * 1e3, 3),
                                          round((time.perf_counter() - t0) * 1e3, 3))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for pool in pools:                                        # warm every copy
            pool.submit(run, [np.zeros((H, W, 3), np.uint8)] * max_batch_size).result()
        batcher.start()
        yield
        await batcher.stop()

    app = serve_app.serve_app_class()(lifespan=lifespan)

    @app.get("/readyz")
    async def ready():
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(registry.render())

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str):
        raise serve_app.ApiError(400, "unsupported", "this benchmark server takes plain requests")

    serve_app.install_fast_lane(app, TorchServer(), metrics=False)
    return app


# -- the benchmark --------------------------------------------------------------------------------
def build_models(out: Path, images):
    from cvcore import nn
    from cvcore.io.datasets import load_dataset
    from cvcore.train.pipeline import TrainedModel, train_hog_model
    data = load_dataset("fashion-mnist-small")
    train_hog_model("hog-svm", data.x_train, data.y_train, data.class_names,
                    log=lambda *a: None).save(out / "hogsvm.npz")
    x = np.stack(images).astype(np.float32) / 255
    net = nn.resnet20(num_classes=10, in_channels=3, rng=0)
    TrainedModel("resnet20", sorted(p.name for p in CIFAR.iterdir()), (32, 32), "rgb", {},
                 {"mean": x.mean(axis=(0, 1, 2)).astype(np.float32),
                  "std": x.std(axis=(0, 1, 2)).astype(np.float32),
                  "state_dict": dict(net.state_dict())}).save(out / "resnet20.npz")


def offline(model_path, images):
    """images/s (and CPU ms per image, all threads) of predict_proba on decoded images at batch
    32 and 500; the median time of one batch-1 forward."""
    from cvcore.train.pipeline import load_model, prepare_images
    model = load_model(model_path)
    x = prepare_images(list(images), model.size, model.mode)
    out = {}
    for bs in (32, 500):
        out[f"b{bs}"], out[f"cpu{bs}"] = offline_rate(model, x, bs, OFFLINE_SECONDS)
    out["one_ms"] = one_forward_ms(model, x)
    return out


def one_forward_ms(model, x, n=50) -> float:
    """Median milliseconds of ``n`` batch-1 ``predict_proba`` calls on the images ``x``."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        model.predict_proba(x[i % len(x):i % len(x) + 1])
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def offline_rate(model, x, bs, seconds):
    """(images/s, CPU ms per image) of ``model.predict_proba`` over ``x`` in batches of ``bs``,
    timed over at least ``seconds`` and three passes, after a warm-up batch of each size the
    passes use (``bs`` and the last, shorter one: a ResNet's plan runs batches of 32 and more
    on other kernels than smaller ones, and a first call compiles them)."""
    model.predict_proba(x[:bs])
    if len(x) % bs:
        model.predict_proba(x[:len(x) % bs])
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while done < 3 * len(x) or time.perf_counter() - t0 < seconds:
        for i in range(0, len(x), bs):
            model.predict_proba(x[i:i + bs])
        done += len(x)
    return done / (time.perf_counter() - t0), 1e3 * (time.process_time() - cpu0) / done


def machine_jiffies():
    """(all, idle) jiffies of every CPU since boot, from /proc/stat (Linux; idle includes
    iowait); (nan, nan) elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    return float(sum(v)), float(v[3] + v[4])


def measure(server, metric_name, url, files_list, c, args, use_wrk):
    """One row: warm-up, then the load, with the server's CPU, the load generator's CPU (wrk
    is a child: its rusage) and the machine's idle cores over the row."""
    import resource
    if use_wrk:
        run_wrk(url, files_list, c, 1)                       # warm the connections
    images0, batches0 = server.batches(metric_name)
    cpu0 = process_cpu_seconds(server.proc.pid)
    loop0 = process_cpu_seconds(server.proc.pid, server.proc.pid)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    all0, idle0 = machine_jiffies()
    t0 = time.perf_counter()
    r = run_wrk(url, files_list, c, args.seconds) if use_wrk else \
        run_load(url, files_list, c, args.requests)
    wall = time.perf_counter() - t0
    cpu = process_cpu_seconds(server.proc.pid) - cpu0
    loop = process_cpu_seconds(server.proc.pid, server.proc.pid) - loop0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    all1, idle1 = machine_jiffies()
    images1, batches1 = server.batches(metric_name)
    n = max(r["n"], 1)
    return {"ips": r["n"] / r["seconds"], "p50": 1e3 * r["p50"], "p99": 1e3 * r["p99"],
            "mean_b": (images1 - images0) / max(batches1 - batches0, 1),
            "cpu_ms": 1e3 * cpu / n, "loop_ms": 1e3 * loop / n, "cores": cpu / wall,
            "client": (child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime)
            / wall,
            "idle": (idle1 - idle0) / max(all1 - all0, 1) * (os.cpu_count() or 1),
            "errors": r["errors"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5,
                    help="seconds per row with wrk (default 5)")
    ap.add_argument("--requests", type=int, default=400,
                    help="requests per row with the Python client (when wrk is absent)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the interleaved c=32 comparison at the end (default 3; "
                         "0 skips it)")
    ap.add_argument("--model-threads", type=int, default=0,
                    help="model threads of the servers, cvcore and PyTorch alike (cvcore serve "
                         "--model-threads); 0 = their default, one per core (at most 4)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of the models' kernels, cvcore (Numba) and PyTorch alike: "
                         "offline, and in each model thread of the servers; 0 = offline every "
                         "core, served the cores shared out among the model threads")
    ap.add_argument("--one-model-thread", action="store_true",
                    help="also print both ResNet-20 servers with session 4's design, batched: "
                         "one model thread whose kernels use every core")
    ap.add_argument("--python-client", action="store_true",
                    help="use the Python httpx client even if wrk is installed")
    ap.add_argument("--images", type=int, default=500, help="CIFAR-10 test JPEGs used")
    ap.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-server", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--max-batch-size", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--pipeline-batches", action=argparse.BooleanOptionalAction, default=True,
                    help=argparse.SUPPRESS)
    ap.add_argument("--pin-threads", action=argparse.BooleanOptionalAction, default=True,
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.loadgen:
        return loadgen_main(args)
    if args.torch_server:
        import uvicorn
        uvicorn.run(torch_app(args.torch_server, args.max_batch_size, args.threads,
                              args.model_threads, args.pipeline_batches, args.pin_threads),
                    host="127.0.0.1", port=args.port, log_level="warning",
                    access_log=False)               # as cvcore serve --log-level warning
        return
    if not CIFAR.is_dir():
        sys.exit(f"benchmarks.serve needs the CIFAR-10 JPEGs at {CIFAR}")
    from cvcore.io.datasets import decode_image
    files = sorted(CIFAR.glob("*/*.jpg"))[:: max(1, 10000 // args.images)][:args.images]
    images = [decode_image(f, "rgb") for f in files]
    # Only whether torch is there: importing it here would load its libgomp into this process,
    # which Numba's parallel kernels then bind to (with its long default spin), and the offline
    # ceiling below would not be what a cvcore user measures. The torch server has its own process.
    import importlib.util
    have_torch = importlib.util.find_spec("torch") is not None
    import shutil
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    client = (f"wrk, {args.seconds:g} s per row" if use_wrk else
              f"Python httpx client, {args.requests} requests per row (wrk not used: it would "
              f"leave more of the cores to the servers)")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; load generator: "
          f"{client}; {len(files)} CIFAR-10 JPEGs; kernel threads: "
          f"{args.threads or 'offline every core, served the cores shared out'}; "
          f"model threads per server: {args.model_threads or 'one per core (at most 4)'}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_models(tmp, images)
        files_list = tmp / "files.txt"
        files_list.write_text("\n".join(map(str, files)))
        rows = []
        ceilings = {}
        if args.threads:
            import numba
            numba.set_num_threads(args.threads)
        for name in ("hogsvm", "resnet20"):
            ceilings[name] = offline(tmp / f"{name}.npz", images)
            c = ceilings[name]
            print(f"{name} offline: {c['b32']:.0f} img/s at batch 32, {c['b500']:.0f} at 500; "
                  f"one image {c['one_ms']:.2f} ms; CPU {c['cpu32']:.2f} ms per image at batch 32",
                  flush=True)
        from cvcore.serve.app import ServeConfig, _thread_counts
        cores = numba_cores()
        mt, kt = _thread_counts(ServeConfig(threads=args.threads,
                                            model_threads=args.model_threads), True)
        engines = ["cvcore", "torch"] if have_torch else ["cvcore"]
        # (engine, model, batching design (DESIGNS), model threads, kernel threads per model
        # thread)
        servers = [("cvcore", "hogsvm", b, mt, kt) for b in ("on", "off")] + \
            [(e, "resnet20", b, mt, kt) for e in engines for b in ("on", "off")]
        if args.one_model_thread and mt > 1 and not args.model_threads:
            # session 4's design: one model thread with every core's kernel threads
            servers += [(e, "resnet20", "on", 1, cores) for e in engines]
        for engine, name, batching, model_threads, threads in servers:
            server = start_server(engine, tmp / f"{name}.npz", batching, threads, model_threads)
            try:
                url = f"{server.url}/v1/models/{name}/predict"
                for c in CONCURRENCY:
                    m = measure(server, name if engine == "cvcore" else "torch", url,
                                files_list, c, args, use_wrk)
                    rows.append((engine, name, batching, f"{model_threads}x{threads}", c,
                                 m["ips"], m["p50"], m["p99"], m["mean_b"], m["cpu_ms"],
                                 m["cores"], m["client"], m["ips"] / ceilings[name]["b32"],
                                 m["errors"]))
                    print("  " + _fmt(rows[-1]), flush=True)
            finally:
                server.stop()
        print()
        print(HEADER)
        for row in rows:
            print(_fmt(row))
        if args.rounds > 0 and mt > 1:
            print()
            interleaved(tmp, images, engines, mt, kt, files_list, args, use_wrk)
    print(f"load average after: {os.getloadavg()}")


HEADER = (f"{'server':<8}{'model':<10}{'batch':<7}{'threads':<9}{'c':>3}{'img/s':>8}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'mean b':>8}{'cpu ms':>8}{'cores':>7}{'wrk':>6}"
          f"{'/offline':>10}{'errors':>8}")


def start_server(engine, model_path, batching, threads, model_threads):
    start = cvcore_server if engine == "cvcore" else torch_server
    return start(model_path, batching, threads, model_threads)


#: The designs of the interleaved comparison, in its order.
ROUND_DESIGNS = ("on", "fill", "free")


def interleaved(tmp, images, engines, mt, kt, files_list, args, use_wrk):
    """The goal's figures, robust to a drifting machine: every batched ResNet-20 server (both
    engines, each design of :data:`ROUND_DESIGNS`) is started at once; then ``args.rounds``
    rounds run each one at c=32 for a row, in a fixed order that reverses every other round
    (so that a steady drift of the machine weighs on every server alike), with the offline
    ceiling measured again at the start of each round; the medians over the rounds are
    printed, with the goal's ratios. Each round also runs the default design (``on``) of each
    engine at c=1, beside the median time of one batch-1 forward pass offline, for the goal's
    latency (p99 at c=1 against one forward pass)."""
    from cvcore.train.pipeline import load_model, prepare_images
    model = load_model(tmp / "resnet20.npz")
    x = prepare_images(list(images), model.size, model.mode)
    keys = [(e, d) for d in ROUND_DESIGNS for e in engines]
    print(f"interleaved: ResNet-20, c=32, {args.rounds} rounds over {len(keys)} servers "
          f"({', '.join(f'{e} {d}' for e, d in keys)}), the order reversed every other round; "
          f"offline batch 32 measured at the start of each round; medians", flush=True)
    servers, results, ceilings = {}, {k: [] for k in keys}, []
    lone, forwards = {k: [] for k in keys if k[1] == "on"}, []

    def hit(k, concurrency):
        server = servers[k]
        return measure(server, "resnet20" if k[0] == "cvcore" else "torch",
                       f"{server.url}/v1/models/resnet20/predict", files_list, concurrency,
                       args, use_wrk)

    try:
        for k in keys:
            servers[k] = start_server(k[0], tmp / "resnet20.npz", k[1], kt, mt)
        for r in range(args.rounds):
            ceilings.append(offline_rate(model, x, 32, OFFLINE_SECONDS / 2)[0])
            for k in (keys if r % 2 == 0 else keys[::-1]):
                m = hit(k, 32)
                results[k].append(m)
                print(f"  round {r}: {k[0]:<7}{k[1]:<5} {m['ips']:6.0f} img/s  cpu "
                      f"{m['cpu_ms']:.2f} ms (loop {m['loop_ms']:.2f})  cores {m['cores']:.2f}  "
                      f"wrk {m['client']:.2f}  "
                      f"idle {m['idle']:.2f}  mean b {m['mean_b']:.1f}  errors {m['errors']}"
                      f"  (offline {ceilings[-1]:.0f})", flush=True)
            forwards.append(one_forward_ms(model, x))
            for k in (list(lone) if r % 2 == 0 else list(lone)[::-1]):
                m = hit(k, 1)
                lone[k].append(m)
                print(f"  round {r}: {k[0]:<7}{k[1]:<5} c=1 p50 {m['p50']:.2f} ms  p99 "
                      f"{m['p99']:.2f} ms  {m['ips']:.0f} img/s  cpu {m['cpu_ms']:.2f} ms  "
                      f"errors {m['errors']}  (one forward offline {forwards[-1]:.2f} ms)",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    ceiling = float(np.median(ceilings))
    med = {k: {f: float(np.median([m[f] for m in ms])) for f in ms[0]}
           for k, ms in results.items()}
    print(f"offline ceiling (median of {len(ceilings)}): {ceiling:.0f} img/s at batch 32 "
          f"({', '.join(f'{c:.0f}' for c in ceilings)})")
    print(f"{'server':<8}{'batch':<7}{'img/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean b':>8}"
          f"{'cpu ms':>8}{'loop ms':>9}{'cores':>7}{'wrk':>6}{'idle':>6}{'/offline':>10}"
          f"{'/torch best':>13}{'errors':>8}   rounds img/s")
    torch_best = max((m["ips"] for (e, _), m in med.items() if e == "torch"), default=None)
    for k in keys:
        m = med[k]
        vs = f"{m['ips'] / torch_best:13.2f}" if torch_best else f"{'-':>13}"
        print(f"{k[0]:<8}{k[1]:<7}{m['ips']:8.0f}{m['p50']:9.1f}{m['p99']:9.1f}"
              f"{m['mean_b']:8.1f}{m['cpu_ms']:8.2f}{m['loop_ms']:9.2f}{m['cores']:7.2f}"
              f"{m['client']:6.2f}{m['idle']:6.2f}{m['ips'] / ceiling:10.2f}{vs}"
              f"{sum(x['errors'] for x in results[k]):8d}   "
              + " ".join(f"{x['ips']:.0f}" for x in results[k]))
    best = max((k for k in keys if k[0] == "cvcore"), key=lambda k: med[k]["ips"])
    default = med[("cvcore", "on")]
    line = (f"goal (c=32, batched): cvcore's default design ('on') {default['ips']:.0f} img/s = "
            f"{default['ips'] / ceiling:.2f} of offline (>= 0.70 wanted)")
    if torch_best:
        line += (f", {default['ips'] / torch_best:.2f} of the PyTorch server's best design "
                 f"(>= 1.00 wanted)")
    print(line + f"; cvcore's best design here: '{best[1]}'")
    forward = float(np.median(forwards))
    for k, ms in lone.items():
        p50 = float(np.median([m["p50"] for m in ms]))
        p99 = float(np.median([m["p99"] for m in ms]))
        rounds = ", ".join("%.2f" % m["p99"] for m in ms)
        print(f"goal (c=1, {k[0]} '{k[1]}'): p50 {p50:.2f} ms, p99 {p99:.2f} ms (rounds: "
              f"{rounds}) against cvcore's one forward pass offline {forward:.2f} ms (median of "
              f"{len(forwards)}): p99 {p99 - forward:+.2f} ms")


def _fmt(row):
    (engine, name, batching, threads, c, ips, p50, p99, mb, cpu_ms, cores, client, share,
     errors) = row
    return (f"{engine:<8}{name:<10}{batching:<7}{threads:<9}{c:>3}{ips:>8.0f}{p50:>9.1f}"
            f"{p99:>9.1f}{mb:>8.1f}{cpu_ms:>8.2f}{cores:>7.2f}{client:>6.2f}{share:>10.2f}"
            f"{errors:>8}")


def numba_cores() -> int:
    import numba
    return numba.config.NUMBA_NUM_THREADS


if __name__ == "__main__":
    main()
