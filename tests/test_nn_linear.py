"""The three ways :func:`cvcore.nn.layers._matmul_nt` computes ``a @ b.T`` (kernels/nn_linear.py):
the one-thread small product, dot products (few rows on one side) and the register-blocked GEMM
(either operand transposed), each against NumPy's product, plus a hand-worked case."""
import numpy as np
import pytest

from cvcore.nn.layers import _matmul_nt
from kernels import nn_linear


def test_hand_worked():
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    b = np.array([[1, 0, -1], [0, 1, 0]], dtype=np.float32)
    # rows of a against rows of b: (1-3, 2), (4-6, 5)
    np.testing.assert_array_equal(_matmul_nt(a, b), [[-2, 2], [-2, 5]])


@pytest.mark.parametrize("M, N, T, path", [
    (128, 10, 64, "small"),            # ResNet-20's head at batch 128
    (1, 1000, 2048, "dots"),           # ResNet-50's head at batch 1
    (40, 2, 20000, "dots"),
    (200, 300, 40, "gemm"),            # b transposed (N > M: a transposed, output too)
    (300, 200, 40, "gemm"),
    (7, 5, 1, "small"),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paths_agree_with_numpy(M, N, T, path, dtype):
    work = M * N * T
    chosen = ("small" if work <= nn_linear.SMALL_WORK else
              "dots" if min(M, N) < nn_linear.SMALL else "gemm")
    assert chosen == path                       # the case exercises the path it names
    rng = np.random.default_rng(M * 7 + N)
    a = rng.standard_normal((M, T)).astype(dtype)
    b = rng.standard_normal((N, T)).astype(dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64).T
    tol = 1e-12 if dtype == np.float64 else 2e-6
    got = _matmul_nt(a, b)
    assert got.dtype == dtype and got.shape == (M, N)
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.sqrt(T) * 4)


def test_small_kernel_directly():
    """kernels.nn_linear.small_matmul_nt on its own, with an empty reduction (zeros)."""
    a = np.ones((3, 0), dtype=np.float32)
    out = np.full((3, 2), 7, dtype=np.float32)
    nn_linear.small_matmul_nt(a, np.ones((2, 0), dtype=np.float32), out)
    np.testing.assert_array_equal(out, 0)
