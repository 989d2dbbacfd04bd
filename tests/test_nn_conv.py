"""Tests of the 2-D convolution: kernels.nn_conv, kernels.reference.nn_conv, cvcore.nn.conv.

Three kinds: hand-worked toy cases, agreement with the readable twin and with
``torch.nn.functional.conv2d`` (forward and every gradient), and properties (adjointness of
strip windows = im2col columns, output shapes, float64 central-difference gradient checks).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcore.nn.conv import (Conv2d, Conv2dCache, conv2d_backward, conv2d_forward,
                            conv2d_output_shape, make_strip, strip_forward)
from cvcore.nn.gradcheck import gradcheck
from kernels import nn_conv as fast
from kernels import simd
from kernels.reference import nn_conv as ref

RTOL, ATOL = 1e-4, 1e-5       # float32 agreement with PyTorch (issue 5)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# (x shape, w shape, stride, padding, dilation, bias): odd sizes, rectangular kernels, every
# geometry argument as int and as pair, the 1x1 fast path with and without stride.
CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), 1, 1, 1, True),
    ((2, 3, 7, 9), (4, 3, 3, 2), (2, 1), (0, 2), (1, 2), False),
    ((3, 5, 8, 8), (6, 5, 1, 1), 1, 0, 1, True),
    ((3, 5, 8, 8), (6, 5, 1, 1), 2, 0, 1, False),
    ((2, 5, 8, 8), (6, 5, 1, 1), 1, 1, 1, True),       # 1x1 with padding: not the fast path
    ((1, 2, 5, 5), (3, 2, 5, 5), 1, 0, 1, True),       # kernel as large as the image
    ((2, 2, 6, 7), (3, 2, 3, 3), 3, 2, 2, True),
    ((2, 4, 6, 6), (2, 4, 2, 2), 2, 1, 3, True),
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1, True),
    ((2, 3, 4, 11), (2, 3, 1, 7), (1, 3), (0, 3), 1, True),
    ((3, 16, 9, 9), (8, 16, 3, 3), 2, 1, 1, False),    # ResNet downsampling conv, odd size
    ((2, 3, 6, 5), (17, 3, 3, 3), 1, 3, 1, True),      # padding beyond the kernel's reach
    ((1, 40, 3, 3), (70, 40, 3, 3), 1, 1, 1, False),   # one small image, many channels
    ((2, 7, 12, 11), (9, 7, 7, 7), 2, 3, 1, True),     # ResNet-50-style stem, odd size
    ((2, 3, 9, 9), (4, 3, 3, 3), 3, 0, 1, True),       # stride = kernel: phases, no overlap
    ((2, 3, 7, 8), (4, 3, 2, 2), 3, 0, 1, True),       # stride > kernel: pixels no tap reads
    # packed strips (no gaps, lane masks: kernels.nn_conv.packed), for float32 on AVX-512 too
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, True),
    ((3, 5, 16, 16), (6, 5, 3, 3), 1, 1, 1, False),
    ((2, 2, 4, 4), (3, 2, 5, 5), 1, 2, 1, True),       # reads two rows and columns outside
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, (1, 2), (1, 2), True),
    ((2, 3, 4, 12), (4, 3, 3, 5), 1, (0, 2), 1, True),  # rows 12 wide: a vector is 4/3 rows
    ((2, 3, 6, 8), (4, 3, 3, 3), 1, (2, 1), 1, False),  # padding beyond the reach: Ho > H
]


def random_case(rng, xs, ws, bias, dtype=np.float32):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    return x, w, b


# -- hand-worked toy cases ---------------------------------------------------------------------

def test_toy_box_filter_with_padding():
    # a 3x3 image 1..9, a 2x2 kernel of ones, padding 1: every output is the sum of the 2x2
    # window of the zero-padded image, e.g. top-left = 1 (only x[0,0] inside), centre-ish
    # y[1,1] = 1+2+4+5 = 12, bottom-right = 9.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2), np.float32)
    y, _ = conv2d_forward(x, w, None, stride=1, padding=1)
    expected = np.array([[1, 3, 5, 3],
                         [5, 12, 16, 9],
                         [11, 24, 28, 15],
                         [7, 15, 17, 9]], np.float32)
    np.testing.assert_array_equal(y[0, 0], expected)


def test_toy_cross_correlation_not_convolution():
    # PyTorch's conv2d does not flip the kernel: a kernel [[1, 0], [0, 0]] picks the top-left
    # pixel of each window, so with no padding y equals x without its last row and column.
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    w = np.zeros((1, 1, 2, 2), np.float32)
    w[0, 0, 0, 0] = 1
    y, _ = conv2d_forward(x, w, np.array([0.5], np.float32))
    np.testing.assert_array_equal(y[0, 0], x[0, 0, :2, :3] + 0.5)


def test_toy_stride_and_dilation():
    # 1x5x5 image, 2x2 kernel of ones dilated by 2 reads x[r, c] + x[r, c+2] + x[r+2, c] +
    # x[r+2, c+2]; stride 2 keeps output rows/cols 0 and 2... output size (5-3)//2+1 = 2.
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 2, 2), np.float32)
    y, _ = conv2d_forward(x, w, None, stride=2, dilation=2)
    X = x[0, 0]
    expected = np.array([[X[r, c] + X[r, c + 2] + X[r + 2, c] + X[r + 2, c + 2]
                          for c in (0, 2)] for r in (0, 2)])
    np.testing.assert_array_equal(y[0, 0], expected)


def test_toy_backward_of_sum():
    # L = sum(y) for a 3x3 kernel of ones, padding 1, on a 3x3 image: dL/dx[r, c] counts the
    # output pixels whose window covers (r, c): 4 in the corners, 6 on the edges, 9 in the middle;
    # dL/dw[i, j] is the sum of the pixels tap (i, j) reads; db = number of outputs = 9.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 3, 3), np.float32)
    y, cache = conv2d_forward(x, w, np.zeros(1, np.float32), padding=1)
    dx, dw, db = conv2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    # tap (0, 0) reads x[r-1, c-1] for r, c in 0..2: the top-left 2x2 block 1+2+4+5 = 12
    np.testing.assert_array_equal(dw[0, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    assert db.tolist() == [9.0]


# -- agreement with the readable twin ----------------------------------------------------------

@pytest.mark.parametrize("weight_grad", ["columns", "windows"])
@pytest.mark.parametrize("xs,ws,s,p,d,bias", CASES)
def test_fast_matches_reference(xs, ws, s, p, d, bias, weight_grad, rng, monkeypatch):
    # float32 kernels against the twin in float64: the sums run over up to C*kh*kw = 343 terms
    # of unit variance, so float32 rounding reaches ~1e-5 in absolute terms. Both weight-gradient
    # kernels (explicit columns for few positions, window dot products otherwise).
    import cvcore.nn.conv as conv_module
    monkeypatch.setattr(conv_module, "COLS_MAX_POSITIONS", 10**9 if weight_grad == "columns" else 0)
    x, w, b = random_case(rng, xs, ws, bias)
    y, cache = conv2d_forward(x, w, b, s, p, d)
    f64 = (lambda a: None if a is None else a.astype(np.float64))
    y_ref, cols = ref.conv2d_forward(f64(x), f64(w), f64(b), pair(s), pair(p), pair(d))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=5e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, cache)
    dx_r, dw_r, db_r = ref.conv2d_backward(f64(dy), x.shape, f64(w), cols, bias, pair(s),
                                           pair(p), pair(d))
    np.testing.assert_allclose(dx, dx_r, rtol=1e-5, atol=5e-5)
    np.testing.assert_allclose(dw, dw_r, rtol=1e-5, atol=1e-4)
    assert (db is None) == (db_r is None)
    if bias:
        np.testing.assert_allclose(db, db_r, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("xs,ws,s,p", [
    ((4, 8, 32, 32), (8, 8, 3, 3), 1, 1),           # ResNet-20's shapes, fewer images
    ((12, 4, 32, 32), (8, 4, 3, 3), 2, 1),
    ((12, 4, 32, 32), (8, 4, 1, 1), 2, 0),
    ((200, 3, 8, 8), (5, 3, 5, 5), 1, 0),           # no padding: dx's convolution pads dy by 4
    ((200, 3, 8, 8), (5, 3, 3, 3), 1, 3),           # padding beyond the reach: it crops dy
    ((40, 4, 8, 8), (5, 4, 3, 3), 1, 1),            # packed (kernels.nn_conv.packed)
])
def test_weight_grad_reads_the_input_gradients_dy_strip(xs, ws, s, p, rng, monkeypatch):
    # With the input gradient, dW reads dy from the strip the input gradient's convolution laid
    # out (same grid: the complementary padding) instead of laying dy out once more; the sums
    # are the same, in the same order, so dW is bit-equal to the one computed alone.
    import cvcore.nn.conv as conv_module
    x, w, _ = random_case(rng, xs, ws, False)
    y, cache = conv2d_forward(x, w, None, s, p)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    fills = []
    run = conv_module.run_lanes

    def counting(kernel, n, *args, **kwargs):
        if kernel is fast.fill_strip and args[0] is dy:
            fills.append(n)
        return run(kernel, n, *args, **kwargs)
    monkeypatch.setattr(conv_module, "run_lanes", counting)
    _, dw_alone, _ = conv2d_backward(dy, cache, need_dx=False)
    assert len(fills) == 1                               # dy laid out for the dot products
    fills.clear()
    dx, dw, _ = conv2d_backward(dy, cache)
    assert len(fills) == 1                               # once, for dx's convolution
    np.testing.assert_array_equal(dw, dw_alone)
    f64 = (lambda a: a.astype(np.float64))
    _, cols = ref.conv2d_forward(f64(x), f64(w), None, pair(s), pair(p), (1, 1))
    _, dw_r, _ = ref.conv2d_backward(f64(dy), x.shape, f64(w), cols, False, pair(s), pair(p),
                                     (1, 1))
    np.testing.assert_allclose(dw, dw_r, rtol=1e-5, atol=1e-4)


def _out_size(H, k, s, p, d):
    return (H + 2 * p - d * (k - 1) - 1) // s + 1


def _check_strip(x, kh, kw, s, p, d, span=48):
    """Every window of the strip, at every output pixel's position, is that pixel's im2col
    column (the reference's); returns the positions' grid for further checks."""
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(s), pair(p), pair(d)
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    R = C * kh * kw
    xs, offs, masks, Wg, pitch, P = make_strip(x, Ho, Wo, (kh, kw, sh, sw, ph, pw, dh, dw), span,
                                               R + 5, np.empty(0, x.dtype))
    assert P % span == 0 and P >= N * pitch and Wg >= Wo and pitch >= Ho * Wg
    assert (offs[R:] == offs[0]).all()
    vl = simd.vector_lanes(x.dtype)
    packed = (sh, sw) == (1, 1) and min(ph, pw) >= 0 and ph + pw > 0 and Ho <= H and Wo <= W \
        and H * W <= fast.PACKED_MAX_PIXELS and H * W % vl == 0
    if packed:
        assert (Wg, pitch) == (W, H * W) and masks.shape == (H * W // vl, kh * kw)
    else:
        assert masks.shape == (0, 0)
    cols = ref.im2col(x, kh, kw, (sh, sw), (ph, pw), (dh, dw))       # (N, R, Ho*Wo)
    n, oh, ow = np.meshgrid(np.arange(N), np.arange(Ho), np.arange(Wo), indexing="ij")
    q = (n * pitch + oh * Wg + ow).reshape(N, Ho * Wo)
    windows = xs[offs[:R, None, None] + q[None]]                     # (R, N, Ho*Wo)
    if packed:       # no gaps: the lane masks drop the reads outside the image
        lane_mask = masks[(q % pitch) // vl][:, :, np.arange(R) % (kh * kw)]   # (N, HoWo, R)
        keep = (lane_mask.transpose(2, 0, 1) >> (q[None] % vl)) & 1
        windows = np.where(keep == 1, windows, 0)
    np.testing.assert_array_equal(windows.transpose(1, 0, 2), cols)
    # every tap of every position (junk ones too) is inside the strip: no read out of bounds
    assert offs[:R].min() >= 0 and offs[:R].max() + P <= xs.size
    return xs


@pytest.mark.parametrize("xs,ws,s,p,d,bias", CASES)
def test_strip_windows_are_the_im2col_rows(xs, ws, s, p, d, bias, rng):
    x = rng.standard_normal(xs).astype(np.float32)
    _check_strip(x, *ws[2:], s, p, d)


@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 4), pw=st.integers(0, 4), dh=st.integers(1, 3), dw=st.integers(1, 3),
       span=st.sampled_from([1, 16, 48]), seed=st.integers(0, 2**16))
@settings(max_examples=150, deadline=None)
def test_strip_windows_property(N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, span, seed):
    # any geometry, including padding wider than the kernel (its input gradient crops) and
    # strides larger than the kernel
    if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
        return
    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    _check_strip(x, kh, kw, (sh, sw), (ph, pw), (dh, dw), span)


@pytest.mark.parametrize("ph,pw", [(-1, 0), (0, -2), (-2, -1)])
def test_strip_with_negative_padding_is_a_crop(ph, pw, rng):
    # the input gradient of a convolution whose padding exceeds the kernel's reach runs as a
    # stride-1 convolution with negative padding: the output is the valid convolution of the
    # cropped input
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    Ho, Wo = 9 + 2 * ph - 2, 8 + 2 * pw - 2
    y = np.full((2, 5, Ho, Wo), np.nan, np.float32)
    need = strip_forward(x, w.reshape(5, -1), 3, 3, 1, 1, ph, pw, 1, 1, 1,
                         np.zeros(5, np.float32), np.empty(0, np.float32), y,
                         (np.empty(0, np.float32),) * 4, 0.0, -np.inf, np.inf,
                         np.empty((0, 0, 0, 0), np.float32))
    assert need > 0
    cropped = x[:, :, -ph:9 + ph, -pw:8 + pw]
    np.testing.assert_allclose(y, ref.conv2d_forward(cropped, w, None, (1, 1), (0, 0),
                                                     (1, 1))[0], rtol=1e-5, atol=1e-5)


def test_phases_to_image(rng):
    # phase (a, b) of the padded gradient at (u, v) lands on pixel (u*sh + a - ph, v*sw + b - pw)
    N, C, H, W, sh, sw, ph, pw = 2, 3, 7, 6, 2, 3, 1, 2
    Hq, Wq = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
    phase_index = np.array([[0, -1, 1], [2, 3, -1]], np.int64)          # two phases unused
    dphase = rng.standard_normal((4, N, C, Hq, Wq)).astype(np.float32)
    dx = np.full((N, C, H, W), np.nan, np.float32)
    # the planes in two calls (as two bands on two threads): each writes only its own planes
    fast.phases_to_image(dphase, phase_index, sh, sw, ph, pw, dx, 0, 4)
    assert np.isnan(dx.reshape(N * C, H, W)[4:]).all()
    fast.phases_to_image(dphase, phase_index, sh, sw, ph, pw, dx, 4, N * C)
    full = np.zeros((N, C, Hq * sh, Wq * sw), np.float32)                # the padded gradient
    for a in range(sh):
        for b in range(sw):
            if phase_index[a, b] >= 0:
                full[:, :, a::sh, b::sw] = dphase[phase_index[a, b]]
    np.testing.assert_array_equal(dx, full[:, :, ph:ph + H, pw:pw + W])


@pytest.mark.parametrize("stride", [1, 2])
def test_work_splits_do_not_change_the_result(stride, rng, monkeypatch):
    # channel groups in the forward (and in dx), position blocks of one vector in the weight
    # gradient, odd lane counts: the same numbers as the default split
    import cvcore.nn.conv as conv_module
    x, w, b = random_case(rng, (3, 5, 10, 9), (19, 5, 3, 3), True)
    y, cache = conv2d_forward(x, w, b, stride, 1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dy, cache)
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", 1)
    monkeypatch.setattr(conv_module, "_channel_groups", lambda N, Ho, Wo, K, lanes: 3)
    monkeypatch.setattr(conv_module, "_lanes", lambda: 3)
    y1, cache1 = conv2d_forward(x, w, b, stride, 1)
    dx1, dw1, db1 = conv2d_backward(dy, cache1)
    np.testing.assert_allclose(y1, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx1, dx, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dw1, dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(db1, db)


def test_channel_groups_and_blocks():
    from kernels import simd

    from cvcore.nn.conv import _channel_groups, _weight_grad_block
    # many tiles: one group; one 7x7 image, 512 channels: groups for every lane
    assert _channel_groups(128, 32, 32, 16, 2) == 1
    assert _channel_groups(1, 7, 7, 512, 2) > 1
    assert _channel_groups(1, 7, 7, 8, 2) == 1                  # never more than channel blocks
    vl = simd.VECTOR_BYTES // 4
    block = _weight_grad_block(128 * 33 * 33 // vl * vl, 32, 4, 2)
    assert block % vl == 0 and block >= vl
    assert _weight_grad_block(vl, 10**6, 4, 2) == vl            # never below one vector
    # as many blocks for each lane: ResNet-20's 8x8 planes at batch 128, 9x9 grid positions
    P = 128 * 81
    for lanes in (1, 2, 3, 4):
        block = _weight_grad_block(P, 128, 4, lanes)
        assert block % vl == 0 and -(-P // block) % lanes == 0


# -- agreement with PyTorch --------------------------------------------------------------------

@pytest.mark.parametrize("xs,ws,s,p,d,bias", CASES)
def test_matches_torch_forward_and_gradients(xs, ws, s, p, d, bias, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = random_case(rng, xs, ws, bias)
    y, cache = conv2d_forward(x, w, b, s, p, d)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    yt = F.conv2d(xt, wt, bt, s, p, d)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    dx, dw, db = conv2d_backward(dy, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=RTOL, atol=ATOL)
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=RTOL, atol=ATOL)
    else:
        assert db is None


def test_layer_matches_torch_conv2d_module(rng):
    # same weights, same input: the layer's output and parameter gradients equal torch's
    torch = pytest.importorskip("torch")
    layer = Conv2d(3, 8, 3, stride=2, padding=1, rng=rng)
    tl = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    tl.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((4, 3, 11, 11)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.weight.grad, tl.weight.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(layer.bias.grad, tl.bias.grad.numpy(), rtol=RTOL, atol=ATOL)


@given(H=st.integers(1, 12), W=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 3))
@settings(max_examples=40, deadline=None)
def test_output_shape_matches_torch(H, W, k, s, p, d):
    torch = pytest.importorskip("torch")
    if min(H, W) + 2 * p < d * (k - 1) + 1:
        with pytest.raises(ValueError, match="smaller than the"):
            conv2d_forward(np.zeros((1, 1, H, W), np.float32), np.zeros((1, 1, k, k), np.float32),
                           None, s, p, d)
        return
    x = np.random.default_rng(H * 100 + W).standard_normal((1, 2, H, W)).astype(np.float32)
    w = np.random.default_rng(k).standard_normal((3, 2, k, k)).astype(np.float32)
    y, _ = conv2d_forward(x, w, None, s, p, d)
    yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), None, s, p, d)
    assert y.shape == tuple(yt.shape) == conv2d_output_shape(x.shape, w.shape, s, p, d)
    np.testing.assert_allclose(y, yt.numpy(), rtol=RTOL, atol=ATOL)


# -- properties --------------------------------------------------------------------------------

def _gradcheck(xs, ws, s, p, d, bias, seed):
    r = np.random.default_rng(seed)
    x, w, b = random_case(r, xs, ws, bias, np.float64)
    assert conv2d_forward(x, w, b, s, p, d)[0].dtype == np.float64
    result = gradcheck(lambda x, w, b: conv2d_forward(x, w, b, s, p, d), (x, w, b),
                       backward=conv2d_backward, seed=seed, atol=1e-7, rtol=1e-6)
    assert result.checked == x.size + w.size + (b.size if bias else 0)   # every entry


@pytest.mark.parametrize("xs,ws,s,p,d,bias", [
    ((2, 2, 5, 4), (3, 2, 3, 3), 1, 1, 1, True),
    ((1, 2, 6, 7), (2, 2, 3, 2), (2, 1), (1, 0), (1, 2), False),
    ((2, 3, 4, 4), (2, 3, 1, 1), 1, 0, 1, True),
    ((1, 2, 5, 5), (3, 2, 3, 3), 1, 3, 1, True),              # padding beyond the kernel
    ((1, 2, 5, 5), (2, 2, 2, 2), 2, 1, 2, True),
])
def test_gradcheck_float64(xs, ws, s, p, d, bias):
    # The float64 path runs through the same Numba kernels and micro-kernels as float32, so
    # this checks the fast code's backward, not a twin.
    _gradcheck(xs, ws, s, p, d, bias, seed=sum(xs) + sum(ws))


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_layer_passes_cvcore_gradcheck(stride, padding, dilation, rng):
    # the project's float64 central-difference check, on the layer (x, weight, bias) and on
    # the functional pair
    layer = Conv2d(2, 3, 3, stride=stride, padding=padding, dilation=dilation, rng=rng)
    x = rng.standard_normal((2, 2, 6, 5))
    assert gradcheck(layer, x, atol=1e-6, rtol=1e-4).ok
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    result = gradcheck(lambda x, w, b: conv2d_forward(x, w, b, stride, padding, dilation),
                       (x, w, b), backward=conv2d_backward, atol=1e-6, rtol=1e-4)
    assert result.ok


def test_forward_is_deterministic_and_leaves_inputs_alone(rng):
    x, w, b = random_case(rng, (3, 4, 9, 9), (5, 4, 3, 3), True)
    x0, w0, b0 = x.copy(), w.copy(), b.copy()
    y1, c1 = conv2d_forward(x, w, b, 2, 1)
    y2, _ = conv2d_forward(x, w, b, 2, 1)
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(np.float32)
    dy0 = dy.copy()
    conv2d_backward(dy, c1)
    for a, a0 in ((x, x0), (w, w0), (b, b0), (dy, dy0)):
        np.testing.assert_array_equal(a, a0)


def test_integer_input_is_converted_to_float32():
    x = np.arange(2 * 9, dtype=np.int64).reshape(1, 2, 3, 3)
    w = np.ones((1, 2, 3, 3), np.float32)
    y, cache = conv2d_forward(x, w, None)
    assert y.dtype == np.float32 and cache.x.dtype == np.float32
    assert y.item() == float(np.arange(18).sum())


def test_non_contiguous_input(rng):
    x, w, b = random_case(rng, (2, 3, 8, 10), (4, 3, 3, 3), True)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)   # F-order planes
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(conv2d_forward(xt, w, b, 1, 1)[0], conv2d_forward(x, w, b, 1, 1)[0])


# -- the layer ---------------------------------------------------------------------------------

def test_layer_parameters_and_default_init():
    layer = Conv2d(16, 32, 3, padding=1, rng=0)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias"]
    assert layer.weight.shape == (32, 16, 3, 3) and layer.bias.shape == (32,)
    assert layer.weight.data.dtype == np.float32
    bound = 1 / math.sqrt(16 * 9)       # kaiming_uniform(a=sqrt(5)) -> 1/sqrt(fan_in)
    w = layer.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    # uniform on [-bound, bound]: variance bound^2 / 3 (4608 draws: within 5 %)
    assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.05
    assert np.abs(layer.bias.data).max() <= bound
    # seeded: the same rng seed gives the same weights, a different one different weights
    np.testing.assert_array_equal(Conv2d(16, 32, 3, rng=0).weight.data, w)
    assert not np.array_equal(Conv2d(16, 32, 3, rng=1).weight.data, w)


def test_layer_without_bias_and_state_dict():
    layer = Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(1, 2), dilation=2, bias=False, rng=0)
    assert layer.bias is None
    assert list(layer.state_dict()) == ["weight"]
    assert layer.kernel_size == (3, 5) and layer.dilation == (2, 2)
    assert "bias=False" in repr(layer)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 12)).astype(np.float32)
    y = layer(x)
    layer.backward(np.ones_like(y))
    assert layer.weight.grad.shape == layer.weight.shape


def test_layer_backward_fills_grads_and_respects_freezing(rng):
    layer = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    _, cache = conv2d_forward(x, layer.weight.data, layer.bias.data, 1, 1)
    dx_ref, dw_ref, db_ref = conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(layer.weight.grad, dw_ref)
    np.testing.assert_array_equal(layer.bias.grad, db_ref)
    # frozen weight: no gradient for it, the bias still learns, dx unchanged
    layer.weight.requires_grad = False
    layer(x)
    dx2 = layer.backward(dy)
    assert layer.weight.grad is None
    np.testing.assert_array_equal(layer.bias.grad, db_ref)
    np.testing.assert_array_equal(dx2, dx_ref)
    layer.requires_grad_(False)
    layer(x)
    dx3 = layer.backward(dy)
    assert layer.weight.grad is None and layer.bias.grad is None
    np.testing.assert_array_equal(dx3, dx_ref)


def test_eval_mode_backward_and_no_grad_keeps_no_cache():
    from cvcore.nn import no_grad
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    layer = Conv2d(1, 1, 3, rng=0)
    y = layer(x)
    dx_train = layer.backward(np.ones_like(y))
    layer.eval()                                   # a convolution is the same in both modes
    np.testing.assert_array_equal(layer(x), y)
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), dx_train)
    layer(x)
    with no_grad():                                # inference: nothing kept, older cache dropped
        layer(x)
    assert layer._cache is None
    with pytest.raises(RuntimeError, match="without a forward pass outside cvcore.nn.no_grad"):
        layer.backward(np.ones_like(y))


def test_layer_in_float64_for_gradient_checks(rng):
    # a gradient check may replace the parameters by float64 arrays; the layer then computes
    # in float64 throughout
    layer = Conv2d(2, 2, 3, padding=1, rng=rng)
    layer.weight.data = layer.weight.data.astype(np.float64)
    layer.bias.data = layer.bias.data.astype(np.float64)
    x = rng.standard_normal((1, 2, 4, 4))
    y = layer(x)
    assert y.dtype == np.float64
    assert layer.backward(np.ones_like(y)).dtype == np.float64


# -- errors ------------------------------------------------------------------------------------

def test_error_wrong_channel_count_names_the_layer():
    layer = Conv2d(3, 16, 3, rng=0)
    with pytest.raises(ValueError, match=r"Conv2d\(3->16\): expected 3 input channels, got 1"):
        layer(np.zeros((2, 1, 8, 8), np.float32))


def test_error_input_smaller_than_kernel():
    layer = Conv2d(1, 1, 5, padding=1, rng=0)
    with pytest.raises(ValueError, match=r"Conv2d\(1->1\): input height 2 with padding 1 is 4, "
                                         r"smaller than the \(dilated\) kernel 5"):
        layer(np.zeros((1, 1, 2, 9), np.float32))
    with pytest.raises(ValueError, match="width"):
        Conv2d(1, 1, 3, dilation=3, rng=0)(np.zeros((1, 1, 9, 6), np.float32))


@pytest.mark.parametrize("bad,word", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_error_nan_or_inf_in_input(bad, word):
    x = np.zeros((1, 2, 5, 5), np.float32)
    x[0, 1, 3, 2] = bad
    with pytest.raises(ValueError, match=rf"Conv2d\(2->4\) input contains {word}"):
        Conv2d(2, 4, 3, rng=0)(x)


def test_large_finite_input_is_not_reported_as_infinite():
    # values whose sum overflows float32 are still finite: the check must be element-wise
    x = np.full((1, 1, 4, 4), 3e38, np.float32)
    y, _ = conv2d_forward(x, np.full((1, 1, 1, 1), 1e-3, np.float32), None)
    assert np.isfinite(y).all()


def test_error_wrong_dimensions_and_dtypes():
    layer = Conv2d(1, 1, 3, rng=0)
    with pytest.raises(ValueError, match=r"Conv2d\(1->1\) input must have 4 dimensions"):
        layer(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(TypeError, match="numeric"):
        layer(np.array([["a"]]))
    with pytest.raises(ValueError, match="bias has 3 values for 2 output channels"):
        conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((2, 1, 1, 1)), np.zeros(3))


def test_error_bad_geometry_arguments():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        Conv2d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        Conv2d(1, 1, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size"):
        Conv2d(1, 1, 2.5)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        Conv2d(0, 1, 3)


def test_error_backward_with_wrong_dy_shape():
    y, cache = conv2d_forward(np.zeros((1, 1, 4, 4), np.float32), np.zeros((2, 1, 3, 3),
                                                                          np.float32), None)
    assert isinstance(cache, Conv2dCache)
    with pytest.raises(ValueError, match=r"dy has shape \(1, 2, 3, 3\).*\(1, 2, 2, 2\)"):
        conv2d_backward(np.zeros((1, 2, 3, 3), np.float32), cache)


@pytest.mark.parametrize("xs,ws,s,p,d,bias", CASES[:8] + CASES[-3:])
def test_reused_workspace_is_fully_rewritten(xs, ws, s, p, d, bias, rng):
    # the kernels take their strips from a per-thread workspace kept between calls: whatever a
    # previous call left in it (here: NaN everywhere) must not reach the results
    import cvcore.nn.conv as conv_module
    x, w, b = random_case(rng, xs, ws, bias)
    conv_module.release_workspace()
    y0, cache = conv2d_forward(x, w, b, s, p, d)            # no workspace yet: own allocations
    dy = rng.standard_normal(y0.shape).astype(np.float32)
    dx0, dw0, _ = conv2d_backward(dy, cache)
    space = conv_module._workspace(np.float32)
    assert space._wanted > 0
    conv2d_backward(dy, cache)                              # the backward's strips: the dy
    conv2d_forward(x, w, b, s, p, d)                        # strip, then x's; grows the buffer
    space.array[:] = np.nan                                 # ... which then holds garbage
    y1, cache1 = conv2d_forward(x, w, b, s, p, d)
    space.array[:] = np.nan
    dx1, dw1, _ = conv2d_backward(dy, cache1)
    assert space.array.size >= space._wanted
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    np.testing.assert_array_equal(dw1, dw0)
    conv_module.release_workspace()
    assert conv_module._workspace(np.float32).array.size == 0


@pytest.mark.parametrize("stride, relu, residual", [(1, True, True), (2, False, False),
                                                    (1, False, True), (2, True, False)])
def test_fused_batchnorm_residual_clamp_epilogue(stride, relu, residual, rng):
    # the inference epilogue (cvcore/nn/inference.py): against its readable twin, and bit-equal
    # to the separate passes of the layers (batch norm, then add, then ReLU)
    from cvcore.nn.layers import batchnorm2d_eval_forward
    x = rng.standard_normal((3, 5, 9, 8)).astype(np.float32)
    w = rng.standard_normal((11, 5, 3, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 11).astype(np.float32), rng.normal(0, 1, 11).astype(np.float32)
    mean, var = rng.normal(0, 1, 11).astype(np.float32), rng.uniform(0.1, 2, 11).astype(np.float32)
    conv, _ = conv2d_forward(x, w, None, stride, 1)
    res = rng.standard_normal(conv.shape).astype(np.float32) if residual else None
    clamp = (0.0, np.inf) if relu else (-np.inf, np.inf)
    y = np.full(conv.shape, np.nan, np.float32)
    need = strip_forward(x, w.reshape(11, -1), 3, 3, stride, stride, 1, 1, 1, 1, 1,
                         np.zeros(11, np.float32), np.empty(0, np.float32), y,
                         (gamma, beta, mean, var), 1e-5, *clamp,
                         np.empty((0, 0, 0, 0), np.float32) if res is None else res)
    assert need > 0
    np.testing.assert_allclose(y, ref.conv2d_bn_forward(x, w, gamma, beta, mean, var, 1e-5,
                                                        (stride,) * 2, (1, 1), (1, 1), res,
                                                        clamp), rtol=1e-5, atol=1e-5)
    separate, _ = batchnorm2d_eval_forward(conv, gamma, beta, mean, var, 1e-5)
    if residual:
        separate = separate + res
    if relu:
        separate = np.where(separate > 0, separate, np.float32(0))
    np.testing.assert_array_equal(y, separate)
    if residual:                                # the residual may be the output itself
        out = res.copy()
        strip_forward(x, w.reshape(11, -1), 3, 3, stride, stride, 1, 1, 1, 1, 1,
                      np.zeros(11, np.float32), np.empty(0, np.float32), out,
                      (gamma, beta, mean, var), 1e-5, *clamp, out)
        np.testing.assert_array_equal(out, y)
    var[4] = -1.0                               # not a variance: refused, y untouched
    for lanes in (0, 2):                        # in bands; in OpenMP lanes
        y2 = np.full(conv.shape, 7.0, np.float32)
        assert strip_forward(x, w.reshape(11, -1), 3, 3, stride, stride, 1, 1, 1, 1, 1,
                             np.zeros(11, np.float32), np.empty(0, np.float32), y2,
                             (gamma, beta, mean, var), 1e-5, *clamp,
                             np.empty((0, 0, 0, 0), np.float32), lanes=lanes) == -1
        assert (y2 == 7.0).all()


def test_narrow_tile_kernel_is_bit_equal_and_chosen_for_small_planes(rng):
    # ResNet-50's 7x7 planes at batch 1 run with 12 x 32 tiles (64 grid positions, not 96):
    # the same sums in the same order as the wide tile, so the same bits
    from cvcore.nn.conv import narrow_tile
    assert narrow_tile(1, 7, 7, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1))
    assert narrow_tile(1, 7, 7, 7, 7, 1, 1, (1, 1), (0, 0), (1, 1))
    assert narrow_tile(1, 7, 7, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1), 512 * 9 * 512)
    # ResNet-20's 1x1/2 projection 32->64 at batch 1 (8x8 output, 64 positions): it would save
    # 32 positions x 2048 multiply-adds, not worth compiling the narrow kernel
    assert narrow_tile(1, 16, 16, 8, 8, 1, 1, (2, 2), (0, 0), (1, 1))
    assert not narrow_tile(1, 16, 16, 8, 8, 1, 1, (2, 2), (0, 0), (1, 1), 32 * 64)
    for N, H in ((1, 32), (1, 16), (1, 14), (8, 7), (128, 8)):
        assert not narrow_tile(N, H, H, H, H, 3, 3, (1, 1), (1, 1), (1, 1))
    # one packed 8x8 plane is 64 positions (96 wide, 64 narrow), but ResNet-20's 3x3 64->64
    # convolutions there would save 32 x 36864 multiply-adds: ResNet-20 never takes it
    assert narrow_tile(1, 8, 8, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1))
    for N, H, C in ((1, 32, 16), (1, 16, 32), (1, 8, 64), (128, 8, 64)):
        assert not narrow_tile(N, H, H, H, H, 3, 3, (1, 1), (1, 1), (1, 1), C * 9 * C)
    x = rng.standard_normal((1, 19, 7, 7)).astype(np.float32)
    w = rng.standard_normal((29, 19, 3, 3)).astype(np.float32)
    res = rng.standard_normal((1, 29, 7, 7)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 29).astype(np.float32), rng.normal(0, 1, 29).astype(np.float32)
    mean, var = rng.normal(0, 1, 29).astype(np.float32), rng.uniform(0.1, 2, 29).astype(np.float32)
    outs = []
    for narrow in (False, True):
        for kgroups, lanes in ((1, 0), (2, 0), (1, 2), (3, 3)):     # in bands; in OpenMP lanes
            y = np.full((1, 29, 7, 7), np.nan, np.float32)
            assert strip_forward(x, w.reshape(29, -1), 3, 3, 1, 1, 1, 1, 1, 1, kgroups,
                                 np.zeros(29, np.float32), np.empty(0, np.float32), y,
                                 (gamma, beta, mean, var), 1e-5, 0.0, np.inf, res,
                                 narrow=narrow, lanes=lanes) > 0
            outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])
    np.testing.assert_allclose(outs[0], ref.conv2d_bn_forward(x, w, gamma, beta, mean, var, 1e-5,
                                                              (1, 1), (1, 1), (1, 1), res,
                                                              (0.0, np.inf)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("N_blocks, C, K, H, W, k, s, p, d, pm", [
    ((1, 3), 3, 10, 7, 9, 3, 1, 1, 1, 1),      # a full block and a partial one
    ((0, 5), 5, 9, 9, 8, 3, 2, 1, 1, 1),       # stride 2, a partial block alone
    ((2, 0), 4, 7, 6, 6, 1, 2, 0, 1, 1),       # a 1x1/2 projection, two full blocks
    ((1, 1), 3, 5, 9, 9, 3, 1, 2, 2, 2),       # dilation 2, a border of 2
])
def test_pixel_major_forward_is_bit_equal_to_the_strip(N_blocks, C, K, H, W, k, s, p, d, pm,
                                                       half, rng):
    # conv2d_forward_pm on activations stored pixel-major in blocks of simd.TBP images (the
    # inference plan's large batches), or of simd.TBH (batches of about 16, half = True, the
    # half tile): the same sums in the same order as conv2d_forward, the
    # output's stored border zero, the residual may be the output itself, any split of the
    # tiles gives the same result, and statistics that are not a variance are refused
    from cvcore.nn.inference import (_from_pixel_major, _pixel_major_tiles, _stored_size,
                                     _to_pixel_major)
    from kernels import simd
    tb = simd.TBH if half else simd.TBP
    N = N_blocks[0] * tb + N_blocks[1]
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C, k, k)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, K).astype(np.float32), rng.normal(0, 1, K).astype(np.float32)
    mean, var = rng.normal(0, 1, K).astype(np.float32), rng.uniform(0.1, 2, K).astype(np.float32)
    Ho, Wo = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
    res = rng.standard_normal((N, K, Ho, Wo)).astype(np.float32)

    def pixel_major(shape, a=None):
        n, c, h, w_ = shape
        buf = np.full(_stored_size(shape, pm), np.nan, np.float32)
        view = buf[:c * (h + 2 * pm) * (w_ + 2 * pm) * n].reshape(h + 2 * pm, w_ + 2 * pm, c, n)
        if a is not None:
            _to_pixel_major(a, view, pm, tb)
        return view

    xv = pixel_major(x.shape, x)
    tiles = _pixel_major_tiles(N, Ho, Wo, tb)
    status = np.zeros(1, np.int64)
    for relu, residual in ((False, False), (True, False), (True, True)):
        clamp = (0.0, np.inf) if relu else (-np.inf, np.inf)
        expected = np.empty((N, K, Ho, Wo), np.float32)
        strip_forward(x, w.reshape(K, -1), k, k, s, s, p, p, d, d, 1,
                      np.zeros(K, np.float32), np.empty(0, np.float32), expected,
                      (gamma, beta, mean, var), 1e-5, *clamp,
                      res if residual else np.empty((0, 0, 0, 0), np.float32))
        yv = pixel_major((N, K, Ho, Wo), res if residual else None)
        for i0, i1 in ((0, tiles // 3), (tiles // 3, tiles)):     # two bands
            fast.conv2d_forward_pm(xv, w.reshape(K, -1), k, k, s, s, p, p, d, d,
                                   np.zeros(K, np.float32), yv, (gamma, beta, mean, var), 1e-5,
                                   *clamp, yv if residual else np.empty((0, 0, 0, 0), np.float32),
                                   pm, tb, status, i0, i1)
        assert status[0] == 0
        y = np.empty_like(expected)
        _from_pixel_major(yv, pm, y, tb)
        np.testing.assert_array_equal(y.view(np.uint32), expected.view(np.uint32))   # bits
        flat = yv.reshape(-1)                  # the stored border: zeros, every block
        for n0 in range(0, N, tb):
            nb = min(tb, N - n0)
            size = K * (Ho + 2 * pm) * (Wo + 2 * pm)
            block = flat[n0 * size:(n0 + nb) * size].reshape(Ho + 2 * pm, Wo + 2 * pm, K, nb)
            inner = np.zeros(block.shape, bool)
            inner[pm:pm + Ho, pm:pm + Wo] = True
            assert (block[~inner] == 0).all()
    var[2] = -1.0                              # not a variance: refused, y untouched
    yv = pixel_major((N, K, Ho, Wo))
    fast.conv2d_forward_pm(xv, w.reshape(K, -1), k, k, s, s, p, p, d, d, np.zeros(K, np.float32),
                           yv, (gamma, beta, mean, var), 1e-5, 0.0, np.inf,
                           np.empty((0, 0, 0, 0), np.float32), pm, tb, status, 0, tiles)
    assert status[0] == -1 and np.isnan(yv).all()


@pytest.mark.parametrize("stride,H,W", [(1, 11, 10), (2, 11, 10), (1, 12, 8)])   # last: packed
def test_strip_kernels_split_in_bands_give_the_same_bits(stride, H, W, rng):
    # the strip fills and the forward are one-thread kernels over a range (planes, work items)
    # that cvcore.nn.conv runs in bands on several threads: each band writes only its own part,
    # so any split equals one call over the whole range, bit for bit
    from cvcore.nn.conv import _kernels
    from kernels import simd
    nk = _kernels()
    x = rng.standard_normal((3, 5, H, W)).astype(np.float32)
    w = rng.standard_normal((13, 5, 3, 3)).astype(np.float32)
    N, C, H, W = x.shape
    Ho, Wo = _out_size(H, 3, stride, 1, 1), _out_size(W, 3, stride, 1, 1)
    geometry = (3, 3, stride, stride, 1, 1, 1, 1)
    Wg, pitch, m0, P, Ls, length, offs, used, masks = nk.strip_layout(
        N, C, H, W, Ho, Wo, *geometry, simd.TB, C * 9, simd.vector_lanes(np.float32))
    assert (pitch == H * W) == (masks.size > 0) == (W == 8)
    xs, offs1, masks1, *_ = make_strip(x, Ho, Wo, geometry, simd.TB, C * 9,
                                       np.empty(0, np.float32))
    np.testing.assert_array_equal(offs1, offs)
    np.testing.assert_array_equal(masks1, masks)
    parts = np.full(length, np.nan, np.float32)
    for p0, p1 in ((0, 4), (4, 9), (9, N * C)):
        if used is None:
            nk.fill_strip(x, Wg, pitch, m0, Ls, parts, p0, p1)
        else:
            nk.fill_phase_strip(x, stride, stride, 1, 1, Wg, pitch, Ls, used, parts, p0, p1)
    # unused phases are never read (left unwritten); every other element is written
    np.testing.assert_array_equal(parts[~np.isnan(parts)], xs[~np.isnan(parts)])
    assert np.isnan(parts).sum() == (0 if used is None else (~used).sum() * C * Ls)
    empty = np.empty(0, np.float32)
    items = P // simd.TB * 2                             # two groups of output channels
    whole = np.full((N, 13, Ho, Wo), np.nan, np.float32)
    split = whole.copy()
    status = np.zeros(1, np.int64)
    args = (xs, offs, masks, Wg, pitch, w.reshape(13, -1), 2, np.zeros(13, np.float32))
    tail = ((empty,) * 4, 0.0, 0.0, np.inf, np.empty((0, 0, 0, 0), np.float32), status)
    nk.conv2d_forward(*args, whole, *tail, 0, items)
    for i0, i1 in ((0, 3), (3, items // 2), (items // 2, items)):
        nk.conv2d_forward(*args, split, *tail, i0, i1)
    assert status[0] == 0
    np.testing.assert_array_equal(split.view(np.uint32), whole.view(np.uint32))
    np.testing.assert_allclose(whole, np.maximum(ref.conv2d_forward(x, w, None, (stride,) * 2,
                                                                    (1, 1), (1, 1))[0], 0),
                               rtol=1e-5, atol=1e-5)
