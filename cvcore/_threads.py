"""Choosing how many Numba threads a call uses."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def threads_for(parallel: bool):
    """Run the enclosed kernels on one thread unless ``parallel``.

    Small work (a small image, an octave of few pixels, a handful of keypoints) takes less time
    than waking and joining the thread team, most of all on a machine whose cores are busy; the
    caller decides what counts as small.
    """
    if parallel:
        yield
        return
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
