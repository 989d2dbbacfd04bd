"""Layers of cvcore.nn: kernels against their readable twins, hand-worked cases, gradient checks
in float64 on every layer, agreement with PyTorch (where installed), properties, and errors."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cvcore.nn import layers as L
from cvcore.nn.gradcheck import GradcheckError, gradcheck
from cvcore.nn.losses import CrossEntropyLoss, cross_entropy_backward, cross_entropy_forward
from kernels import nn_act, nn_norm
from kernels.reference import nn_act as ref_act, nn_norm as ref_norm, nn_pool as ref_pool

# gradient-check tolerances (float64 central differences, h = 1e-6: errors are ~1e-9 here)
GC = dict(atol=1e-6, rtol=1e-4)
# agreement with PyTorch in float32 (the tolerance)
RTOL, ATOL = 1e-4, 1e-5


def away_from_zero(rng, shape, gap=0.05):
    """Random values with |x| >= gap, so no central difference straddles a ReLU kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * gap, x)


# ------------------------------------------------------------------------------------------------
# kernels vs readable twins
# ------------------------------------------------------------------------------------------------
class TestKernelsMatchReference:
    def test_batchnorm_kernels(self, rng):
        x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32) * 2 + 1
        dy = rng.standard_normal(x.shape).astype(np.float32)
        gamma = rng.standard_normal(4).astype(np.float32)
        beta = rng.standard_normal(4).astype(np.float32)
        v = lambda a: a.reshape(3, 4, 30)
        mean, var = np.empty(4), np.empty(4)
        nn_norm.batchnorm_stats(v(x), mean, var, 0, 1)          # channels in two calls
        nn_norm.batchnorm_stats(v(x), mean, var, 1, 4)
        rmean, rvar = ref_norm.batchnorm_stats(x)
        np.testing.assert_allclose(mean, rmean, rtol=1e-12)
        np.testing.assert_allclose(var, rvar, rtol=1e-12)
        invstd = 1 / np.sqrt(var + 1e-5)
        scale = (gamma * invstd).astype(np.float32)
        shift = (beta - mean * gamma * invstd).astype(np.float32)
        y = np.empty_like(x)
        P = v(x).shape[0] * v(x).shape[1]              # (n, c) planes
        nn_norm.channel_affine(v(x), scale, shift, v(y), 0, P)
        np.testing.assert_allclose(y, ref_norm.channel_affine(x, scale, shift), rtol=1e-6,
                                   atol=1e-6)
        nn_norm.channel_affine_relu(v(x), scale, shift, v(y), 0, P)
        np.testing.assert_allclose(y, ref_norm.channel_affine_relu(x, scale, shift), rtol=1e-6,
                                   atol=1e-6)
        # any split of the planes between threads gives the same values, bit for bit
        parts = np.empty_like(x)
        for p0, p1 in ((0, P // 3), (P // 3, P - 1), (P - 1, P)):
            nn_norm.channel_affine_relu(v(x), scale, shift, v(parts), p0, p1)
        np.testing.assert_array_equal(parts, y)
        for train in (True, False):
            dx, dgamma, dbeta = np.empty_like(x), np.empty(4), np.empty(4)
            nn_norm.batchnorm_backward(v(dy), v(x), mean, invstd, gamma, train,
                                       np.empty((4, 3), np.float32), dgamma, dbeta, v(dx), 0, 4)
            rdx, rdgamma, rdbeta = ref_norm.batchnorm_backward(dy, x, mean, invstd, gamma, train)
            np.testing.assert_allclose(dbeta, rdbeta, rtol=1e-10)
            np.testing.assert_allclose(dgamma, rdgamma, rtol=1e-5)   # dy * (x - mean): float32
            np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-6)
            # in place (dx written over dy), as the residual blocks call it
            d = dy.copy()
            nn_norm.batchnorm_backward(v(d), v(x), mean, invstd, gamma, train,
                                       np.empty((4, 3), np.float32), dgamma, dbeta, v(d), 0, 4)
            np.testing.assert_array_equal(d, dx)
            # any split of the channels between threads gives the same values, bit for bit
            d = dy.copy()
            for c0, c1 in ((0, 1), (1, 3), (3, 4)):
                nn_norm.batchnorm_backward(v(d), v(x), mean, invstd, gamma, train,
                                           np.empty((4, 3), np.float32), dgamma, dbeta, v(d),
                                           c0, c1)
            np.testing.assert_array_equal(d, dx)

    @pytest.mark.parametrize("size", [101, 3 * nn_act.CHUNK + 5])
    def test_activation_kernels(self, rng, size):
        a = rng.standard_normal(size).astype(np.float32) * 4
        b = rng.standard_normal(size).astype(np.float32) * 4
        chunks = -(-size // nn_act.CHUNK)
        y = np.empty_like(a)
        nn_act.relu_forward(a, y, 0, chunks)
        np.testing.assert_array_equal(y, ref_act.relu_forward(a))
        dx = np.empty_like(a)
        nn_act.relu_backward(b, y, dx, 0, chunks)
        np.testing.assert_array_equal(dx, ref_act.relu_backward(b, y))
        nn_act.add_relu_forward(a, b, y, 0, chunks)
        np.testing.assert_array_equal(y, ref_act.add_relu_forward(a, b))
        c = a.copy()
        nn_act.add_inplace(c, b, 0, chunks)
        np.testing.assert_array_equal(c, ref_act.add_inplace(a, b))
        nn_act.relu6_forward(a, y, 0, chunks)
        np.testing.assert_array_equal(y, ref_act.relu6_forward(a))
        nn_act.relu6_backward(b, y, dx, 0, chunks)
        np.testing.assert_array_equal(dx, ref_act.relu6_backward(b, y))
        # the chunks in separate calls (as bands on several threads) write only their elements;
        # the last chunk is short
        y[:] = np.nan
        for r0 in range(chunks):
            nn_act.relu_forward(a, y, r0, r0 + 1)
            assert np.isnan(y[(r0 + 1) * nn_act.CHUNK:]).all()
        np.testing.assert_array_equal(y, ref_act.relu_forward(a))
        # and through the band runner
        y[:] = np.nan
        L.elementwise(nn_act.add_relu_forward, a, b, y)
        np.testing.assert_array_equal(y, ref_act.add_relu_forward(a, b))
        # in place (the output is the first input: a loop of its own in each kernel)
        c = a.copy()
        L.elementwise(nn_act.add_relu_forward, c, b, c)
        np.testing.assert_array_equal(c, ref_act.add_relu_forward(a, b))
        mask = ref_act.relu_forward(a)
        for kernel, ref in ((nn_act.relu_backward, ref_act.relu_backward),
                            (nn_act.relu6_backward, ref_act.relu6_backward)):
            c = b.copy()
            L.elementwise(kernel, c, mask, c)
            np.testing.assert_array_equal(c, ref(b, mask))
        for kernel, ref in ((nn_act.relu_forward, ref_act.relu_forward),
                            (nn_act.relu6_forward, ref_act.relu6_forward)):
            c = a.copy()
            L.elementwise(kernel, c, c)
            np.testing.assert_array_equal(c, ref(a))

    @pytest.mark.parametrize("k, s, p, d", [((3, 3), (2, 2), (1, 1), (1, 1)),
                                            ((2, 3), (1, 2), (0, 1), (1, 1)),
                                            ((3, 2), (2, 1), (1, 0), (2, 1))])
    def test_maxpool_kernels(self, rng, k, s, p, d):
        x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
        y, cache = L.maxpool2d_forward(x, k, s, p, d)
        ry, rarg = ref_pool.maxpool2d_forward(x, k, s, p, d)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(cache.argmax, rarg)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(L.maxpool2d_backward(dy, cache),
                                   ref_pool.maxpool2d_backward(dy, rarg, x.shape), rtol=1e-6)

    @pytest.mark.parametrize("include", [True, False])
    @pytest.mark.parametrize("k, s, p", [((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 1)),
                                         ((4, 4), (4, 4), (0, 0))])
    def test_avgpool_kernels(self, rng, k, s, p, include):
        x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
        y, cache = L.avgpool2d_forward(x, k, s, p, include)
        np.testing.assert_allclose(y, ref_pool.avgpool2d_forward(x, k, s, p, include), rtol=1e-5,
                                   atol=1e-6)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(L.avgpool2d_backward(dy, cache),
                                   ref_pool.avgpool2d_backward(dy, x.shape, k, s, p, include),
                                   rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("out", [(1, 1), (2, 3), (3, 3), (5, 4)])
    def test_adaptive_pool_kernels(self, rng, out):
        x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
        y, cache = L.adaptive_avgpool2d_forward(x, out)
        np.testing.assert_allclose(y, ref_pool.adaptive_avgpool2d_forward(x, out), rtol=1e-5,
                                   atol=1e-6)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = L.adaptive_avgpool2d_backward(dy, cache)
        np.testing.assert_allclose(dx, ref_pool.adaptive_avgpool2d_backward(dy, x.shape),
                                   rtol=1e-5, atol=1e-6)
        if out == (1, 1):     # the global pool's NumPy broadcast gives the kernel's values
            from kernels import nn_pool
            kdx = np.empty_like(x)
            nn_pool.adaptive_avgpool2d_backward(dy.reshape(6, 1, 1), kdx.reshape(6, 7, 5))
            np.testing.assert_array_equal(dx, kdx)


# ------------------------------------------------------------------------------------------------
# hand-worked cases
# ------------------------------------------------------------------------------------------------
class TestHandWorked:
    def test_maxpool_4x4(self):
        x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        y = L.MaxPool2d(2)(x)
        assert y[0, 0].tolist() == [[5, 7], [13, 15]]
        # 3/2/1 (the ResNet stem): windows centred on rows/cols 0 and 2 -> maxima at (1,1),(1,3)..
        y = L.MaxPool2d(3, 2, 1)(x)
        assert y[0, 0].tolist() == [[5, 7], [13, 15]]

    def test_maxpool_backward_routes_to_the_max(self):
        x = np.array([[[[1, 9], [3, 4]]]], dtype=np.float32)
        pool = L.MaxPool2d(2)
        pool(x)
        assert pool.backward(np.array([[[[2.0]]]]))[0, 0].tolist() == [[0, 2], [0, 0]]

    def test_avgpool_padding_divisor(self):
        x = np.ones((1, 1, 2, 2), dtype=np.float32)
        # one 3x3 window over a 1-padded 2x2 image (stride 3): 4 real ones, 5 padding zeros
        assert L.AvgPool2d(3, 3, 1)(x)[0, 0, 0, 0] == pytest.approx(4 / 9)
        assert L.AvgPool2d(3, 3, 1, count_include_pad=False)(x)[0, 0, 0, 0] == pytest.approx(1)

    def test_adaptive_bins_overlap(self):
        # H = 5 into 3 bins: rows [0, 2), [1, 4), [3, 5) (PyTorch's floor/ceil edges)
        x = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
        y = L.AdaptiveAvgPool2d((3, 1))(x)
        assert y.ravel().tolist() == pytest.approx([0.5, 2.0, 3.5])

    def test_batchnorm_two_values(self):
        # one channel holding 1 and 3: mean 2, biased var 1 -> (-1, 1) * 1/sqrt(1 + eps)
        bn = L.BatchNorm2d(1)
        y = bn(np.array([[[[1.0]]], [[[3.0]]]], dtype=np.float32))
        assert y.ravel().tolist() == pytest.approx([-1 / math.sqrt(1 + 1e-5),
                                                    1 / math.sqrt(1 + 1e-5)])
        # running stats: 0.9 * 0 + 0.1 * 2; 0.9 * 1 + 0.1 * (unbiased var 2)
        assert bn.running_mean.tolist() == pytest.approx([0.2])
        assert bn.running_var.tolist() == pytest.approx([1.1])
        assert int(bn.num_batches_tracked) == 1

    def test_batchnorm_cumulative_average_when_momentum_none(self):
        bn = L.BatchNorm2d(1, momentum=None)
        for v in (2.0, 4.0):
            bn(np.array([[[[v - 1]]], [[[v + 1]]]], dtype=np.float32))
        assert bn.running_mean.tolist() == pytest.approx([3.0])   # plain mean of 2 and 4
        assert bn.running_var.tolist() == pytest.approx([2.0])    # unbiased var 2 both times

    def test_cross_entropy_uniform_logits(self):
        loss = CrossEntropyLoss()(np.zeros((3, 4), dtype=np.float32), np.array([0, 1, 3]))
        assert loss == pytest.approx(math.log(4))

    def test_cross_entropy_label_smoothing_by_hand(self):
        z = np.array([[2.0, 0.0, -1.0]], dtype=np.float32)
        log_p = z - np.log(np.exp(z).sum())
        eps = 0.3
        want = (1 - eps) * -log_p[0, 0] + eps / 3 * -log_p[0].sum()
        crit = CrossEntropyLoss(label_smoothing=eps)
        assert crit(z, np.array([0])) == pytest.approx(want, rel=1e-6)
        q = np.array([1 - eps + eps / 3, eps / 3, eps / 3])
        np.testing.assert_allclose(crit.backward(), np.exp(log_p) - q, rtol=1e-6, atol=1e-7)

    def test_dropout_scaling_and_eval(self):
        x = np.ones((200, 50), dtype=np.float32)
        drop = L.Dropout(0.25, rng=0)
        y = drop(x)
        assert set(np.unique(y).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
        assert abs((y == 0).mean() - 0.25) < 0.02
        dy = np.full_like(x, 2.0)
        np.testing.assert_array_equal(drop.backward(dy), 2.0 * y)   # same mask and scaling
        drop.eval()                                   # identity, and so is its backward
        assert np.array_equal(drop(x), x)
        np.testing.assert_array_equal(drop.backward(dy), dy)
        assert not L.Dropout(1.0, rng=0)(x).any()

    def test_dropout_is_seeded(self):
        x = np.ones((10, 10), dtype=np.float32)
        np.testing.assert_array_equal(L.Dropout(0.5, rng=3)(x), L.Dropout(0.5, rng=3)(x))

    def test_flatten_and_linear(self):
        x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
        assert L.Flatten()(x).shape == (2, 12)
        assert L.Flatten(0)(x).shape == (24,)
        lin = L.Linear(2, 1)
        lin.weight.data[...] = [[1.0, 2.0]]
        lin.bias.data[...] = [0.5]
        assert lin(np.array([[3.0, 4.0]], dtype=np.float32)).tolist() == [[11.5]]

    def test_relu_inplace_honoured(self):
        x = np.array([-1.0, 2.0], dtype=np.float32)
        y = L.ReLU(inplace=True)(x)
        assert y is x and x.tolist() == [0.0, 2.0]
        x = np.array([-1.0, 2.0], dtype=np.float32)
        L.ReLU()(x)
        assert x.tolist() == [-1.0, 2.0]

    def test_sequential_indexing_and_names(self):
        seq = L.Sequential(L.Linear(4, 3, rng=0), L.ReLU(), L.Linear(3, 2, rng=1))
        assert len(seq) == 3 and isinstance(seq[1], L.ReLU) and seq[-1] is seq[2]
        assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        assert len(seq[1:]) == 2
        with pytest.raises(IndexError):
            seq[3]

    def test_defaults_match_the_docs(self):
        bn = L.BatchNorm2d(3)
        assert bn.eps == 1e-5 and bn.momentum == 0.1
        assert L.MaxPool2d(3).stride == (3, 3)
        assert CrossEntropyLoss().label_smoothing == 0.0
        sd = bn.state_dict()
        assert list(sd) == ["weight", "bias", "running_mean", "running_var",
                            "num_batches_tracked"]
        assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()


# ------------------------------------------------------------------------------------------------
# gradient checks in float64, every layer
# ------------------------------------------------------------------------------------------------
class TestGradcheck:
    def test_relu(self, rng):
        x = away_from_zero(rng, (2, 3, 4, 4))
        gradcheck(lambda a: L.relu_forward(a), x, backward=L.relu_backward, **GC)
        gradcheck(L.ReLU(), x, **GC)

    def test_batchnorm_train(self, rng):
        x = rng.standard_normal((3, 4, 3, 5)) * 2 + 1
        g, b = rng.standard_normal(4), rng.standard_normal(4)
        gradcheck(lambda x, g, b: L.batchnorm2d_train_forward(x, g, b, 1e-5), (x, g, b),
                  backward=L.batchnorm2d_train_backward, **GC)
        bn = L.BatchNorm2d(4)
        bn.weight.data[...] = g
        bn.bias.data[...] = b
        before = bn.state_dict()
        gradcheck(bn, x, **GC)
        after = bn.state_dict()          # the check put the running statistics back
        assert all(np.array_equal(before[k], after[k]) for k in before)
        assert bn.weight.data.dtype == np.float32 and bn.weight.grad is None

    def test_batchnorm_eval(self, rng):
        x = rng.standard_normal((2, 4, 3, 3))
        rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
        g, b = rng.standard_normal(4), rng.standard_normal(4)
        gradcheck(lambda x, g, b: L.batchnorm2d_eval_forward(x, g, b, rm, rv, 1e-5), (x, g, b),
                  backward=L.batchnorm2d_eval_backward, **GC)

    @pytest.mark.parametrize("args", [(3, 2, 1), (2, None, 0), ((2, 3), (1, 2), (1, 1), (2, 1))])
    def test_maxpool(self, rng, args):
        x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0   # distinct: no ties
        gradcheck(L.MaxPool2d(*args), x, **GC)

    @pytest.mark.parametrize("include", [True, False])
    def test_avgpool(self, rng, include):
        x = rng.standard_normal((2, 2, 6, 7))
        gradcheck(L.AvgPool2d(3, 2, 1, count_include_pad=include), x, **GC)

    @pytest.mark.parametrize("out", [1, (2, 3)])
    def test_adaptive_avgpool(self, rng, out):
        gradcheck(L.AdaptiveAvgPool2d(out), rng.standard_normal((2, 3, 5, 7)), **GC)

    def test_linear(self, rng):
        gradcheck(L.Linear(5, 3, rng=0), rng.standard_normal((4, 5)), **GC)
        gradcheck(L.Linear(5, 3, bias=False, rng=0), rng.standard_normal((2, 3, 5)), **GC)

    def test_dropout(self, rng):
        x = rng.standard_normal((3, 20))
        # a fresh generator with the same seed per call: the same mask in every evaluation
        gradcheck(lambda a: L.dropout_forward(a, 0.3, np.random.default_rng(7)), x,
                  backward=L.dropout_backward, **GC)

    def test_flatten_identity_sequential(self, rng):
        x = away_from_zero(rng, (2, 3, 4, 4))
        gradcheck(L.Flatten(), x, **GC)
        gradcheck(L.Identity(), x, **GC)
        seq = L.Sequential(L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
                           L.Linear(12, 5, rng=0))
        gradcheck(seq, x, **GC)

    @pytest.mark.parametrize("eps", [0.0, 0.2])
    def test_cross_entropy(self, rng, eps):
        z = rng.standard_normal((4, 5)) * 3
        t = np.array([0, 4, 2, 2])
        gradcheck(lambda a: cross_entropy_forward(a, t, eps), z, backward=cross_entropy_backward,
                  **GC)
        gradcheck(CrossEntropyLoss(label_smoothing=eps), (z, t), **GC)

    def test_gradcheck_catches_a_wrong_backward(self, rng):
        x = rng.standard_normal((2, 3, 4, 4))
        g, b = np.ones(3), np.zeros(3)

        def forgot_the_mean_term(dy, cache):       # dx without the -dbeta/M term
            dx, dg, db = L.batchnorm2d_train_backward(dy, cache)
            return dx + db[None, :, None, None] * cache.gamma[None, :, None, None] \
                * cache.invstd[None, :, None, None] / 32, dg, db

        with pytest.raises(GradcheckError, match="input 0"):
            gradcheck(lambda x, g, b: L.batchnorm2d_train_forward(x, g, b), (x, g, b),
                      backward=forgot_the_mean_term, **GC)
        res = gradcheck(lambda x, g, b: L.batchnorm2d_train_forward(x, g, b), (x, g, b),
                        backward=forgot_the_mean_term, raise_on_failure=False, **GC)
        assert not res.ok and res.checked == x.size + 6


# ------------------------------------------------------------------------------------------------
# agreement with PyTorch (float32)
# ------------------------------------------------------------------------------------------------
def _torch_pair(module, tmodule, x, rng, torch):
    """Forward and backward through both; return (y, ty, dx, tdx)."""
    y = module(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = tmodule(xt)
    yt.backward(torch.from_numpy(dy))
    dx = module.backward(dy)
    return y, yt.detach().numpy(), dx, xt.grad.numpy()


class TestAgainstTorch:
    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")
        self.nn = self.torch.nn

    def close(self, a, b):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)

    def test_batchnorm_train_and_eval(self, rng):
        torch = self.torch
        bn, tbn = L.BatchNorm2d(5), self.nn.BatchNorm2d(5)
        g, b = rng.uniform(0.5, 1.5, 5).astype(np.float32), rng.standard_normal(5).astype(
            np.float32)
        bn.weight.data[...] = g
        bn.bias.data[...] = b
        with torch.no_grad():
            tbn.weight.copy_(torch.from_numpy(g))
            tbn.bias.copy_(torch.from_numpy(b))
        for step in range(2):
            x = (rng.standard_normal((4, 5, 6, 7)) * 3 + 2).astype(np.float32)
            tbn.zero_grad()
            y, ty, dx, tdx = _torch_pair(bn, tbn, x, rng, torch)
            self.close(y, ty)
            self.close(dx, tdx)
            self.close(bn.weight.grad, tbn.weight.grad.numpy())
            self.close(bn.bias.grad, tbn.bias.grad.numpy())
        for key, value in tbn.state_dict().items():
            np.testing.assert_allclose(bn.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
        assert int(bn.num_batches_tracked) == 2
        bn.eval()
        tbn.eval()
        x = rng.standard_normal((2, 5, 3, 3)).astype(np.float32)
        self.close(bn(x), tbn(torch.from_numpy(x)).detach().numpy())
        # eval-mode gradients through the functional pair
        dy = rng.standard_normal(x.shape).astype(np.float32)
        y, cache = L.batchnorm2d_eval_forward(x, g, b, bn.running_mean, bn.running_var)
        dx, dg, db = L.batchnorm2d_eval_backward(dy, cache)
        xt = torch.from_numpy(x).requires_grad_(True)
        tbn.zero_grad()
        tbn(xt).backward(torch.from_numpy(dy))
        self.close(dx, xt.grad.numpy())
        self.close(dg, tbn.weight.grad.numpy())
        self.close(db, tbn.bias.grad.numpy())

    def test_relu(self, rng):
        x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(L.ReLU(), self.nn.ReLU(), x, rng, self.torch)
        self.close(y, ty)
        self.close(dx, tdx)

    @pytest.mark.parametrize("args", [(3, 2, 1), (2, None, 0), ((3, 2), (2, 1), (1, 0), (1, 2))])
    def test_maxpool(self, rng, args):
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(L.MaxPool2d(*args), self.nn.MaxPool2d(*args), x, rng,
                                     self.torch)
        self.close(y, ty)
        self.close(dx, tdx)

    @pytest.mark.parametrize("include", [True, False])
    @pytest.mark.parametrize("args", [(3, 2, 1), (2, None, 0), ((3, 2), (2, 1), (1, 1))])
    def test_avgpool(self, rng, args, include):
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(L.AvgPool2d(*args, count_include_pad=include),
                                     self.nn.AvgPool2d(*args, count_include_pad=include), x, rng,
                                     self.torch)
        self.close(y, ty)
        self.close(dx, tdx)

    @pytest.mark.parametrize("out", [1, (2, 3), (4, 4)])
    def test_adaptive_avgpool(self, rng, out):
        x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(L.AdaptiveAvgPool2d(out), self.nn.AdaptiveAvgPool2d(out), x,
                                     rng, self.torch)
        self.close(y, ty)
        self.close(dx, tdx)

    def test_linear(self, rng):
        torch = self.torch
        lin, tlin = L.Linear(6, 4, rng=0), self.nn.Linear(6, 4)
        with torch.no_grad():
            tlin.weight.copy_(torch.from_numpy(lin.weight.data))
            tlin.bias.copy_(torch.from_numpy(lin.bias.data))
        x = rng.standard_normal((5, 6)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(lin, tlin, x, rng, torch)
        self.close(y, ty)
        self.close(dx, tdx)
        self.close(lin.weight.grad, tlin.weight.grad.numpy())
        self.close(lin.bias.grad, tlin.bias.grad.numpy())

    def test_linear_init_bounds_match_torch(self):
        lin, tlin = L.Linear(50, 40, rng=0), self.nn.Linear(50, 40)
        bound = 1 / math.sqrt(50)
        for ours, theirs in ((lin.weight.data, tlin.weight), (lin.bias.data, tlin.bias)):
            theirs = theirs.detach().numpy()
            assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
            assert abs(ours.std() - theirs.std()) < 0.2 * bound      # both U(-b, b)

    def test_flatten(self, rng):
        x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
        y, ty, dx, tdx = _torch_pair(L.Flatten(1, 2), self.nn.Flatten(1, 2), x, rng, self.torch)
        self.close(y, ty)
        self.close(dx, tdx)

    def test_dropout_eval_is_identity_in_both(self, rng):
        x = rng.standard_normal((4, 5)).astype(np.float32)
        tdrop = self.nn.Dropout(0.4).eval()
        self.close(L.Dropout(0.4).eval()(x), tdrop(self.torch.from_numpy(x)).numpy())

    @pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
    def test_cross_entropy(self, rng, eps):
        torch = self.torch
        z = (rng.standard_normal((6, 7)) * 4).astype(np.float32)
        t = rng.integers(0, 7, 6)
        crit = CrossEntropyLoss(label_smoothing=eps)
        loss = crit(z, t)
        zt = torch.from_numpy(z).requires_grad_(True)
        lt = self.nn.CrossEntropyLoss(label_smoothing=eps)(zt, torch.from_numpy(t))
        lt.backward()
        assert loss == pytest.approx(lt.item(), rel=RTOL, abs=ATOL)
        self.close(crit.backward(), zt.grad.numpy())


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(H=st.integers(1, 9), W=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), seed=st.integers(0, 10_000))
def test_pools_match_twins_on_random_geometry(H, W, k, s, p, seed):
    p = min(p, k // 2)
    if H + 2 * p < k or W + 2 * p < k:
        with pytest.raises(ValueError, match="smaller than the kernel"):
            L.MaxPool2d(k, s, p)(np.zeros((1, 1, H, W), dtype=np.float32))
        return
    x = np.random.default_rng(seed).standard_normal((1, 2, H, W)).astype(np.float32)
    ymax = L.MaxPool2d(k, s, p)(x)
    np.testing.assert_array_equal(ymax, ref_pool.maxpool2d_forward(x, (k, k), (s, s), (p, p))[0])
    yavg = L.AvgPool2d(k, s, p, count_include_pad=False)(x)
    np.testing.assert_allclose(yavg, ref_pool.avgpool2d_forward(x, (k, k), (s, s), (p, p), False),
                               rtol=1e-5, atol=1e-6)
    assert (ymax >= yavg - 1e-6).all()      # a maximum is never below the mean of its window


def test_batchnorm_output_is_standardised(rng):
    x = (rng.standard_normal((8, 3, 5, 5)) * 10 + 4).astype(np.float32)
    y = L.BatchNorm2d(3)(x).astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-4)


def test_batchnorm_forward_relu_is_relu_of_forward(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    a, b = L.BatchNorm2d(3), L.BatchNorm2d(3)
    np.testing.assert_array_equal(a.forward_relu(x), np.maximum(b(x), 0))
    np.testing.assert_array_equal(a.running_var, b.running_var)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a.forward_relu(x), np.maximum(b(x), 0))


def test_batchnorm_backward_into_dy_gives_the_same_gradients(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    a, b = L.BatchNorm2d(3), L.BatchNorm2d(3)
    a(x)
    b(x)
    dx = a.backward(dy)
    own = dy.copy()
    assert b.backward(own, out=own) is own
    np.testing.assert_allclose(own, dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(a.weight.grad, b.weight.grad)
    # eval mode, through the functional pair
    _, cache = L.batchnorm2d_eval_forward(x, a.weight.data, a.bias.data, a.running_mean,
                                          a.running_var)
    want = L.batchnorm2d_eval_backward(dy, cache)
    own = dy.copy()
    got = L.batchnorm2d_eval_backward(own, cache, out=own)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous float32"):
        L.batchnorm2d_eval_backward(dy, cache, out=np.empty(x.shape, dtype=np.float64))


def test_linear_backward_is_adjoint(rng):
    """<dy, J dx_probe> equals <J^T dy, dx_probe> for a linear map (y = x W^T without bias)."""
    lin = L.Linear(6, 4, bias=False, rng=0)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    y = lin(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = lin.backward(dy)
    assert float((dy * y).sum()) == pytest.approx(float((dx * x).sum()), rel=1e-5)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class TestErrors:
    def test_channel_mismatch_names_the_layer(self):
        with pytest.raises(ValueError, match=r"BatchNorm2d\(4\): expected 4 channels, got 3"):
            L.BatchNorm2d(4)(np.zeros((2, 3, 2, 2), dtype=np.float32))

    def test_spatial_smaller_than_kernel(self):
        with pytest.raises(ValueError, match="MaxPool2d.*height 2 .* smaller than the kernel 3"):
            L.MaxPool2d(3)(np.zeros((1, 1, 2, 5), dtype=np.float32))
        with pytest.raises(ValueError, match="AvgPool2d.*width 1"):
            L.AvgPool2d(2)(np.zeros((1, 1, 4, 1), dtype=np.float32))

    def test_nan_input(self):
        x = np.ones((2, 3, 4, 4), dtype=np.float32)
        x[1, 2, 0, 3] = np.nan
        for layer in (L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2), L.AvgPool2d(2),
                      L.AdaptiveAvgPool2d(1), L.Flatten()):
            with pytest.raises(ValueError, match=rf"{type(layer).__name__}.*NaN.*\(1, 2, 0, 3\)"):
                layer(x)
        with pytest.raises(ValueError, match="Linear.*infinity"):
            L.Linear(4, 2)(np.array([[1, np.inf, 0, 0]], dtype=np.float32))
        with pytest.raises(ValueError, match="CrossEntropyLoss.*NaN"):
            CrossEntropyLoss()(np.array([[np.nan, 0.0]]), np.array([0]))

    def test_error_inside_sequential_names_the_child(self):
        seq = L.Sequential(L.ReLU(), L.BatchNorm2d(4))
        with pytest.raises(ValueError, match=r"^1: BatchNorm2d\(4\): expected 4 channels"):
            seq(np.zeros((2, 3, 2, 2), dtype=np.float32))
        nested = L.Sequential(L.ReLU(), L.Sequential(L.ReLU(), L.MaxPool2d(5)))
        with pytest.raises(ValueError, match=r"^1\.1: MaxPool2d.*smaller than the kernel"):
            nested(np.zeros((1, 1, 3, 3), dtype=np.float32))

    def test_wrong_dimensions_and_dtype(self):
        with pytest.raises(ValueError, match="BatchNorm2d.*4 dimensions"):
            L.BatchNorm2d(3)(np.zeros((3, 4, 4), dtype=np.float32))
        with pytest.raises(TypeError, match="ReLU.*numeric"):
            L.ReLU()(np.array(["a"]))
        with pytest.raises(ValueError, match="Linear.*expected 4 input features"):
            L.Linear(4, 2)(np.zeros((2, 5), dtype=np.float32))

    def test_backward_needs_a_forward_outside_no_grad(self):
        from cvcore.nn import no_grad
        bn = L.BatchNorm2d(2)
        with pytest.raises(RuntimeError, match="BatchNorm2d.*needs a forward pass first"):
            bn.backward(np.zeros((1, 2, 2, 2), dtype=np.float32))
        bn.eval()
        bn(np.ones((1, 2, 2, 2), dtype=np.float32))
        bn.backward(np.zeros((1, 2, 2, 2), dtype=np.float32))        # eval mode: allowed
        bn(np.ones((1, 2, 2, 2), dtype=np.float32))
        with no_grad():
            bn(np.ones((1, 2, 2, 2), dtype=np.float32))              # drops the cache above
        with pytest.raises(RuntimeError, match="outside cvcore.nn.no_grad"):
            bn.backward(np.zeros((1, 2, 2, 2), dtype=np.float32))
        bn.train()
        bn(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
        bn.backward(np.zeros((1, 2, 2, 2), dtype=np.float32))
        with pytest.raises(RuntimeError, match="one backward"):       # the cache was consumed
            bn.backward(np.zeros((1, 2, 2, 2), dtype=np.float32))

    def test_gradient_of_wrong_shape(self):
        pool = L.MaxPool2d(2)
        pool(np.zeros((1, 1, 4, 4), dtype=np.float32))
        with pytest.raises(ValueError,
                           match=r"MaxPool2d.*dy has shape \(1, 1, 4, 4\).*\(1, 1, 2, 2\)"):
            pool.backward(np.zeros((1, 1, 4, 4), dtype=np.float32))

    def test_batchnorm_single_value_per_channel(self):
        with pytest.raises(ValueError, match="more than one value per channel"):
            L.BatchNorm2d(2)(np.zeros((1, 2, 1, 1), dtype=np.float32))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="padding"):
            L.MaxPool2d(3, 1, 2)
        with pytest.raises(ValueError, match="dropout probability"):
            L.Dropout(1.5)
        with pytest.raises(ValueError, match="label_smoothing"):
            CrossEntropyLoss(label_smoothing=-0.1)
        with pytest.raises(ValueError, match="class 5, outside 0..4"):
            CrossEntropyLoss()(np.zeros((2, 5)), np.array([0, 5]))
        with pytest.raises(TypeError, match="target"):
            CrossEntropyLoss()(np.zeros((2, 5)), np.array([0.0, 1.0]))
        with pytest.raises(ValueError, match="2 labels for 3 rows"):
            CrossEntropyLoss()(np.zeros((3, 5)), np.array([0, 1]))
        with pytest.raises(TypeError, match="not a Module"):
            L.Sequential(L.ReLU(), "relu")

    def test_state_dict_mismatch(self):
        bn = L.BatchNorm2d(3)
        sd = bn.state_dict()
        with pytest.raises(KeyError, match="missing keys \\['running_var'\\]"):
            bn.load_state_dict({k: v for k, v in sd.items() if k != "running_var"})
        with pytest.raises(ValueError, match=r"running_mean: shape \(4,\)"):
            bn.load_state_dict({**sd, "running_mean": np.zeros(4)})
