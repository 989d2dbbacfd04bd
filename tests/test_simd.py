"""The register-blocked micro-kernels of kernels.simd against their NumPy definitions."""
import numpy as np
import pytest
from numba import njit

from kernels import simd


@njit(cache=True)
def _fma_tile(x, q0, w, wrows, offs, acc):
    simd.fma_tile(x, q0, w, wrows, offs, acc)


@njit(cache=True)
def _fma_tile_narrow(x, q0, w, wrows, offs, acc):
    simd.fma_tile_narrow(x, q0, w, wrows, offs, acc)


@njit(cache=True)
def _fma_tile_pm(x, q0, w, wrows, offs, acc):
    simd.fma_tile_pm(x, q0, w, wrows, offs, acc)


@njit(cache=True)
def _fma_tile_pmh(x, q0, w, wrows, offs, acc):
    simd.fma_tile_pmh(x, q0, w, wrows, offs, acc)


@njit(cache=True)
def _dot_tile(a, aoffs, b, boffs, t0, t1, acc):
    simd.dot_tile(a, aoffs, b, boffs, t0, t1, acc)


@njit(cache=True)
def _dot_tile_sums(a, aoffs, b, boffs, t0, t1, sums):
    simd.dot_tile_sums(a, aoffs, b, boffs, t0, t1, sums)


@njit(cache=True)
def _fma_tile_masked(x, q0, w, wrows, offs, masks, acc):
    simd.fma_tile_masked(x, q0, w, wrows, offs, masks, acc)


@njit(cache=True)
def _fma_tile_narrow_masked(x, q0, w, wrows, offs, masks, acc):
    simd.fma_tile_narrow_masked(x, q0, w, wrows, offs, masks, acc)


def test_tile_shapes_fit_the_registers():
    # accumulators + the vectors loaded per step stay within the register file
    registers = 32 if simd.AVX512 else 16
    lanes = simd.VECTOR_BYTES // 4
    assert simd.TB % lanes == 0 and simd.TB % (simd.VECTOR_BYTES // 8) == 0
    assert simd.KB * simd.TB // lanes + simd.TB // lanes + 1 <= registers
    assert simd.TBN % lanes == 0 and simd.TBN % (simd.VECTOR_BYTES // 8) == 0
    assert simd.KBN * simd.TBN // lanes + simd.TBN // lanes + 1 <= registers
    assert simd.TBP % lanes == 0 and simd.TBP % (simd.VECTOR_BYTES // 8) == 0
    assert simd.KB * simd.TBP // lanes + simd.TBP // lanes + 1 <= registers
    assert simd.TBH % lanes == 0 and 2 * simd.TBH == simd.TBP
    assert simd.DA * simd.DB + simd.DA + 1 <= registers


@pytest.mark.parametrize("narrow", [False, True, "pm", "pmh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R", [1, 5, 64])
def test_fma_tile_matches_numpy(dtype, R, narrow, rng):
    KB, TB = {False: (simd.KB, simd.TB), True: (simd.KBN, simd.TBN),
              "pm": (simd.KB, simd.TBP), "pmh": (simd.KB, simd.TBH)}[narrow]
    x = rng.standard_normal(400).astype(dtype)
    w = rng.standard_normal((KB + 5, R)).astype(dtype)
    rows = rng.permutation(KB + 5)[:KB]                     # any rows, in any order
    offs = rng.integers(0, 400 - TB - 7, R).astype(np.int64)
    acc = np.full((KB, TB), np.nan, dtype)
    {False: _fma_tile, True: _fma_tile_narrow, "pm": _fma_tile_pm,
     "pmh": _fma_tile_pmh}[narrow](
        x, 7, w.reshape(-1), (rows * R).astype(np.int64), offs, acc)
    windows = x[7 + offs[:, None] + np.arange(TB)]                     # (R, TB)
    expected = w[rows].astype(np.float64) @ windows.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(acc, expected, rtol=tol, atol=tol * np.sqrt(R))


def test_fma_tile_with_no_taps_is_zero():
    acc = np.full((simd.KB, simd.TB), np.nan, np.float32)
    _fma_tile(np.ones(100, np.float32), 0, np.ones(1, np.float32), np.zeros(simd.KB, np.int64),
              np.zeros(0, np.int64), acc)
    assert (acc == 0).all()


def _dot_tile_case(dtype, rng):
    """Two vectors, DA and DB row offsets into them, and the lanes of ``dtype``."""
    a = rng.standard_normal(500).astype(dtype)
    b = rng.standard_normal(600).astype(dtype)
    aoffs = rng.integers(0, 200, simd.DA).astype(np.int64)
    boffs = rng.integers(0, 300, simd.DB).astype(np.int64)
    return a, aoffs, b, boffs, simd.vector_lanes(dtype)


def _dot_products(a, aoffs, b, boffs, t0, t1):
    """``A @ B.T`` in float64 for the rows the offsets pick, columns ``[t0, t1)``."""
    A = a[aoffs[:, None] + np.arange(t0, t1)].astype(np.float64)
    B = b[boffs[:, None] + np.arange(t0, t1)].astype(np.float64)
    return A @ B.T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("steps", [0, 1, 13])
def test_dot_tile_matches_numpy(dtype, steps, rng):
    a, aoffs, b, boffs, vl = _dot_tile_case(dtype, rng)
    acc = np.full((simd.DA, simd.DB, vl), np.nan, dtype)                     # overwritten
    t0, t1 = 3, 3 + steps * vl
    _dot_tile(a, aoffs, b, boffs, t0, t1, acc)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(acc.sum(axis=2), _dot_products(a, aoffs, b, boffs, t0, t1),
                               rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("steps", [0, 1, 13])
def test_dot_tile_sums_are_dot_tiles_lanes_added_up(dtype, steps, rng):
    a, aoffs, b, boffs, vl = _dot_tile_case(dtype, rng)
    t0, t1 = 5, 5 + steps * vl
    acc = np.full((simd.DA, simd.DB, vl), np.nan, dtype)
    sums = np.full((simd.DA, simd.DB), np.nan, dtype)                         # overwritten
    _dot_tile(a, aoffs, b, boffs, t0, t1, acc)
    _dot_tile_sums(a, aoffs, b, boffs, t0, t1, sums)
    # the same accumulators, added up by halves: lanes v and v + VL/2 first, and so on
    halves = acc
    while halves.shape[-1] > 1:
        half = halves.shape[-1] // 2
        halves = halves[..., :half] + halves[..., half:]
    np.testing.assert_array_equal(sums, halves[..., 0])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sums, _dot_products(a, aoffs, b, boffs, t0, t1),
                               rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,T,N", [(1, 1, 1), (3, 5, 4), (7, 33, 13), (1, 2048, 1000),
                                   (128, 64, 10), (5, 0, 3), (0, 4, 2), (40, 70, 100),
                                   (100, 70, 40), (17, 3, 16), (50, 50, 50)])
def test_linear_matmul_matches_numpy(dtype, M, T, N, rng):
    # the Linear layer's products (a @ b.T): dot products below 16 rows, else the GEMM with
    # either operand transposed; every tile-edge case
    from cvcore.nn.layers import _matmul_nt
    a = rng.standard_normal((M, T)).astype(dtype)
    b = rng.standard_normal((N, T)).astype(dtype)
    out = _matmul_nt(a, b)
    assert out.shape == (M, N) and out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.T.astype(np.float64), rtol=tol,
                               atol=tol * np.sqrt(max(T, 1)))


def test_avx2_tile_shapes_compute_the_same(tmp_path):
    # Machines without AVX-512 get 32-byte vectors and smaller tiles (KB=4, TB=24, DB=3). Check
    # that configuration's code on this machine: a fresh process sets the module constants
    # before anything is compiled and runs uncached wrappers (the cached kernels of kernels/
    # belong to this machine's configuration and are not touched).
    import subprocess
    import sys
    script = tmp_path / "avx2.py"
    script.write_text(
        "import numpy as np\n"
        "from numba import njit\n"
        "from kernels import simd\n"
        "simd.AVX512, simd.VECTOR_BYTES = False, 32\n"
        "simd.KB, simd.TB, simd.DA, simd.DB, simd.KBN, simd.TBN = 4, 24, 4, 3, 6, 16\n"
        "@njit\n"
        "def fma(x, q0, w, rows, offs, acc):\n"
        "    simd.fma_tile(x, q0, w, rows, offs, acc)\n"
        "@njit\n"
        "def dot(a, ao, b, bo, t0, t1, acc):\n"
        "    simd.dot_tile(a, ao, b, bo, t0, t1, acc)\n"
        "@njit\n"
        "def dots(a, ao, b, bo, t0, t1, sums):\n"
        "    simd.dot_tile_sums(a, ao, b, bo, t0, t1, sums)\n"
        "rng = np.random.default_rng(0)\n"
        "for dt in (np.float32, np.float64):\n"
        "    x = rng.standard_normal(300).astype(dt); w = rng.standard_normal((6, 9)).astype(dt)\n"
        "    rows = np.array([0, 9, 27, 45], np.int64); offs = rng.integers(0, 250, 9)\n"
        "    acc = np.full((4, 24), np.nan, dt)\n"
        "    fma(x, 3, w.reshape(-1), rows, offs, acc)\n"
        "    ref = w[[0, 1, 3, 5]].astype(float) @ x[3 + offs[:, None] + np.arange(24)]\n"
        "    assert np.allclose(acc, ref, rtol=1e-5, atol=1e-5), 'fma_tile'\n"
        "    vl = 32 // np.dtype(dt).itemsize\n"
        "    ao = np.array([0, 5, 9, 20], np.int64); bo = np.array([1, 7, 30], np.int64)\n"
        "    acc3 = np.full((4, 3, vl), np.nan, dt)\n"
        "    dot(x, ao, x, bo, 2, 2 + 7 * vl, acc3)\n"
        "    t = np.arange(2, 2 + 7 * vl)\n"
        "    A = x[ao[:, None] + t]; B = x[bo[:, None] + t]\n"
        "    assert np.allclose(acc3.sum(-1), A @ B.T, rtol=1e-5, atol=1e-5), 'dot_tile'\n"
        "    sums = np.full((4, 3), np.nan, dt)\n"
        "    dots(x, ao, x, bo, 2, 2 + 7 * vl, sums)\n"
        "    assert np.allclose(sums, A @ B.T, rtol=1e-5, atol=1e-5), 'dot_tile_sums'\n"
        "print('ok')\n")
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": root}, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_linear_matmul_mixed_dtypes_compute_in_float64(rng):
    from cvcore.nn.layers import _matmul_nt
    a = rng.standard_normal((20, 9)).astype(np.float32)
    b = rng.standard_normal((30, 9))
    out = _matmul_nt(a, b)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.T, rtol=1e-12, atol=1e-12)


@njit(cache=True)
def _dot_tile_sums_masked(a, aoffs, b, boffs, bmasks, bcols, t0, t1, sums):
    simd.dot_tile_sums_masked(a, aoffs, b, boffs, bmasks, bcols, t0, t1, sums)


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("R,phases,T", [(1, 1, 1), (5, 3, 2), (64, 4, 9), (27, 7, 9)])
def test_masked_fma_tile_drops_the_masked_lanes(dtype, R, phases, T, narrow, rng):
    # lane l of the tile's vector starting at position p, tap r, is kept by bit l of
    # masks[p // VL % phases, r % T]; a dropped read counts as 0 even when it holds NaN (the
    # windows here do not overlap: each read belongs to one tap); a table without rows: the
    # plain tile, bit for bit
    KB, TB = (simd.KBN, simd.TBN) if narrow else (simd.KB, simd.TB)
    kernel = _fma_tile_narrow_masked if narrow else _fma_tile_masked
    plain = _fma_tile_narrow if narrow else _fma_tile
    vl = simd.vector_lanes(dtype)
    offs = (rng.permutation(R) * (TB + 3)).astype(np.int64)
    w = rng.standard_normal((KB + 5, R)).astype(dtype)
    rows = (rng.permutation(KB + 5)[:KB] * R).astype(np.int64)
    masks = rng.integers(0, 2 ** vl, (phases, T)).astype(np.int64)
    t = np.arange(TB)
    for q0 in (0, 5 * vl):
        x = rng.standard_normal(q0 + R * (TB + 3)).astype(dtype)
        reads = q0 + offs[:, None] + t                                 # (R, TB)
        word = masks[((q0 + t) // vl % phases)[None, :], (np.arange(R) % T)[:, None]]
        keep = (word >> (t % vl)) & 1 == 1
        expected = w.reshape(-1)[rows[:, None] + np.arange(R)].astype(np.float64) \
            @ np.where(keep, x[reads], 0).astype(np.float64)
        poisoned = x.copy()
        poisoned[reads[~keep]] = np.nan
        acc = np.full((KB, TB), np.nan, dtype)
        kernel(poisoned, q0, w.reshape(-1), rows, offs, masks, acc)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(acc, expected, rtol=tol, atol=tol * np.sqrt(R))
    a, b = np.empty((KB, TB), dtype), np.empty((KB, TB), dtype)
    plain(x, q0, w.reshape(-1), rows, offs, b)
    for m in (np.full((phases, T), 2 ** vl - 1, np.int64), np.empty((0, 0), np.int64)):
        kernel(x, q0, w.reshape(-1), rows, offs, m, a)                 # all kept; none given
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("steps,phases", [(0, 3), (1, 1), (13, 4), (13, 5)])
def test_masked_dot_tile_sums_drop_the_masked_lanes(dtype, steps, phases, rng):
    # as the masked tile: step t's lanes of window j kept by masks[t // VL % phases, bcols[j]]
    vl = simd.vector_lanes(dtype)
    t0, t1 = 3 * vl, (3 + steps) * vl
    a = rng.standard_normal(500).astype(dtype)
    aoffs = rng.integers(0, 200, simd.DA).astype(np.int64)
    boffs = (rng.permutation(simd.DB) * (t1 + 5)).astype(np.int64)
    b = rng.standard_normal(simd.DB * (t1 + 5)).astype(dtype)
    T = 9
    masks = rng.integers(0, 2 ** vl, (phases, T)).astype(np.int64)
    bcols = rng.integers(0, T, simd.DB).astype(np.int64)
    t = np.arange(t0, t1)
    keep = (masks[(t // vl % phases)[None, :], bcols[:, None]] >> (t % vl)) & 1 == 1
    B = np.where(keep, b[boffs[:, None] + t], 0).astype(np.float64)      # (DB, steps*vl)
    expected = a[aoffs[:, None] + t].astype(np.float64) @ B.T
    poisoned = b.copy()
    poisoned[(boffs[:, None] + t)[~keep]] = np.inf
    sums = np.full((simd.DA, simd.DB), np.nan, dtype)
    _dot_tile_sums_masked(a, aoffs, poisoned, boffs, masks, bcols, t0, t1, sums)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(sums, expected, rtol=tol, atol=tol * 10)
    plain = np.empty_like(sums)
    _dot_tile_sums(a, aoffs, b, boffs, t0, t1, plain)
    _dot_tile_sums_masked(a, aoffs, b, boffs, np.empty((0, 0), np.int64), bcols, t0, t1, sums)
    np.testing.assert_array_equal(sums, plain)
