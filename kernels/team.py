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
(:func:`cvcore.nn._lanes.run_lanes`).

One parallel loop for every kernel and every argument type. A ``prange`` function is compiled
(its gufunc with it) once per tuple of argument types, 0.3-0.4 s each; a network step calls
kernels of ten-odd argument tuples. So the loop, :func:`run_team`, takes only integers: the
kernel's address, a *trampoline*'s address and the address of a copy of the arguments'
native form (:func:`store_args`, into a buffer the caller keeps). The trampoline
(:func:`trampoline`, a serial function compiled once per tuple of argument types, ~0.04 s)
reads the arguments back and calls the kernel. Their tuple may hold tuples (a batch norm's four
arrays), which a ``prange`` body could not take directly.

A fixed sequence of such calls (the inference plan's convolutions: strip fill, product, next
convolution ...) runs from one call from Python, :func:`run_steps`: a table of
:func:`run_team`'s integer arguments, one region after the other (also compiled once).

Readable twin: ``for b in range(bands): kernel(*args, n * b // bands, n * (b + 1) // bands)``,
which is what the caller runs on one thread (:func:`cvcore._team.run_parts`).
"""
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _detached(context, builder, typ, value):
    """``value`` with every array in it (through nested tuples) stripped of its reference
    count (``meminfo``) and Python owner (``parent``): a borrowed view of the same memory. The
    ones :func:`store_args` received are released when it returns, while the copy is used
    after that; the caller keeps the arrays themselves alive."""
    if isinstance(typ, types.Array):
        array = context.make_array(typ)(context, builder, value)
        array.meminfo = cgutils.get_null_value(array.meminfo.type)
        array.parent = cgutils.get_null_value(array.parent.type)
        return array._getvalue()
    if isinstance(typ, types.BaseTuple):
        for i, member in enumerate(typ):
            value = builder.insert_value(
                value, _detached(context, builder, member, builder.extract_value(value, i)), i)
    return value


@intrinsic
def _store(typingctx, buf, args):
    """Copy the native form of the tuple ``args`` (each array as Numba's array structure: its
    data pointer, shape and strides, not reference counted: :func:`_detached`) to the start of
    ``buf`` (int64, large enough: :func:`cvcore._team.entry`); returns ``buf``'s address."""
    if not (isinstance(args, types.BaseTuple) and isinstance(buf, types.Array)):
        return None

    def codegen(context, builder, signature, llargs):
        model = context.data_model_manager[args]
        array = context.make_array(signature.args[0])(context, builder, llargs[0])
        slot = builder.bitcast(array.data, model.get_data_type().as_pointer())
        value = _detached(context, builder, args, llargs[1])
        builder.store(model.as_data(builder, value), slot)
        return builder.ptrtoint(array.data, context.get_value_type(types.int64))

    return types.int64(buf, args), codegen


@njit(cache=True, nogil=True)
def store_args(buf, args):
    """The arguments ``args`` (a tuple) copied into ``buf`` (:func:`_store`); returns the copy's
    address for :func:`run_team`. The copy is valid while ``args`` and ``buf`` live."""
    return _store(buf, args)


@intrinsic
def call_band(typingctx, address, packed, y0, y1):
    """``kernel(*args, y0, y1)`` for the compiled band kernel whose native function is at
    ``address`` (an integer: ``library.get_pointer_to_function(fndesc.llvm_func_name)`` of
    the kernel compiled for the types of ``args`` followed by two ``intp``, returning None),
    ``args`` being the tuple at ``packed`` (a pointer to its native form, :func:`store_args`).

    The members of ``args`` are passed one by one, then ``y0`` and ``y1`` as ``intp``: a call
    as Numba's own calls between compiled functions are made (its calling convention and error
    status), through a pointer instead of a linked symbol, so the kernel's code is not linked
    and compiled again here. Returns whether the kernel raised (an ``IndexError`` under
    ``NUMBA_BOUNDSCHECK=1``, a ``MemoryError``).
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


@njit(cache=True, nogil=True)
def trampoline(kernel, packed, y0, y1):
    """``kernel(*args, y0, y1)`` (:func:`call_band`); compiled for ``packed`` a pointer to the
    tuple type of ``args`` (:func:`cvcore._team.entry`); returns whether the kernel raised."""
    return call_band(kernel, packed, y0, y1)


@intrinsic
def _call_entry(typingctx, entry, kernel, data, y0, y1):
    """``trampoline(kernel, data, y0, y1)`` for the :func:`trampoline` compiled at ``entry``
    (``data`` an integer address: every trampoline takes a pointer there, whatever it points
    to); returns whether it failed (an error status, or the kernel raised)."""
    if not all(isinstance(t, types.Integer) for t in (entry, kernel, data, y0, y1)):
        return None

    def codegen(context, builder, signature, llargs):
        entry_value, kernel_value, data_value, first, last = llargs
        arg_types = (types.int64, types.voidptr, types.intp, types.intp)
        function_type = context.call_conv.get_function_type(types.boolean, arg_types)
        function = builder.inttoptr(entry_value, function_type.as_pointer())
        values = [context.cast(builder, kernel_value, signature.args[1], types.int64),
                  builder.inttoptr(data_value, context.get_value_type(types.voidptr)),
                  context.cast(builder, first, signature.args[3], types.intp),
                  context.cast(builder, last, signature.args[4], types.intp)]
        status, raised = context.call_conv.call_function(builder, function, types.boolean,
                                                         arg_types, values)
        return builder.or_(status.is_error, raised)

    return types.boolean(entry, kernel, data, y0, y1), codegen


@njit(cache=True, nogil=True, parallel=True)
def run_team(entry, kernel, data, n_rows, bands, failed):
    """The band kernel at ``kernel`` (with the arguments at ``data``, through the trampoline at
    ``entry``) on ``bands`` bands of rows ``[n_rows * b // bands, n_rows * (b + 1) // bands)``,
    in a ``prange`` (one band per thread when ``bands`` is Numba's thread count; the bands cover
    ``range(n_rows)`` once, so the result is the one-band result whenever the kernel's rows are
    independent). ``failed[0] = 1`` when a band raised (each such band stores the same 1):
    inside a ``prange`` Numba drops an exception, so the caller runs the kernel again where it
    reaches Python."""
    for b in prange(bands):
        y0 = n_rows * b // bands
        y1 = n_rows * (b + 1) // bands
        if y0 < y1 and _call_entry(entry, kernel, data, y0, y1):
            failed[0] = 1


@njit(cache=True, nogil=True, parallel=True)
def run_steps(steps, serial, failed):
    """A sequence of kernel calls by address, in one call from Python: step ``s`` is the row
    ``steps[s] = (entry, kernel, data, n, parts)`` of :func:`run_team`'s arguments, run as
    :func:`run_team` runs them (``parts`` parts of ``range(n)``, one OpenMP region), or in one
    part in this thread, no region, when ``parts < 2`` or ``serial`` (a forked child:
    :data:`cvcore._team._FORKED`). Each step starts after the one before it has ended.

    For a fixed sequence of calls whose arguments do not change between runs (the inference
    plan's convolutions, :mod:`cvcore.nn.inference`): the copies of their arguments are made
    once (:func:`store_args`), and a run costs no Python per call (``run_team`` from Python:
    ~3.6 us of it each, two per convolution). Returns the first step that raised (``failed[0]
    = 1`` then, the steps after it not run), or -1.

    Readable twin: ``for s in steps: run_team(*s, failed)``, stopping at a failure."""
    for s in range(steps.shape[0]):
        entry, kernel, data = steps[s, 0], steps[s, 1], steps[s, 2]
        n, parts = steps[s, 3], steps[s, 4]
        if parts < 2 or serial:
            if _call_entry(entry, kernel, data, 0, n):
                failed[0] = 1
        else:
            for b in prange(parts):
                y0 = n * b // parts
                y1 = n * (b + 1) // parts
                if y0 < y1 and _call_entry(entry, kernel, data, y0, y1):
                    failed[0] = 1
        if failed[0]:
            return s
    return -1
