"""Grouped and depthwise convolution, TensorFlow 'SAME' padding and ReLU6: kernels.nn_dwconv
against the readable twin (kernels.reference.nn_dwconv), float64 gradient checks, PyTorch's
conv2d with groups (forward and every gradient), hand-worked cases and errors."""
import numpy as np
import pytest

from cvcore import nn
from cvcore.nn.conv import Conv2d
from cvcore.nn.dwconv import (ReLU6, depthwise_conv2d_affine, grouped_conv2d_backward,
                              grouped_conv2d_forward, relu6_backward, relu6_forward, same_padding)
from cvcore.nn.efficientnet import Conv2dSame
from cvcore.nn.layers import BatchNorm2d
from cvcore.nn.gradcheck import gradcheck
from kernels.reference import nn_dwconv as ref

GC = dict(atol=1e-6, rtol=1e-4, max_entries=24)     # a random 24 entries of each array
RTOL, ATOL = 1e-4, 1e-5

# (x shape, K, kernel, stride, (top, bottom, left, right), dilation, groups, bias)
CASES = [
    ((2, 3, 7, 9), 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3, True),      # depthwise
    ((2, 4, 8, 8), 4, (3, 3), (2, 2), (0, 1, 0, 1), (1, 1), 4, False),     # TF SAME, stride 2
    ((1, 3, 9, 7), 6, (5, 5), (2, 2), (1, 2, 1, 2), (1, 1), 3, True),      # multiplier 2
    ((2, 2, 6, 7), 2, (3, 2), (1, 2), (2, 0, 0, 3), (2, 1), 2, True),      # odd geometry
    ((2, 4, 6, 6), 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, True),      # 2 dense groups
    ((1, 6, 5, 8), 3, (3, 3), (2, 1), (0, 1, 1, 1), (1, 1), 3, False),     # groups, asymmetric
    ((1, 5, 4, 4), 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 5, True),      # 1x1 depthwise
    ((2, 2, 11, 10), 2, (3, 3), (3, 3), (1, 2, 2, 1), (2, 2), 2, True),    # stride 3, dilated
    ((1, 3, 9, 10), 3, (5, 5), (2, 2), (0, 0, 0, 0), (1, 1), 3, False),    # unread last rows
]


def _case(rng, xs, K, k, groups, bias, dtype=np.float32):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((K, xs[1] // groups) + k).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("xs, K, k, s, p, d, g, bias", CASES)
def test_fast_matches_reference(xs, K, k, s, p, d, g, bias, rng):
    x, w, b = _case(rng, xs, K, k, g, bias, np.float64)
    y, cache = grouped_conv2d_forward(x, w, b, s, p, d, g)
    np.testing.assert_allclose(y, ref.grouped_conv2d_forward(x, w, b, s, p, d, g), rtol=1e-12,
                               atol=1e-12)
    if g == xs[1]:
        np.testing.assert_allclose(
            y, ref.depthwise_conv2d_forward(x, w, b, s, (p[0], p[2]), d, y.shape[2:]),
            rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = grouped_conv2d_backward(dy, cache)
    rdx, rdw, rdb = ref.grouped_conv2d_backward(dy, x, w, s, p, d, g)
    np.testing.assert_allclose(dx, rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, rdw, rtol=1e-10, atol=1e-10)
    if bias:
        np.testing.assert_allclose(db, rdb, rtol=1e-10, atol=1e-10)
    else:
        assert db is None


@pytest.mark.parametrize("xs, K, k, s, p, d, g, bias", CASES)
def test_gradcheck_float64(xs, K, k, s, p, d, g, bias, rng):
    x, w, b = _case(rng, xs, K, k, g, bias, np.float64)
    if b is None:
        gradcheck(lambda x, w: grouped_conv2d_forward(x, w, None, s, p, d, g), (x, w),
                  lambda dy, c: grouped_conv2d_backward(dy, c)[:2], **GC)
    else:
        gradcheck(lambda x, w, b: grouped_conv2d_forward(x, w, b, s, p, d, g), (x, w, b),
                  grouped_conv2d_backward, **GC)


@pytest.mark.parametrize("xs, K, k, s, p, d, g, bias",
                         [c for c in CASES if c[6] == c[0][1]])         # the depthwise ones
def test_phase_layout_twin_and_fused_epilogue(xs, K, k, s, p, d, g, bias, rng):
    """The NumPy twin of the kernels' phase planes and flat windows gives the plain tap loop's
    result; the kernel's epilogue (affine map and clamp) matches the twin's."""
    x, w, b = _case(rng, xs, K, k, g, bias, np.float64)
    plain = ref.depthwise_conv2d_forward(x, w, b, s, (p[0], p[2]), d,
                                         grouped_conv2d_forward(x, w, b, s, p, d, g)[0].shape[2:])
    ones, shift = np.ones(K), (np.zeros(K) if b is None else b)
    np.testing.assert_allclose(
        ref.depthwise_conv2d_phases(x, w, ones, shift, (-np.inf, np.inf), s, (p[0], p[2]), d,
                                    plain.shape[2:]), plain, rtol=1e-12, atol=1e-12)
    scale, shift = rng.uniform(0.5, 2.0, K), rng.standard_normal(K)
    y = depthwise_conv2d_affine(x, w, scale, shift, s, p, d, clamp=(-0.5, 1.0))
    np.testing.assert_allclose(
        y, ref.depthwise_conv2d_phases(x, w, scale, shift, (-0.5, 1.0), s, (p[0], p[2]), d,
                                       plain.shape[2:]), rtol=1e-12, atol=1e-12)
    assert y.min() >= -0.5 and y.max() <= 1.0


def test_toy_fused_epilogue():
    # 1x1 weight 1 on [[-1, 0.5], [2, 4]]: y = clip(x * 2 - 1, 0, 3) = [[0, 0], [3, 3]]
    x = np.array([[-1.0, 0.5], [2.0, 4.0]], np.float32)[None, None]
    y = depthwise_conv2d_affine(x, np.ones((1, 1, 1, 1), np.float32), [2.0], [-1.0],
                                clamp=(0.0, 3.0))
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [3, 3]])


def test_fused_batch_norm_relu6_equals_the_separate_passes(rng):
    """Inference folds the eval-mode batch norm and ReLU6 into the depthwise kernel: the same
    float32 values as the convolution, the batch norm and ReLU6 run one after the other (the
    affine map is computed the same way, once per output value)."""
    conv = Conv2dSame(6, 6, 5, stride=2, groups=6, bias=False, rng=0)
    bn = BatchNorm2d(6, eps=1e-3).eval()
    bn.running_mean[:] = rng.normal(0, 0.5, 6)
    bn.running_var[:] = rng.uniform(0.5, 2.0, 6)
    bn.weight.data[:] = rng.uniform(0.5, 3.0, 6)
    bn.bias.data[:] = rng.normal(0, 2, 6)
    x = rng.standard_normal((2, 6, 15, 14)).astype(np.float32) * 3
    separate = bn.forward_relu6(conv(x))
    fused = conv.forward_bn_clamp(x, bn, (0.0, 6.0))
    np.testing.assert_array_equal(fused, separate)
    assert (fused == 6).any() and (fused == 0).any()          # both clamps were exercised
    # dense layers through the dense kernel's epilogue: a strided 3x3 with TF's asymmetric
    # padding (the stem; bitwise as above), and the batch norm alone (no clamp); with a bias
    # the fused shift is beta - mean*scale + bias*scale, one rounding apart
    stem = Conv2dSame(6, 6, 3, stride=2, bias=False, rng=1)
    np.testing.assert_array_equal(stem.forward_bn_clamp(x, bn, (0.0, 6.0)),
                                  bn.forward_relu6(stem(x)))
    np.testing.assert_array_equal(stem.forward_bn_clamp(x, bn), bn(stem(x)))
    biased = Conv2dSame(6, 6, 1, bias=True, rng=2)
    np.testing.assert_allclose(biased.forward_bn_clamp(x, bn, (0.0, 6.0)),
                               bn.forward_relu6(biased(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="groups=2"):
        Conv2dSame(6, 6, 3, groups=2, bias=False).forward_bn_clamp(x, bn)


def test_fused_epilogue_refuses_bad_arguments():
    x, w = np.zeros((1, 2, 5, 5), np.float32), np.zeros((2, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="depthwise weight"):
        depthwise_conv2d_affine(x, np.zeros((2, 2, 3, 3)), np.ones(2), np.zeros(2))
    with pytest.raises(ValueError, match="scale has shape"):
        depthwise_conv2d_affine(x, w, np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="shift"):
        depthwise_conv2d_affine(x, w, np.ones(2), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="clamp"):
        depthwise_conv2d_affine(x, w, np.ones(2), np.zeros(2), clamp=(6.0, 0.0))
    with pytest.raises(ValueError, match="smaller than the"):
        depthwise_conv2d_affine(x[:, :, :1, :1], w, np.ones(2), np.zeros(2))


def test_toy_depthwise_is_per_channel():
    # channel 0 filtered by a 1x1 weight 2, channel 1 by 3: no mixing between channels
    x = np.stack([np.ones((2, 2)), np.full((2, 2), 10.0)])[None].astype(np.float32)
    w = np.array([2.0, 3.0], np.float32).reshape(2, 1, 1, 1)
    y, _ = grouped_conv2d_forward(x, w, None, groups=2)
    np.testing.assert_array_equal(y[0, 0], 2.0)
    np.testing.assert_array_equal(y[0, 1], 30.0)


def test_toy_same_padding_puts_the_odd_row_at_the_bottom():
    # 4x4 image of ones, 3x3 kernel of ones, stride 2, SAME: pad (0, 1) -> output 2x2;
    # top-left window rows 0..2, cols 0..2 all inside = 9; bottom-right rows 2..4 (4 padding)
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    conv.weight.data[...] = 1
    y = conv(np.ones((1, 1, 4, 4), np.float32))
    np.testing.assert_array_equal(y[0, 0], [[9, 6], [6, 4]])
    assert same_padding(4, 3, 2) == (0, 1)


@pytest.mark.parametrize("size, k, s", [(224, 3, 2), (112, 5, 2), (56, 3, 1), (7, 5, 1),
                                        (15, 5, 2), (1, 3, 2)])
def test_same_padding_gives_ceil_size(size, k, s):
    before, after = same_padding(size, k, s)
    assert (size + before + after - k) // s + 1 == -(-size // s)
    assert 0 <= after - before <= 1


def test_relu6_forward_backward_and_gradcheck(rng):
    x = np.array([-1.0, 0.0, 0.5, 6.0, 7.0], np.float32)
    y, cache = relu6_forward(x)
    np.testing.assert_array_equal(y, [0, 0, 0.5, 6, 6])
    np.testing.assert_array_equal(relu6_backward(np.ones(5, np.float32), cache), [0, 0, 1, 0, 0])
    x = rng.uniform(-3, 9, (3, 4, 5, 5))
    x[np.abs(x) < 0.01] = 0.5
    x[np.abs(x - 6) < 0.01] = 5.5                 # no entry within the difference step of a kink
    gradcheck(ReLU6(), x, **GC)


def test_layer_gradcheck_depthwise_and_grouped(rng):
    gradcheck(Conv2d(4, 8, 3, stride=2, padding=1, groups=4, rng=0), rng.standard_normal(
        (2, 4, 7, 7)), **GC)
    gradcheck(Conv2d(4, 6, 3, padding=1, groups=2, rng=0), rng.standard_normal((2, 4, 5, 5)), **GC)
    gradcheck(Conv2dSame(3, 3, 5, stride=2, groups=3, bias=False, rng=0),
              rng.standard_normal((2, 3, 8, 9)), **GC)
    gradcheck(Conv2dSame(3, 4, 3, stride=2, rng=0), rng.standard_normal((2, 3, 8, 8)), **GC)


def test_layer_shapes_names_and_errors():
    conv = Conv2d(6, 12, 3, groups=3, bias=False, rng=0)
    assert conv.weight.shape == (12, 2, 3, 3)
    assert "groups=3" in repr(conv)
    with pytest.raises(ValueError, match="groups=4 must divide"):
        Conv2d(6, 12, 3, groups=4)
    with pytest.raises(ValueError, match="expected 6 input channels"):
        conv(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="must divide the output"):
        grouped_conv2d_forward(np.zeros((1, 4, 5, 5)), np.zeros((3, 1, 3, 3)), groups=4)
    with pytest.raises(ValueError, match="smaller than the"):
        grouped_conv2d_forward(np.zeros((1, 2, 2, 2)), np.zeros((2, 1, 5, 5)), groups=2)
    with pytest.raises(ValueError, match="NaN"):
        conv(np.full((1, 6, 5, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="padding"):
        grouped_conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((2, 1, 3, 3)), padding=(1, -1, 0, 0),
                               groups=2)


@pytest.mark.parametrize("xs, K, k, s, p, d, g, bias", CASES)
def test_matches_torch_forward_and_gradients(xs, K, k, s, p, d, g, bias, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = _case(rng, xs, K, k, g, bias)
    y, cache = grouped_conv2d_forward(x, w, b, s, p, d, g)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = F.conv2d(F.pad(tx, [p[2], p[3], p[0], p[1]]), tw, tb, s, 0, d, g)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    dx, dw, db = grouped_conv2d_backward(dy, cache)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=RTOL, atol=ATOL)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_depthwise_large_plane_matches_torch(rng):
    """An EfficientNet-sized plane (many vector lengths per row) in float32."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 8, 57, 61)).astype(np.float32)
    w = rng.standard_normal((8, 1, 5, 5)).astype(np.float32)
    for stride in (1, 2):
        p = same_padding(57, 5, stride) + same_padding(61, 5, stride)
        y, _ = grouped_conv2d_forward(x, w, None, stride, p, 1, 8)
        ty = torch.nn.functional.conv2d(
            torch.nn.functional.pad(torch.tensor(x), [p[2], p[3], p[0], p[1]]),
            torch.tensor(w), None, stride, 0, 1, 8)
        np.testing.assert_allclose(y, ty.numpy(), rtol=RTOL, atol=ATOL)


def test_relu6_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.uniform(-3, 9, (2, 3, 4, 4)).astype(np.float32)
    layer = nn.ReLU6()
    y = layer(x)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.relu6(tx)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(layer.backward(dy), tx.grad.numpy())


def test_backward_refuses_a_foreign_cache_or_wrong_dy(rng):
    x, w, _ = _case(rng, (1, 4, 5, 5), 4, (3, 3), 4, False)
    y, cache = grouped_conv2d_forward(x, w, None, 1, 1, 1, 4)
    with pytest.raises(TypeError, match="GroupedConv2dCache"):
        grouped_conv2d_backward(y, tuple(cache))
    with pytest.raises(ValueError, match="shape"):
        grouped_conv2d_backward(y[:, :, :4], cache)
    with pytest.raises(ValueError, match="one forward pass"):
        grouped_conv2d_backward(y, cache._replace(groups=2))
    _, rcache = relu6_forward(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="shape"):
        relu6_backward(np.ones(5, np.float32), rcache)
