"""Numba kernels of cvcore: ``@njit(cache=True)`` functions on arrays and scalars, nothing else.

No validation happens here and nothing here imports from :mod:`cvcore`. Numba does not check
bounds, so every kernel assumes the caller (a function in :mod:`cvcore`) has validated shapes,
dtypes and contiguity and allocated the outputs.
"""
import os

# After each parallel region Numba's OpenMP threads (GNU libgomp) spin for a while before they
# sleep. Spinning keeps them ready for the next kernel (a network forward launches one every few
# tens of microseconds), but a thread pool of another library (NumPy's OpenBLAS, say) that runs
# next finds the cores busy. Measured on 2 cores (a Numba kernel and a 300x300 matrix product
# alternating 300 times; ResNet-50 batch 1 / ResNet-20 train step / ResNet-20 inference b128):
#   libgomp's default spin (300 000):  2676 ms;  33 / 236 / 52 ms
#   GOMP_SPINCOUNT=10000 (~0.2 ms):    1173 ms;  33 / 241 / 52 ms
#   OMP_WAIT_POLICY=PASSIVE (no spin):  984 ms;  43 / 263 / 58 ms
# A short spin is the default here; set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself to override
# it. It must be set before Numba starts its thread pool, hence here. It does not reach a process
# that imported PyTorch first: torch loads its own libgomp globally, reading the environment then,
# and Numba's OpenMP calls bind to that copy (LD_DEBUG=bindings). On a busy machine no spin
# setting is right anyway (a descheduled team thread stalls every region); what keeps cvcore's
# networks fast there is running them on no more threads than there are free cores
# (cvcore/_threads.py, measured in benchmarks/README.md, "A busy machine").
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

# Numba's cache needs a writable folder: a read-only install falls back to the user-wide cache,
# and, where that is not writable either, to a private temporary folder (kernels/_cache.py).
from kernels._cache import ensure_cache_dir  # noqa: E402

ensure_cache_dir()

# A child forked after the OpenMP threading layer started runs the parallel kernels serially
# (GNU OpenMP would terminate it: kernels/_fork.py).
from kernels import _fork  # noqa: E402,F401
