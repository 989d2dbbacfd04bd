"""The inference plan of a residual network: its eval-mode forward under
:func:`cvcore.nn.no_grad` as a short list of fused kernel calls.

A layer-by-layer forward runs, per convolution, the convolution kernel, a batch-norm pass, often
a ReLU pass and a residual-sum pass, each with its own argument checks, output allocation and
parallel region. For inference none of that is needed:

* an eval-mode batch norm is a per-channel affine map, and the ReLU and the residual sum are
  element-wise, so all of them run in the convolution kernel's epilogue, as each tile leaves the
  registers (:func:`kernels.nn_conv.conv2d_forward`: ``relu(bn2(conv2(h)) + identity)`` is one
  call; the batch norm is folded from its live statistics inside the kernel, on every call, so a
  changed weight or statistic is always used);
* the shapes, the thread split and the argument lists of every call are worked out once per
  input shape and thread count, and the activations go to buffers the plan keeps between
  calls (per thread; a fresh multi-megabyte array costs a page fault per 4 KiB page);
* below :data:`PIXEL_MAJOR_MIN_BATCH` the convolutions' lane calls (strip fill, product, for
  every convolution) run from one call from Python (:class:`cvcore.nn._lanes.LaneSteps`,
  their arguments copied once per program): at batch 1 a call from Python each (~3.6 us of
  Python, two per convolution) made ResNet-20 ~18 % slower than one parallel kernel per
  convolution (``benchmarks/README.md``, session 11);
* the network's input is checked once (as :meth:`cvcore.nn.ResNet.forward` checks it).

Every step rounds as the separate layers do, so the logits equal the layer-by-layer forward's
bit for bit (``tests/test_nn_models.py``). The plan serves only the case it was made for: every
module in eval mode, gradients off, float32 parameters, the block layout of
:mod:`cvcore.nn.blocks`; otherwise, and for any input the plan cannot take (an error to
report), the network runs layer by layer, which raises the usual errors.

Measured (``python -m benchmarks.cnn --serve-batches``, ``benchmarks/README.md``): at batch 1 on
one thread the layer-by-layer glue cost about as much CPU as the kernels themselves.
"""
from __future__ import annotations

import operator
import threading

import numpy as np

from cvcore._bands import run_bands
from cvcore._threads import numba_threads
from cvcore.nn._lanes import LaneSteps
from cvcore.nn.layers import _kernels, _matmul_nt, _pool_output_shape
from kernels import simd

__all__ = ["ResNetPlan", "Unplanned"]

_INF = float("inf")


class _Conv:
    """One fused step: ``dst = clamp(bn(conv(src)) [+ res])``; slots are indices of the plan's
    activation buffers (-1: the network's input)."""

    __slots__ = ("conv", "bn", "relu", "src", "dst", "res", "path")

    def __init__(self, conv, bn, relu, src, dst, res, path):
        self.conv, self.bn, self.relu = conv, bn, relu
        self.src, self.dst, self.res, self.path = src, dst, res, path


class _MaxPool:
    __slots__ = ("pool", "src", "dst")

    def __init__(self, pool, src, dst):
        self.pool, self.src, self.dst = pool, src, dst


class ResNetPlan:
    """The fused inference forward of a :class:`cvcore.nn.ResNet` (see the module docstring).

    Parameters
    ----------
    net : ResNet
        Blocks of :mod:`cvcore.nn.blocks` (``BasicBlock`` / ``Bottleneck``), projections
        ``Sequential(Conv2d, BatchNorm2d)``.

    Notes
    -----
    :meth:`run` returns None when the plan does not apply (a module in training mode, a
    parameter that is not a C-contiguous float32 array, an input that some layer refuses); the
    caller then runs the network layer by layer. Buffers are per thread and per plan; a copied
    or unpickled network has none (it makes its own plan on first use).
    """

    def __init__(self, net):
        from cvcore.nn.module import structure_version
        self.version = structure_version()        # the layout the steps were read from
        self.net = net
        self.steps, self.nslots = _build_steps(net)
        self.modules = [m for m in net.modules()]
        self.convs = [s for s in self.steps if isinstance(s, _Conv)]
        self._local = threading.local()

    def __reduce__(self):
        # a copied or unpickled network makes a plan of its own on first use
        return type(None), ()

    # -- per call ---------------------------------------------------------------------------
    def run(self, x, output="logits"):
        """Logits (N, num_classes) of the validated float32 images ``x`` (N, C, H, W),
        C-contiguous, or None when the plan does not apply. ``output="embed"``: the pooled
        features (N, C) instead (:meth:`cvcore.nn.ResNet.embed`); ``"features"``: the last
        stage's activations (N, C, h, w) (:meth:`cvcore.nn.ResNet.features`). Always new
        arrays (the plan's buffers are reused by the next call)."""
        for m in self.modules:
            if m.training:
                return None
        params = self._live_arrays()
        if params is None:
            return None
        N, _, H, W = x.shape
        key = (N, H, W, numba_threads())
        local = self._local
        programs = getattr(local, "programs", None)
        if programs is None:
            programs = local.programs = {}
            local.bufs = [np.empty(0, np.float32) for _ in range(self.nslots + 3)]
            local.argmax = np.empty(0, np.int32)
            local.ws = np.empty(0, np.float32)
            local.status = np.zeros(1, np.int64)
        program = programs.get(key)
        if program is None or program[0] is not params and program[0] != params:
            program = self._program(x.shape, key[3], params)
            if program is None:
                return None
            programs[key] = program
        _, calls, head, last, _ = program
        local.status[0] = 0
        for args in calls:
            if args[0] == -1:                          # the input goes first
                args[1](x, *args[2:])
            elif args[0] == -3:                        # convolutions on strips
                if args[2] is not None:
                    args[2][...] = x                   # (the first one reads a copy of x)
                args[1].run()
            else:                                      # pixel-major convolutions, max pool
                args[1](*args[2:])
        if local.status[0] < 0:                        # a batch norm's statistics are not a
            return None                                # variance: the layer path says which
        pool_fn, pool_args, pooled, fc = head
        if output == "features":
            return last.copy()
        if pool_fn is not None:                        # (else done by the last step)
            pool_fn(*pool_args)
        if output == "embed":
            return pooled.copy()
        logits = _matmul_nt(pooled, fc.weight.data)
        if fc.bias is not None:
            logits += fc.bias.data
        return logits

    def step_calls(self, x):
        """The kernel calls of :meth:`run` for the input ``x``, one by one, for timing them
        (``python -m benchmarks.cnn --layers``): a list of ``(path, relu, residual, fn)``, one
        per call in order (``fn()`` runs that call on the plan's buffers: for a strip program a
        convolution's two lane calls, its strip fill and its product; the max pool steps are
        named ``"maxpool"``, the layout changes of a pixel-major program ``"to_pixel_major"``
        and ``"from_pixel_major"``); empty when the plan does not apply. Runs the network once
        first (to make the program)."""
        key = (x.shape[0], x.shape[2], x.shape[3], numba_threads())
        for _ in range(2):              # (the first run makes the program of this shape)
            if self.run(x) is None:
                return []
            if key in self._local.programs:
                break
        _, calls, _, _, names = self._local.programs[key]
        out = []
        for name, args in zip(names, calls):
            if args[0] == -1:
                out.append(name + ((lambda a=args: a[1](x, *a[2:])),))
            elif args[0] == -3:                        # one entry per convolution
                for conv_name, first, last in name:
                    out.append(conv_name + ((lambda a=args, i=first, j=last:
                                             _run_steps(x, a, i, j)),))
            else:
                out.append(name + ((lambda a=args: a[1](*a[2:])),))
        return out

    def _live_arrays(self):
        """The parameter and statistic arrays every step reads now (a tuple compared by
        identity with those a program was made with), or None if one of them is not a
        C-contiguous float32 array (checked when they are not the arrays of last time: an
        array's dtype and layout do not change)."""
        out = []
        for s in self.convs:
            bn = s.bn
            out += (s.conv.weight.data, bn.weight.data, bn.bias.data, bn.running_mean,
                    bn.running_var)
        fc = self.net.fc
        out += (fc.weight.data, None if fc.bias is None else fc.bias.data)
        out = _Identity(out)
        checked = getattr(self, "_checked", None)
        if out == checked:
            return checked           # (the object a program holds: compared by `is` first)
        for a in out:
            if a is not None and (not isinstance(a, np.ndarray) or a.dtype != np.float32
                                  or not a.flags.c_contiguous):
                return None
        self._checked = out
        return out

    # -- per input shape ---------------------------------------------------------------------
    def _program(self, shape, lanes, params):
        """``(params, calls, head, last)`` for inputs of ``shape`` on ``lanes`` threads: every
        kernel call with its arguments, the activations in this thread's buffers, ``last`` the
        last stage's output; None if a layer would refuse the shape."""
        from cvcore.nn.conv import conv2d_output_shape
        local = self._local
        shapes = {-1: tuple(shape)}
        plan, srcs = [], []
        for s in self.steps:
            src = shapes[s.src]
            srcs.append(src)
            if isinstance(s, _Conv):
                conv, bn = s.conv, s.bn
                if conv.groups != 1 or src[1] != conv.in_channels or \
                        bn.num_features != conv.out_channels or conv.bias is not None:
                    return None
                for size, k, p, d in zip(src[2:], conv.kernel_size, conv.padding,
                                         conv.dilation):
                    if size + 2 * p < d * (k - 1) + 1:
                        return None
                out = conv2d_output_shape(src, conv.weight.data.shape, conv.stride,
                                          conv.padding, conv.dilation)
                if s.res is not None and shapes[s.res] != out:
                    return None
            else:
                pool = s.pool
                try:
                    out = _pool_output_shape(src, pool.kernel_size, pool.stride, pool.padding,
                                             pool.dilation, "max_pool2d")
                except ValueError:
                    return None
            if min(out) < 1:
                return None
            shapes[s.dst] = out
            plan.append(out)
        last = shapes[self.steps[-1].dst]
        fc = self.net.fc
        if last[1] != fc.in_features:
            return None
        pm, tb = self._layout(plan, srcs)
        # grow the buffers to this shape's needs (slot nslots: the pooled features; nslots + 1
        # a copy of the input (pixel-major programs: in that layout); nslots + 2 the last
        # stage's output in NCHW (pixel-major programs))
        need = [0] * (self.nslots + 3)
        for s, out in zip(self.steps, plan):
            need[s.dst] = max(need[s.dst], _stored_size(out, pm))
        need[self.nslots] = last[0] * last[1]
        need[self.nslots + 1] = _stored_size(shape, pm)
        if pm >= 0:
            need[self.nslots + 2] = int(np.prod(last))
        bufs = local.bufs
        grown = False
        for i, n in enumerate(need):
            if n > bufs[i].size:
                bufs[i] = np.empty(n, np.float32)
                grown = True
        pools = [out for s, out in zip(self.steps, plan) if isinstance(s, _MaxPool)]
        amax = max([int(np.prod(o)) for o in pools], default=0)
        if amax > local.argmax.size:
            local.argmax = np.empty(amax, np.int32)
            grown = True
        if pm < 0:                                     # the strips' workspace
            strip = max([_strip_length(s, src, out) for s, out, src
                         in zip(self.steps, plan, srcs) if isinstance(s, _Conv)], default=0)
            if strip > local.ws.size:
                local.ws = np.empty(strip, np.float32)
                grown = True
        if grown:                                      # older programs hold views of the old
            local.programs.clear()                     # buffers

        def view(slot, shp):
            if pm < 0:
                return bufs[slot][:int(np.prod(shp))].reshape(shp)
            n, c, h, w = shp                           # pixel-major, the zero border stored
            shp = (h + 2 * pm, w + 2 * pm, c, n)
            return bufs[slot][:int(np.prod(shp))].reshape(shp)

        calls, names = [], []
        if pm >= 0:
            calls.append((-1, _to_pixel_major, view(self.nslots + 1, shape), pm, tb))
            names.append(("to_pixel_major", False, False))
        steps = None                 # the strip program's current run of convolutions
        for s, out, src_shape in zip(self.steps, plan, srcs):
            y = view(s.dst, out)
            if isinstance(s, _Conv) and pm < 0:
                if steps is None:
                    steps = LaneSteps()
                    calls.append((-3, steps, view(self.nslots + 1, shape) if s.src == -1
                                  else None))
                    names.append([])
                first = len(steps)
                self._strip_steps(steps, s, view(self.nslots + 1 if s.src == -1 else s.src,
                                                 src_shape), y,
                                  view(s.res, out) if s.res is not None else _EMPTY4, lanes)
                names[-1].append(((s.path, s.relu, s.res is not None), first, len(steps)))
                continue
            steps = None
            if isinstance(s, _Conv):                  # pixel-major
                conv, bn = s.conv, s.bn
                K, C, kh, kw = conv.weight.data.shape
                res = view(s.res, out) if s.res is not None else _EMPTY4
                w_mat = conv.weight.data.reshape(K, C * kh * kw)
                affine = (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var)
                lo = 0.0 if s.relu else -_INF
                names.append((s.path, s.relu, s.res is not None))
                src = view(self.nslots + 1 if s.src == -1 else s.src, src_shape)
                tiles = _pixel_major_tiles(out[0], out[2], out[3], tb)
                work = tb * C * kh * kw * -(-K // simd.KB)
                calls.append((-2, _banded, _kernels("nn_conv").conv2d_forward_pm, tiles,
                              work, src, w_mat, kh, kw, *conv.stride, *conv.padding,
                              *conv.dilation, _ZEROS(K), y, affine, float(bn.eps), lo, _INF,
                              res, pm, tb, local.status))
            else:
                pool = s.pool
                N, C, H, W = src_shape
                OH, OW = out[2], out[3]
                am = local.argmax[:N * C * OH * OW].reshape(N * C, OH, OW)
                calls.append((0, _kernels("nn_pool").maxpool2d_forward,
                              view(s.src, src_shape).reshape(N * C, H, W), *pool.kernel_size,
                              *pool.stride, *pool.padding, *pool.dilation,
                              y.reshape(N * C, OH, OW), am))
                names.append(("maxpool", False, False))
        N, C, H, W = last
        if pm >= 0:
            out = bufs[self.nslots + 2][:N * C * H * W].reshape(last)
            calls.append((-2, _from_pixel_major, view(self.steps[-1].dst, last), pm, out, tb))
            names.append(("from_pixel_major", False, False))
        else:
            out = view(self.steps[-1].dst, last)
        pooled = bufs[self.nslots][:N * C].reshape(N, C)
        pool_fn = _kernels("nn_pool").adaptive_avgpool2d_forward
        pool_args = (out.reshape(N * C, H, W), pooled.reshape(N * C, 1, 1))
        if steps is not None:          # the pool as the strip program's last step, in one part
            steps.add(pool_fn, N * C, *pool_args, lanes=1)
            pool_fn = None
        head = (pool_fn, pool_args + (0, N * C), pooled, fc)
        return params, calls, head, out, names

    def _strip_steps(self, steps, s, x, y, res, lanes):
        """Append the lane calls of conv step ``s`` (input ``x``, output ``y``, residual
        ``res`` or ``_EMPTY4``: views of the plan's buffers) to ``steps``
        (:func:`cvcore.nn.conv.forward_steps`: the strip fill, then the product with the
        batch norm, residual and ReLU in its epilogue)."""
        from cvcore.nn.conv import _channel_groups, forward_steps
        conv, bn = s.conv, s.bn
        K, C, kh, kw = conv.weight.data.shape
        out = y.shape
        affine = (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var)
        forward_steps(steps, x, conv.weight.data.reshape(K, C * kh * kw), kh, kw, *conv.stride,
                      *conv.padding, *conv.dilation,
                      _channel_groups(out[0], out[2], out[3], K, lanes), _ZEROS(K),
                      self._local.ws, y, affine, float(bn.eps), 0.0 if s.relu else -_INF, _INF,
                      res, self._local.status, narrow=_narrow(s, x.shape, out), lanes=lanes)

    def _layout(self, plan, srcs):
        """``(pad, tb)``: the storage padding and the block of the pixel-major layout if this
        program should run in it (:func:`kernels.nn_conv.conv2d_forward_pm`), else ``(-1,
        0)``: when the batch is large enough and the convolutions compute fewer positions x
        taps that way than on their strips (no max pool: the pool kernel reads NCHW). The
        block is :data:`kernels.simd.TBP` images, or :data:`kernels.simd.TBH` where that
        leaves fewer tiles' positions empty (a batch of 16: one half tile, not half of a
        full one; 48: three, not two full ones and half of a third)."""
        N = plan[0][0]
        if N < PIXEL_MAJOR_MIN_BATCH or len(self.convs) != len(self.steps):
            return -1, 0
        from cvcore.nn.conv import stride1_pitch
        tb = simd.TBP
        if simd.AVX512 and -(-N // simd.TBH) * simd.TBH < -(-N // simd.TBP) * simd.TBP:
            tb = simd.TBH
        pad = max(max(s.conv.padding) for s in self.convs)
        strip = pixel = 0
        for s, out, src in zip(self.steps, plan, srcs):
            conv = s.conv
            (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
            N, C, H, W = src
            Ho, Wo = out[2], out[3]
            work = C * kh * kw * -(-out[1] // simd.KB)          # taps x channel blocks
            if (sh, sw) == (1, 1):
                pitch = stride1_pitch(H, W, Ho, Wo, ph, pw)
            else:
                pitch = ((H + 2 * ph + sh - 1) // sh) * ((W + 2 * pw + sw - 1) // sw)
            strip += work * -(-N * pitch // simd.TB) * simd.TB
            pixel += work * _pixel_major_tiles(N, Ho, Wo, tb) * tb
        return (pad, tb) if pixel < strip else (-1, 0)


class Unplanned:
    """Stands for the plan of a network whose layout the plan does not know (a custom block),
    until the layout changes again."""

    def __init__(self):
        from cvcore.nn.module import structure_version
        self.version = structure_version()

    def run(self, x):
        return None

    def __reduce__(self):
        return type(None), ()


class _Identity(tuple):
    """A tuple of arrays that compares by identity (``is``), not by value."""

    def __new__(cls, items):
        return super().__new__(cls, items)

    def __eq__(self, other):
        return self is other or (isinstance(other, _Identity) and len(self) == len(other)
                                 and all(map(operator.is_, self, other)))

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = None


_EMPTY4 = np.empty((0, 0, 0, 0), np.float32)
#: Batches from this size run in the pixel-major layout when it computes less
#: (:meth:`ResNetPlan._layout`). A tile holds one pixel's images (a block: ``simd.TBP``, 32,
#: or ``simd.TBH``, 16), so smaller batches leave tiles empty. ResNet-20 one thread, CPU,
#: against the strip plan: 0.83 of its time at batch 32, 0.76 at 64, 0.74 at 128 (session 8,
#: blocks of 32); 0.89 at batch 16 in blocks of 16 (session 9).
PIXEL_MAJOR_MIN_BATCH = 16


def _narrow(s, src, out):
    """Whether conv step ``s`` from NCHW ``src`` to ``out`` takes the narrow tile
    (:func:`cvcore.nn.conv.narrow_tile`)."""
    from cvcore.nn.conv import narrow_tile
    conv = s.conv
    K, C, kh, kw = conv.weight.data.shape
    return narrow_tile(out[0], src[2], src[3], out[2], out[3], kh, kw, conv.stride,
                       conv.padding, conv.dilation, C * kh * kw * K)


def _strip_length(s, src, out):
    """Values of the strip of conv step ``s`` from NCHW ``src`` to ``out``."""
    from cvcore.nn.conv import strip_length
    conv = s.conv
    return strip_length(src, out[2], out[3], *conv.kernel_size, *conv.stride, *conv.padding,
                        *conv.dilation, _narrow(s, src, out))


def _stored_size(shape, pm):
    """Elements a buffer needs for activations of NCHW ``shape``: NCHW (``pm < 0``), or
    pixel-major with a border of ``pm`` and the tail a row's last tile reads past the view
    (:func:`kernels.nn_conv.conv2d_forward`; at most ``simd.TBP``, the larger block)."""
    n, c, h, w = shape
    if pm < 0:
        return n * c * h * w
    return c * (h + 2 * pm) * (w + 2 * pm) * n + simd.TBP


def _pixel_major_tiles(N, Ho, Wo, tb=simd.TBP):
    """Tiles of :func:`kernels.nn_conv.conv2d_forward_pm`: one per output pixel and block of
    ``tb`` images."""
    return -(-N // tb) * Ho * Wo


def _run_steps(x, call, first, last):
    """Steps ``first .. last - 1`` of a strip program's ``(-3, steps, input copy)`` call,
    the copy of ``x`` made first when they include the first step; returns 0."""
    if first == 0 and call[2] is not None:
        call[2][...] = x
    call[1].run(first, last)
    return 0


def _banded(kernel, tiles, work, *args):
    """``kernel(*args, t0, t1)`` over ``range(tiles)`` in bands on the free cores
    (:func:`cvcore._bands.run_bands`; ``work``: the cost of a tile); returns 0."""
    run_bands(kernel, tiles, work, *args)
    return 0


def _pixel_major_blocks(shape, pm, buf, tb=simd.TBP):
    """``(n0, block)`` for each block of ``tb`` images of
    :func:`kernels.nn_conv.conv2d_forward_pm`'s layout of NCHW ``shape`` in the 4-D view
    ``buf``: images ``n0, n0 + 1, ...`` as ``block[pm + h, pm + w, c, n - n0]``."""
    N, C, H, W = shape
    flat = buf.reshape(buf.size)
    size = C * (H + 2 * pm) * (W + 2 * pm)
    for n0 in range(0, N, tb):
        nb = min(tb, N - n0)
        yield n0, flat[n0 * size:(n0 + nb) * size].reshape(H + 2 * pm, W + 2 * pm, C, nb)


def _to_pixel_major(x, out, pm, tb=simd.TBP):
    """``x`` (N, C, H, W) into the pixel-major view ``out`` (blocks of ``tb`` images) with a
    zero border ``pm``; returns 0."""
    N, C, H, W = x.shape
    for n0, block in _pixel_major_blocks(x.shape, pm, out, tb):
        block[pm:pm + H, pm:pm + W] = x[n0:n0 + block.shape[3]].transpose(2, 3, 1, 0)
        if pm:
            block[:pm] = 0
            block[pm + H:] = 0
            block[pm:pm + H, :pm] = 0
            block[pm:pm + H, pm + W:] = 0
    return 0


def _from_pixel_major(xs, pm, out, tb=simd.TBP):
    """The pixel-major view ``xs`` (border ``pm``, blocks of ``tb`` images) into ``out`` (N,
    C, H, W); returns 0."""
    N, C, H, W = out.shape
    for n0, block in _pixel_major_blocks(out.shape, pm, xs, tb):
        out[n0:n0 + block.shape[3]] = block[pm:pm + H, pm:pm + W].transpose(3, 2, 0, 1)
    return 0


_ZERO_CACHE = {}


def _ZEROS(K):
    """A float32 zero bias of length ``K`` (the kernel ignores it with a batch norm, and never
    writes it; not flagged read-only, which would be another type for Numba to compile the
    kernel for)."""
    z = _ZERO_CACHE.get(K)
    if z is None:
        z = _ZERO_CACHE[K] = np.zeros(K, np.float32)
    return z


def _build_steps(net):
    """The steps of ``net`` (a ResNet) and the number of activation slots they use; raises
    TypeError for a layout the plan does not know."""
    from cvcore.nn.blocks import BasicBlock, Bottleneck
    from cvcore.nn.conv import Conv2d
    from cvcore.nn.layers import AdaptiveAvgPool2d, BatchNorm2d, MaxPool2d, Sequential

    steps = []
    free = []
    count = [0]

    def take():
        if free:
            return free.pop()
        count[0] += 1
        return count[0] - 1

    def conv_bn(conv, bn, relu, src, res, path, dst=None):
        if type(conv) is not Conv2d or type(bn) is not BatchNorm2d:
            raise TypeError(f"{path}: not a Conv2d + BatchNorm2d pair")
        dst = take() if dst is None else dst
        steps.append(_Conv(conv, bn, relu, src, dst, res, path))
        return dst

    x = conv_bn(net.conv1, net.bn1, True, -1, None, "conv1")
    if net.stem == "imagenet":
        if type(net.maxpool) is not MaxPool2d:
            raise TypeError("maxpool: not a MaxPool2d")
        y = take()
        steps.append(_MaxPool(net.maxpool, x, y))
        free.append(x)
        x = y
    for stage in net._stage_names:
        for i, block in enumerate(getattr(net, stage)):
            path = f"{stage}.{i}"
            if type(block) not in (BasicBlock, Bottleneck):
                raise TypeError(f"{path}: not a BasicBlock or Bottleneck")
            h = x
            inner = []
            for k, (cname, bname) in enumerate(block._stages[:-1]):
                h_new = conv_bn(getattr(block, cname), getattr(block, bname), True, h, None,
                                f"{path}.{cname}")
                if h is not x:
                    free.append(h)
                h = h_new
                inner.append(h)
            ds = block.downsample
            if ds is not None:
                if type(ds) is not Sequential or len(ds) != 2:
                    raise TypeError(f"{path}.downsample: not Sequential(Conv2d, BatchNorm2d)")
                identity = conv_bn(ds[0], ds[1], False, x, None, f"{path}.downsample")
                free.append(x)
            else:
                identity = x
            cname, bname = block._stages[-1]
            # the residual sum is written over the identity's buffer, read element by element
            conv_bn(getattr(block, cname), getattr(block, bname), True, h, identity,
                    f"{path}.{cname}", dst=identity)
            free.append(h)
            x = identity
    if type(net.avgpool) is not AdaptiveAvgPool2d or net.avgpool.output_size != (1, 1):
        raise TypeError("avgpool: not a global average pool")
    return steps, count[0]
