"""Numba kernels of cvcore: ``@njit(cache=True)`` functions on arrays and scalars, nothing else.

No validation happens here and nothing here imports from :mod:`cvcore`. Numba does not check
bounds, so every kernel assumes the caller (a function in :mod:`cvcore`) has validated shapes,
dtypes and contiguity and allocated the outputs.
"""
import os

# Numba's OpenMP threads spin-wait after each parallel region by default. A training step or a
# feature pipeline launches hundreds of short parallel kernels between BLAS calls, and spinning
# threads then compete with OpenBLAS's threads (or other processes) for the cores: measured on
# 2 cores, a ResNet-20 training step took 1.7 s with spinning and 0.65 s with passive waiting.
# Only a default: set OMP_WAIT_POLICY yourself to override it. It must be set before Numba
# starts its thread pool, hence here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
