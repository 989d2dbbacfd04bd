"""Small scalar helpers shared by kernels of several rooms, inlined where they are called.

Each stands in for a Numba builtin on purpose: ``min``/``max`` on integers are one more
Numba-internal specialisation to compile in every kernel that uses them (measured in
``benchmarks/README.md``, "First run: Numba compile time per command").
"""
from numba import njit


@njit(cache=True, inline="always", nogil=True)
def clamp(v, lo, hi):
    """``min(max(v, lo), hi)`` for integers (``lo <= hi``), without the builtins."""
    return lo if v < lo else (hi if v > hi else v)
