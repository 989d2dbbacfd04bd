"""``parallel=True`` kernels in a forked child.

Numba's OpenMP threading layer (GNU libgomp) cannot run a parallel region in a child forked
after the parent started the layer: the child prints "Terminating: fork() called from a process
already using GNU OpenMP, this is unsafe." and kills itself with SIGTERM (the check is in
Numba's ``omppool``). A child is forked by ``multiprocessing``'s default start method on Linux,
by PyTorch's ``DataLoader`` workers, by a pre-loading web server's workers, so a cvcore call
there must not die.

The band runner and the helper pool already run a forked child's parts serially
(:mod:`cvcore._bands`, :mod:`cvcore._team`). For every other ``parallel=True`` kernel, a
forked child gets a *serial twin* in its place, in the kernel's module: the same Python function
compiled without ``parallel`` (``prange`` is then ``range``: the same sums in the same order
within each iteration, so the same results). The twin is compiled on its first call in the child
(seconds per kernel, once per child) and is not cached on disk: Numba's cache index does not key
on the ``parallel`` flag, so a cached twin would be mistaken for the parallel kernel. Kernel
modules the child imports later get their twins as they are imported.

Nothing changes in a child forked *before* the threading layer started (it starts its own), with
a threading layer other than OpenMP, or in the parent.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys

#: Kernel modules whose parallel kernels take care of a forked child themselves (a ``serial``
#: argument: :func:`kernels.team.run_team`, :func:`kernels.team.run_steps`).
SELF_GUARDED = ("kernels.team",)


class SerialTwin:
    """Stands in for a ``parallel=True`` kernel in a forked child (see the module docstring)."""

    def __init__(self, dispatcher):
        self.parallel = dispatcher
        self.serial = None
        functools.update_wrapper(self, dispatcher.py_func)

    def __call__(self, *args, **kwargs):
        if self.serial is None:
            import numba

            options = {k: v for k, v in self.parallel.targetoptions.items()
                       if k not in ("parallel", "cache", "nopython")}
            self.serial = numba.njit(**options)(self.parallel.py_func)
        return self.serial(*args, **kwargs)


def _is_parallel_kernel(value) -> bool:
    from numba.core.registry import CPUDispatcher

    return isinstance(value, CPUDispatcher) and bool(value.targetoptions.get("parallel"))


def guard(module) -> int:
    """Put serial twins in place of ``module``'s parallel kernels; return how many."""
    if module is None or module.__name__ in SELF_GUARDED:
        return 0
    count = 0
    for name, value in list(vars(module).items()):
        if _is_parallel_kernel(value):
            setattr(module, name, SerialTwin(value))
            count += 1
    return count


class _GuardOnImport(importlib.abc.MetaPathFinder):
    """In a guarded child: a kernel module imported later gets its twins once it has run."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("kernels.") or fullname.startswith("kernels.reference"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            guard(module)
        spec.loader.exec_module = exec_module
        return spec


def openmp_started() -> bool:
    """Whether this process started Numba's threading layer, and it is OpenMP."""
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", False):
        return False
    return getattr(parallel, "_threading_layer", None) == "omp"


def _after_fork_in_child():
    if not openmp_started():
        return
    for name, module in list(sys.modules.items()):
        if name.startswith("kernels.") and not name.startswith("kernels.reference"):
            guard(module)
    sys.meta_path.insert(0, _GuardOnImport())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
