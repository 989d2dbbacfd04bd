"""The fuzzing harness: generated arguments for public functions, each call in a child process.

A case is ``(target, args, kwargs, tame)``: ``target`` names a function as ``"module:name"``,
``tame`` says every argument is finite and of moderate size. The case runs in a long-lived
worker process (:class:`WorkerPool`; Numba's compile cost is paid once per worker) and one of
these comes back:

``ok``         a result (for a tame case, every float in it finite)
``refused``    a ``ValueError`` or ``TypeError``: the promised answer to bad input
``nonfinite``  a tame case returned NaN or infinity
``error``      any other exception (a bug: the traceback is kept)
``crash``      the worker died (a segmentation fault: the signal is kept) and is re-spawned
``hang``       no answer within the time limit; the worker is killed and re-spawned

Everything but ``ok`` and ``refused`` is a finding, reported with a reproducer (the call with
its arguments, printable as a Python snippet). The strategies are in :mod:`tests.fuzz_registry`.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass

import numpy as np

ACCEPTED = ("ok", "refused")
CASE_TIMEOUT = float(os.environ.get("CVCORE_FUZZ_TIMEOUT", "60"))   # seconds per case


def resolve(target: str):
    module, _, name = target.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _leaves(obj, depth=0):
    """Every ndarray and float inside a result (tuples, lists, dicts, NamedTuples, dataclasses)."""
    if depth > 6:
        return
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (float, np.floating)):
        yield np.asarray(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _leaves(v, depth + 1)
    elif hasattr(obj, "__dataclass_fields__"):
        for k in obj.__dataclass_fields__:
            yield from _leaves(getattr(obj, k), depth + 1)


def all_finite(result) -> bool:
    return all(a.dtype.kind != "f" or bool(np.isfinite(a).all()) for a in _leaves(result))


class Strided:
    """A non-contiguous array in transit: ``base[::2]`` (pickling a view would copy it into a
    contiguous array, and the kernels would never see the strides)."""

    def __init__(self, base):
        self.base = base

    def view(self):
        return self.base[::2]


def _unwrap(obj):
    if isinstance(obj, Strided):
        return obj.view()
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_unwrap(v) for v in obj)
    if isinstance(obj, list):
        return [_unwrap(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def run_case(target, args, kwargs, tame):
    """Run one case in this process; return ``(status, detail)``."""
    args, kwargs = _unwrap(args), _unwrap(kwargs)
    try:
        result = resolve(target)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        return "refused", f"{type(exc).__name__}: {exc}"[:300]
    except Exception:
        return "error", traceback.format_exc(limit=8)[-2000:]
    if tame and not all_finite(result):
        return "nonfinite", "a tame case returned NaN or infinity"
    return "ok", ""


def _worker(conn):
    import warnings
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        if case is None:
            return
        conn.send(run_case(*case))


class WorkerPool:
    """Long-lived worker processes (spawned: no state shared with the parent) that run cases;
    a worker that dies or hangs is replaced by a fresh one."""

    def __init__(self, size: int = 1, timeout: float = CASE_TIMEOUT):
        self._ctx = mp.get_context("spawn")
        self.timeout = timeout
        self._workers = [self._spawn() for _ in range(size)]
        self.respawns = 0

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, args=(child,), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def _replace(self, i):
        proc, conn = self._workers[i]
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        conn.close()
        self._workers[i] = self._spawn()
        self.respawns += 1

    def run(self, target, args=(), kwargs=None, tame=False, worker: int = 0, _retry=False):
        """Run one case in worker ``worker``; return ``(status, detail)``."""
        proc, conn = self._workers[worker]
        try:
            conn.send((target, tuple(args), dict(kwargs or {}), bool(tame)))
        except (BrokenPipeError, OSError):
            self._replace(worker)
            proc, conn = self._workers[worker]
            conn.send((target, tuple(args), dict(kwargs or {}), bool(tame)))
        if conn.poll(self.timeout):
            try:
                return conn.recv()
            except EOFError:
                pass
        proc.join(0.5)
        if proc.exitcode is not None:
            code = proc.exitcode
            self._replace(worker)
            return "crash", f"worker died with exit code {code} (negative: signal {-code})"
        self._replace(worker)
        if not _retry:
            # A first call of a kernel compiles it (Numba), which on a loaded machine can take
            # longer than the limit: a hang must hang again, given four times as long.
            saved, self.timeout = self.timeout, 4 * self.timeout
            try:
                status, detail = self.run(target, args, kwargs, tame, worker, _retry=True)
            finally:
                self.timeout = saved
            return status, (detail if status != "hang" else
                            f"no answer within {saved:.0f} s, nor within {4 * saved:.0f} s "
                            f"in a fresh worker")
        return "hang", f"no answer within {self.timeout:.0f} s"

    def close(self):
        for proc, conn in self._workers:
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def _short(value) -> str:
    if isinstance(value, Strided):
        return f"{_short(value.base)}[::2]"
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        body = np.array2string(flat[:8], threshold=8)
        extra = "" if flat.size <= 8 else f" ... ({flat.size} values)"
        strides = "" if value.flags.c_contiguous else f", strides {value.strides}"
        return f"<ndarray {value.dtype} {value.shape}{strides}: {body}{extra}>"
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        inner = ", ".join(f"{k}={_short(v)}" for k, v in zip(value._fields, value))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_short(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def reproducer(target, args, kwargs) -> str:
    """The call as one line (arrays summarised by dtype, shape, strides and leading values)."""
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in (kwargs or {}).items()]
    module, _, name = target.partition(":")
    return f"from {module} import {name.split('.')[0]}; {name}({', '.join(parts)})"


@dataclass
class Finding:
    status: str
    target: str
    detail: str
    reproducer: str

    def __str__(self):
        return f"[{self.status}] {self.reproducer}\n    {self.detail.strip()[-600:]}"


def fuzz_entry(pool, label, entry, max_examples, seed=0, worker=0):
    """Run ``max_examples`` generated cases of ``entry``; return ``(counts, findings)``."""
    from collections import Counter

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    counts: Counter = Counter()
    findings: list = []

    @hseed(seed)
    @settings(max_examples=max_examples, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(entry.case())
    def prop(case):
        args, kwargs, tame = case
        status, detail = pool.run(entry.target, args, kwargs, tame, worker=worker)
        counts[status] += 1
        if status not in ACCEPTED:
            findings.append(Finding(status, label, detail,
                                    reproducer(entry.target, args, kwargs)))

    prop()
    return counts, findings
