"""Numba kernels of cvcore: ``@njit(cache=True)`` functions on arrays and scalars, nothing else.

No validation happens here and nothing here imports from :mod:`cvcore`. Numba does not check
bounds, so every kernel assumes the caller (a function in :mod:`cvcore`) has validated shapes,
dtypes and contiguity and allocated the outputs.
"""
