"""Bands of rows on Numba's OpenMP team, the band kernel called through its address.

A band kernel is a serial ``nogil`` function ``kernel(*args, y0, y1)`` that computes output
rows ``y0:y1`` (the resize and warp kernels, :mod:`kernels.resize`, :mod:`kernels.warp`).
:func:`run_team` runs ``bands`` such bands in a ``prange``, one per thread of Numba's team:
an OpenMP team starts a region without the GIL, where a band-runner thread
(:mod:`cvcore._bands`) takes the GIL before each band and, asleep, 30-80 us to wake.

Why through an address. A ``prange`` whose body calls (or inlines) the kernel compiles the
kernel again: Numba links the kernel's LLVM module, and those of every function it calls,
into the parallel gufunc's module and into the caller's, and optimises and generates machine
code for the whole again each time (LLVM did not inline the kernel into the gufunc: the cost
is the linked copies). Measured on the separable resize, empty cache, CPU seconds (2-core VM
of ``benchmarks/README.md``, session 10): the serial kernel 2.1; a ``prange`` calling it 4.6,
inlining it 5.1; calling it through its address (here) 2.6, of which 0.5 is this module's
gufunc, compiled once per tuple of argument types and shared by every kernel taking those
types. :func:`call_band` calls the kernel's compiled native function as Numba's own calls
between compiled functions do (its calling convention and error status), only through a
pointer given at run time instead of a linked symbol; the caller gets the address
of the kernel compiled for exactly these argument types (:func:`cvcore._team.band_address`).

The network kernels (:mod:`kernels.nn_conv`, :mod:`kernels.nn_norm`, :mod:`kernels.nn_act`) run
the same way, in lanes: ``kernel(*args, i0, i1)`` over a range of their own work units
(:func:`cvcore.nn._lanes.run_lanes`); their arguments may hold tuples (a batch norm's four
arrays), which a ``prange`` body cannot take, so the tuple goes in as a pointer to a copy of it
(:func:`pack`).

Readable twin: ``for b in range(bands): kernel(*args, n * b // bands, n * (b + 1) // bands)``,
which is what the caller runs on one thread (:func:`cvcore._team.run_parts`).
"""
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def pack(typingctx, args):
    """A pointer to a copy of the tuple ``args`` in the caller's stack frame: the parallel loop
    takes it as one scalar (a ``prange`` body cannot take a tuple holding a tuple of arrays)."""
    if not isinstance(args, types.BaseTuple):
        return None

    def codegen(context, builder, signature, llargs):
        model = context.data_model_manager[args]
        slot = cgutils.alloca_once(builder, model.get_data_type())
        builder.store(model.as_data(builder, llargs[0]), slot)
        return slot

    return types.CPointer(args)(args), codegen


@intrinsic
def call_band(typingctx, address, packed, y0, y1):
    """``kernel(*args, y0, y1)`` for the compiled band kernel whose native function is at
    ``address`` (an integer: ``library.get_pointer_to_function(fndesc.llvm_func_name)`` of
    the kernel compiled for the types of ``args`` followed by two ``intp``, returning None),
    ``args`` being the tuple at ``packed`` (:func:`pack`).

    The members of ``args`` are passed one by one, then ``y0`` and ``y1`` as ``intp``.
    Returns whether the kernel raised (an ``IndexError`` under ``NUMBA_BOUNDSCHECK=1``, a
    ``MemoryError``): inside a ``prange`` Numba drops an exception (a kernel called directly
    there too), so :func:`run_team` counts them and its caller runs the kernel again where the
    exception reaches Python.
    """
    if not (isinstance(address, types.Integer) and isinstance(packed, types.CPointer)
            and isinstance(packed.dtype, types.BaseTuple)
            and isinstance(y0, types.Integer) and isinstance(y1, types.Integer)):
        return None
    args = packed.dtype
    kernel_args = tuple(args) + (types.intp, types.intp)

    def codegen(context, builder, signature, llargs):
        address_value, pointer, first, last = llargs
        tup = context.data_model_manager[args].from_data(builder, builder.load(pointer))
        values = [builder.extract_value(tup, i) for i in range(len(args))]
        values.append(context.cast(builder, first, signature.args[2], types.intp))
        values.append(context.cast(builder, last, signature.args[3], types.intp))
        function_type = context.call_conv.get_function_type(types.none, kernel_args)
        function = builder.inttoptr(address_value, function_type.as_pointer())
        status, _ = context.call_conv.call_function(builder, function, types.none,
                                                    kernel_args, values)
        return status.is_error

    return types.boolean(address, packed, y0, y1), codegen


@njit(cache=True, nogil=True, parallel=True)
def run_team(address, args, n_rows, bands):
    """The band kernel at ``address`` on ``bands`` bands of rows ``[n_rows * b // bands,
    n_rows * (b + 1) // bands)``, in a ``prange`` (one band per thread when ``bands`` is
    Numba's thread count; the bands cover ``range(n_rows)`` once, so the result is the
    one-band result whenever the kernel's rows are independent). Returns how many bands
    raised (:func:`call_band`)."""
    packed = pack(args)
    failed = 0
    for b in prange(bands):
        y0 = n_rows * b // bands
        y1 = n_rows * (b + 1) // bands
        if y0 < y1 and call_band(address, packed, y0, y1):
            failed += 1
    return failed
