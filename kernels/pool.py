"""A pool of helper threads that run parts of a band kernel through its address, in native
code from start to end: the image calls' alternative to an OpenMP region (:mod:`kernels.team`),
used by :func:`cvcore._team.run_team`.

Why not the OpenMP region for an image call. A region ends at a barrier that waits for every
thread of the team, also one asleep when the call starts: with cvcore's short spin
(``GOMP_SPINCOUNT=10000``, :mod:`kernels`) a thread is asleep after ~0.2 ms without work, and
waking it (a futex wake: an inter-processor interrupt through the hypervisor, the idle vCPU
leaving ``hlt``) took 80-100 us on the 2-core VM of ``benchmarks/README.md`` (an empty kernel
in two parts after a 2 ms pause, against 4.6 us back to back), as long as a whole 1024^2 ->
512^2 block mean. An image call is often the first after a pause (a pipeline reads a file,
runs Python, then resizes). Here the caller never waits for a helper that has not started:
the rows are handed out in parts from a shared counter (the *claim word*), the caller takes
parts from the first one on, and at the end waits only for the parts that helpers took, each
already running. A helper that wakes late finds nothing left and goes back to waiting. So a
call costs at most the caller's own one-thread time, and with a helper awake about half
(OpenCV's thread pool hands out stripes the same way).

The parts shrink as the rows run out (OpenMP's *guided* schedule): each is ``1 / DIVISOR`` of
the rows left (``DIVISOR`` = the threads), at least ``MIN_ROWS``. Equal parts would
leave the caller idle at the end for up to a part while a helper finishes its last one (with
eight equal parts, 1/16 of the call on average); large parts first keep the claims few (seven
for a 512-row resize on two threads: each claim and count moves the job's cache line between
the cores, ~0.3 us a part here), small ones last keep that wait short.

Everything runs without the GIL: a helper thread's whole life is :func:`serve` (it spins a
bounded number of polls after each call, as GNU OpenMP's threads do, then sleeps on a futex on
the epoch word), and the caller publishes, takes its parts and waits in :func:`run_job`. No
Python runs between the parts, so no thread ever waits for the GIL (the band runner's pool
threads, :mod:`cvcore._bands`, run Python between bands and must hand the GIL over).

The job words (``job``, int64, :data:`JOB_WORDS` long, one array per pool):

* ``EPOCH``: the number of the newest job; helpers poll it (and sleep on its low 32 bits);
* ``CLAIM``: ``epoch << ROW_BITS | next row``; a part is taken by a compare-and-swap that
  keeps the epoch, so a helper still holding an older epoch can never take a part of a newer
  job (whose arguments it has not read);
* ``DONE``, ``PARTS_RUN``, ``FAILED``: rows finished, parts run, parts whose kernel raised (the
  caller then runs the whole call again where the exception reaches Python, as
  :func:`cvcore._team.run_parts` does);
* ``ENTRY``, ``KERNEL``, ``DATA``, ``ROWS``, ``DIVISOR``, ``MIN_ROWS``: the call (the
  trampoline's address, the kernel's, the arguments' copy, :mod:`kernels.team`; the rows and
  how they are cut), valid while the job is not done;
* ``SLEEPERS``: helpers asleep (or about to sleep) on ``EPOCH``; ``WAITER``: 1 while the
  caller sleeps on ``DONE``; ``HELPERS``: how many helpers the newest job wants (helper ``slot``
  1, 2, ... joins only if ``slot <= HELPERS``: the free-core rule, :func:`cvcore._team.bands_for`,
  decides how many threads a call may use; the others go back to sleep at once).

Readable twin (what the parts compute): ``kernel(*args, 0, rows)``, in any cut into bands.
"""
import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.bands import _cpu_relax, _load_acquire
from kernels.team import _call_entry

(EPOCH, CLAIM, DONE, PARTS_RUN, FAILED, ENTRY, KERNEL, DATA, ROWS, DIVISOR, MIN_ROWS, SLEEPERS,
 WAITER, HELPERS) = range(14)
#: Words of a job array (the named ones above, padded to two cache lines).
JOB_WORDS = 16
#: Bits of the claim word that count rows (at most 2**32 - 1 rows per call).
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1

#: Linux's futex system call number (``asm/unistd.h``) on the machines the pool runs on;
#: :data:`HAS_FUTEX` is False elsewhere and :func:`cvcore._team.run_team` uses the OpenMP team.
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(
    platform.machine().lower(), -1)
HAS_FUTEX = platform.system() == "Linux" and _SYS_FUTEX > 0
#: ``FUTEX_WAIT | FUTEX_PRIVATE_FLAG`` and ``FUTEX_WAKE | FUTEX_PRIVATE_FLAG``
#: (``linux/futex.h``): the word is private to this process.
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129


def _address(context, builder, array_type, array, index):
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


@intrinsic
def _fetch_add(typingctx, words, index, value):
    """``words[index] += value`` as one sequentially consistent atomic read-modify-write;
    returns the old value."""
    sig = types.int64(words, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", address, args[2], "seq_cst")
    return sig, codegen


@intrinsic
def _compare_swap(typingctx, words, index, expected, value):
    """``words[index] = value`` if it holds ``expected``, atomically (sequentially
    consistent); returns whether it did."""
    sig = types.boolean(words, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        pair = builder.cmpxchg(address, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return sig, codegen


@intrinsic
def _futex(typingctx, words, index, op, value):
    """``syscall(SYS_futex, &low 32 bits of words[index], op, value, NULL, NULL, 0)``
    (little-endian: the low half of an int64 comes first). ``FUTEX_WAIT`` sleeps only while the
    word still holds ``value`` (the kernel checks it atomically, so a wake between the check and
    the sleep is not lost); ``FUTEX_WAKE`` wakes up to ``value`` sleepers."""
    sig = types.int64(words, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], args[1])
        i64, i32 = ir.IntType(64), ir.IntType(32)
        syscall = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64], var_arg=True), "syscall")
        null = ir.Constant(ir.IntType(8).as_pointer(), None)
        return builder.call(syscall, [ir.Constant(i64, _SYS_FUTEX),
                                      builder.bitcast(address, i32.as_pointer()),
                                      builder.trunc(args[2], i32), builder.trunc(args[3], i32),
                                      null, null, ir.Constant(i32, 0)])
    return sig, codegen


@njit(cache=True, nogil=True)
def take_parts(job, epoch):
    """Take parts of job ``epoch`` from the claim word and run them until no row is left (or a
    newer job replaced it); returns how many parts this thread ran. A part is ``1 / DIVISOR``
    of the rows left, at least ``MIN_ROWS``. ``DONE`` counts a part's rows after they are
    written (the caller waits for it to reach ``ROWS``)."""
    ran = 0
    while True:
        word = _load_acquire(job, CLAIM)
        if word >> ROW_BITS != epoch:
            return ran
        first = word & ROW_MASK
        rows = _load_acquire(job, ROWS)     # the job's while the claim word still holds epoch
        if first >= rows:
            return ran
        last = min(rows, first + max(job[MIN_ROWS], (rows - first) // job[DIVISOR]))
        if not _compare_swap(job, CLAIM, word, (epoch << ROW_BITS) | last):
            continue
        if _call_entry(job[ENTRY], job[KERNEL], job[DATA], first, last):
            _fetch_add(job, FAILED, 1)
        _fetch_add(job, PARTS_RUN, 1)
        if _fetch_add(job, DONE, last - first) + (last - first) == rows \
                and _fetch_add(job, WAITER, 0):
            _futex(job, DONE, FUTEX_WAKE_PRIVATE, 1)
        ran += 1


@njit(cache=True, nogil=True)
def serve(job, slot, spins):
    """The life of helper ``slot`` (1, 2, ...): poll ``EPOCH`` for a new job (at most
    ``spins`` polls after the last one), take its parts (:func:`take_parts`) if the job wants
    this many helpers, and sleep on ``EPOCH`` when the spin runs out or the job does not want
    it. Returns only when ``EPOCH`` becomes negative (a pool that is shut down).

    Twin: ``while True: wait for EPOCH to change; take_parts(job, EPOCH)``."""
    seen = _load_acquire(job, EPOCH)
    left = spins
    while seen >= 0:
        epoch = _load_acquire(job, EPOCH)
        if epoch != seen:
            seen = epoch
            if epoch >= 0 and slot <= _load_acquire(job, HELPERS):
                take_parts(job, epoch)
                left = spins
            else:
                left = 0
        elif left > 0:
            _cpu_relax()
            left -= 1
        else:
            _fetch_add(job, SLEEPERS, 1)    # before the futex's own check of EPOCH: run_job
            _futex(job, EPOCH, FUTEX_WAIT_PRIVATE, seen & 0xFFFFFFFF)   # then sees a sleeper
            _fetch_add(job, SLEEPERS, -1)
            left = spins
    return seen


@njit(cache=True, nogil=True)
def run_job(job, entry, kernel, data, rows, divisor, min_rows, helpers, spins):
    """Publish a job (the kernel at ``kernel`` through the trampoline at ``entry``, arguments
    at ``data``, ``rows`` cut into parts of ``1 / divisor`` of the rows left, at least
    ``min_rows``, for at most ``helpers`` helper threads), wake the helpers that sleep, take
    parts in this thread until no row is left, and wait for the parts helpers took (``spins``
    polls, then asleep on ``DONE``). Returns the number of parts whose kernel raised; the
    parts run are in ``job[PARTS_RUN]``. One job at a time per ``job`` array (the caller holds
    the pool's lock).

    Twin: ``kernel(*args, 0, rows)``.
    """
    epoch = job[EPOCH] + 1
    job[ENTRY] = entry
    job[KERNEL] = kernel
    job[DATA] = data
    job[ROWS] = rows
    job[DIVISOR] = max(1, divisor)
    job[MIN_ROWS] = max(1, min_rows)
    job[DONE] = 0
    job[PARTS_RUN] = 0
    job[FAILED] = 0
    job[HELPERS] = helpers
    _fetch_add(job, CLAIM, (epoch << ROW_BITS) - job[CLAIM])    # epoch, row 0
    _fetch_add(job, EPOCH, 1)                                    # (sequentially consistent)
    if _fetch_add(job, SLEEPERS, 0) > 0:     # (a read ordered after the epoch's store)
        _futex(job, EPOCH, FUTEX_WAKE_PRIVATE, 1 << 30)
    take_parts(job, epoch)
    left = spins
    while True:
        done = _load_acquire(job, DONE)
        if done == rows:
            break
        if left > 0:
            _cpu_relax()
            left -= 1
        else:                        # a helper descheduled mid-part: sleep until it is done
            _fetch_add(job, WAITER, 1)
            if _fetch_add(job, DONE, 0) != rows:
                _futex(job, DONE, FUTEX_WAIT_PRIVATE, done & 0xFFFFFFFF)
            _fetch_add(job, WAITER, -1)
    return _load_acquire(job, FAILED)


@njit(cache=True, nogil=True)
def _wake_all(job):
    """Wake every helper asleep on ``EPOCH`` (a pool being shut down: ``EPOCH`` < 0)."""
    return _futex(job, EPOCH, FUTEX_WAKE_PRIVATE, 1 << 30)
