"""A fast finiteness test for float32 arrays (input validation of the geometry functions).

``np.isfinite(a).all()`` makes a boolean array as large as ``a`` and then reduces it; for a 1024x1024
image that costs about as much as a 2x area resize. Here the test is one pass of integer
arithmetic, which LLVM vectorises (integer ``max`` is associative, unlike a float sum):

    a float32 is NaN or infinite  <=>  its exponent bits are all ones  <=>
    ``bits & 0x7fffffff >= 0x7f800000``          (IEEE 754-2008, sec. 3.4, binary32)

Readable twin: ``np.isfinite(a).all()`` (the tests compare the two).
"""
import numpy as np
from numba import njit

ABS_MASK = np.uint32(0x7FFFFFFF)       # all bits but the sign
EXPONENT_ALL_ONES = np.uint32(0x7F800000)   # +infinity; every larger magnitude is a NaN


@njit(cache=True, nogil=True)
def all_finite_bits(bits):
    """True iff no element of a float32 array, given as its uint32 view (1-D), is NaN or +-inf."""
    top = np.uint32(0)
    for i in range(bits.shape[0]):
        top = max(top, np.uint32(bits[i] & ABS_MASK))   # (Numba widens & to 64 bits)
    return top < EXPONENT_ALL_ONES
