"""correlate / convolve: hand-worked cases, the readable twin, SciPy agreement, properties."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cvcore.preprocess import convolve, correlate
from cvcore.preprocess import filters as F
from kernels.reference import conv as ref
from tests.conftest import load_test_image

ndi = pytest.importorskip("scipy.ndimage")

MODES = ["reflect", "mirror", "nearest", "constant", "wrap"]
IMAGE_SHAPES = [(1, 1), (1, 5), (4, 1), (2, 3), (8, 11), (16, 16)]
KERNEL_SHAPES = [(1, 1), (2, 2), (3, 3), (1, 7), (6, 1), (4, 5), (8, 8), (15, 4), (15, 15)]


def bound(kernel, image, cval=0.0):
    """The promised accuracy: 1e-5 of sum|k| * max|image| (cval counts as an image value)."""
    return 1e-5 * np.abs(kernel).sum() * max(np.abs(image).max(), abs(cval), 1e-30)


# ---------------------------------------------------------------- hand-worked cases


@pytest.mark.parametrize("mode, expected", [
    # SciPy's documentation strings for the modes on "a b c d" = indices 0 1 2 3,
    # extended by 4 on each side.
    ("reflect", [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]),
    ("mirror", [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]),
    ("nearest", [0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3]),
    ("constant", [-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1]),
    ("wrap", [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]),
])
def test_border_index_table(mode, expected):
    from kernels.conv import border_map
    got = border_map(4, 4, 4, F.MODES[mode])
    assert got.tolist() == expected
    assert [ref.border_index(i - 4, 4, mode) for i in range(12)] == expected


def test_border_index_one_pixel_axis():
    from kernels.conv import border_map
    for mode in ["reflect", "mirror", "nearest", "wrap"]:
        assert set(border_map(1, 7, 7, F.MODES[mode]).tolist()) == {0}
    assert border_map(1, 2, 2, F.MODES["constant"]).tolist() == [-1, -1, 0, -1, -1]


def test_correlate_by_hand():
    image = np.array([[1.0, 2.0, 3.0],
                      [4.0, 5.0, 6.0]])
    # A 1x2 kernel [a, b] has its centre at column 1 (= 2 // 2): out[i, j] = a*x[j-1] + b*x[j].
    out = correlate(image, np.array([[10.0, 1.0]]), mode="constant", cval=100.0)
    np.testing.assert_array_equal(out, [[1001.0, 12.0, 23.0], [1004.0, 45.0, 56.0]])
    # Convolution of the same kernel: out[i, j] = k[0]*x[j + 1] + k[1]*x[j] (SciPy's shift).
    out = convolve(image, np.array([[10.0, 1.0]]), mode="constant", cval=100.0)
    np.testing.assert_array_equal(out, [[21.0, 32.0, 1003.0], [54.0, 65.0, 1006.0]])


def test_taps_below_double_epsilon_are_dropped_like_scipy():
    # SciPy's 2-D correlate leaves taps with |w| <= DBL_EPSILON out of the footprint.
    image = np.ones((2, 2))
    kernel = np.array([[2.220446049250313e-16, 1.0]])
    np.testing.assert_array_equal(correlate(image, kernel), ndi.correlate(image, kernel))
    np.testing.assert_array_equal(correlate(image, kernel), [[1.0, 1.0], [1.0, 1.0]])


def test_identity_and_shift():
    rng = np.random.default_rng(0)
    image = rng.random((7, 9)).astype(np.float32)
    np.testing.assert_array_equal(correlate(image, [[1.0]]), image)
    shift = np.zeros((3, 3))
    shift[1, 2] = 1.0          # correlation reads one column to the right
    np.testing.assert_array_equal(correlate(image, shift, mode="wrap"), np.roll(image, -1, axis=1))


# ---------------------------------------------------------------- the readable twin


@pytest.mark.parametrize("mode", MODES)
def test_twin_equals_scipy(mode):
    rng = np.random.default_rng(1)
    for shape, kshape in [((1, 1), (15, 15)), ((3, 2), (4, 7)), ((9, 8), (5, 5))]:
        image = rng.standard_normal(shape)
        kernel = rng.standard_normal(kshape)
        np.testing.assert_allclose(ref.correlate(image, kernel, mode, 0.5),
                                   ndi.correlate(image, kernel, mode=mode, cval=0.5), atol=1e-12)
        np.testing.assert_allclose(ref.convolve(image, kernel, mode, 0.5),
                                   ndi.convolve(image, kernel, mode=mode, cval=0.5), atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_kernel_equals_twin(mode):
    rng = np.random.default_rng(2)
    for shape in IMAGE_SHAPES:
        for kshape in [(3, 3), (2, 6), (15, 15)]:
            image = rng.standard_normal(shape).astype(np.float32)
            kernel = rng.standard_normal(kshape)
            got = correlate(image, kernel, mode=mode, cval=-0.25)
            want = ref.correlate(image.astype(np.float64), kernel, mode, -0.25)
            assert np.abs(got - want).max() <= bound(kernel, image, -0.25)


def _tile_shapes():
    """Image shapes around the general kernel's register tile (kernels.conv.TILE_ROWS rows by
    TILE_WIDTH columns): exact multiples, one more (the last block or tile moved back over
    computed ones) and fewer (a scratch block)."""
    from kernels.conv import TILE_ROWS, TILE_WIDTH
    heights = [1, TILE_ROWS - 1, TILE_ROWS, TILE_ROWS + 1, 3 * TILE_ROWS + 2]
    widths = [TILE_WIDTH - 1, TILE_WIDTH, TILE_WIDTH + 1, 2 * TILE_WIDTH + 5]
    return [(h, w) for h in heights for w in widths]


@pytest.mark.parametrize("mode", MODES)
def test_register_tiles_equal_twin(mode):
    rng = np.random.default_rng(12)
    for shape in _tile_shapes():
        image = rng.standard_normal(shape).astype(np.float32)
        kernels = [rng.standard_normal(kshape) for kshape in [(3, 3), (5, 5), (2, 6), (7, 1),
                                                                (1, 4)]]
        for kernel in kernels:
            kernel[0, -1] = 0.0                    # a zero tap inside the window
        # rank 1: the separable kernel's two tiles (one with a zero tap)
        kernels += [np.outer(rng.standard_normal(ny), rng.standard_normal(nx))
                    for ny, nx in [(3, 3), (5, 2), (9, 17)]]
        kernels[-1][:, 3] = 0.0
        for kernel in kernels:
            got = correlate(image, kernel, mode=mode, cval=0.5)
            want = ref.correlate(image.astype(np.float64), kernel, mode, 0.5)
            err = np.abs(got - want).max()
            assert err <= bound(kernel, image, 0.5), (shape, kernel.shape, err)


def test_twin_by_blocks_equals_twin():
    rng = np.random.default_rng(14)
    for shape in [(1, 1), (3, 5), (9, 7), (13, 4)]:
        image = rng.standard_normal(shape)
        for kshape in [(1, 1), (3, 3), (5, 2), (4, 6)]:
            kernel = rng.standard_normal(kshape)
            for mode in MODES:
                np.testing.assert_allclose(ref.correlate_by_blocks(image, kernel, mode, 0.5),
                                           ref.correlate(image, kernel, mode, 0.5),
                                           rtol=1e-12, atol=1e-12)


def test_general_kernel_bands_are_exact():
    """Any split of the rows into bands gives the same bits as one call (each output's sum
    runs in the same order whichever block computes it)."""
    from kernels.conv import border_map, correlate2d
    rng = np.random.default_rng(13)
    image = rng.standard_normal((23, 150)).astype(np.float32)
    kernel = rng.standard_normal((5, 4)).astype(np.float32)
    tu, tv, tw = F._taps(kernel)
    rows = border_map(23, 2, 2, F.MODES["mirror"])
    cols = border_map(150, 2, 1, F.MODES["mirror"])
    whole = np.empty_like(image)
    correlate2d(image, tu, tv, tw, 5, 4, rows, cols, 2, 0.0, whole, 0, 23)
    for cuts in ([0, 1, 23], [0, 3, 4, 11, 23], [0, 7, 14, 16, 23]):
        banded = np.full_like(image, np.nan)
        for r0, r1 in zip(cuts[:-1], cuts[1:]):
            correlate2d(image, tu, tv, tw, 5, 4, rows, cols, 2, 0.0, banded, r0, r1)
        np.testing.assert_array_equal(banded, whole)


def test_separable_kernel_bands_are_exact():
    from kernels.conv import border_map, correlate_separable
    rng = np.random.default_rng(15)
    image = rng.standard_normal((29, 140)).astype(np.float32)
    ky, kx = rng.standard_normal(7).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    yu, yw = F._taps(ky)
    xv, xw = F._taps(kx)
    for mode in MODES:                     # constant: the column pass switches to ring copies
        rows = border_map(29, 3, 3, F.MODES[mode])
        cols = border_map(140, 2, 1, F.MODES[mode])
        args = (image, yu, yw, xv, xw, 4, rows, cols, 2, 0.5, -1.5)
        whole = np.empty_like(image)
        correlate_separable(*args, whole, 0, 29)
        for cuts in ([0, 1, 29], [0, 3, 4, 11, 29], [0, 7, 14, 16, 29]):
            banded = np.full_like(image, np.nan)
            for r0, r1 in zip(cuts[:-1], cuts[1:]):
                correlate_separable(*args, banded, r0, r1)
            np.testing.assert_array_equal(banded, whole)


# ---------------------------------------------------------------- agreement with SciPy


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rank1", [False, True], ids=["general", "separable"])
def test_matches_scipy_all_sizes(mode, rank1):
    rng = np.random.default_rng(3)
    for shape in IMAGE_SHAPES:
        image = rng.uniform(-2, 3, shape).astype(np.float32)
        for kh, kw in KERNEL_SHAPES:
            if rank1:
                kernel = np.outer(rng.standard_normal(kh), rng.standard_normal(kw))
            else:
                kernel = rng.standard_normal((kh, kw))
            for ours, theirs in [(correlate, ndi.correlate), (convolve, ndi.convolve)]:
                got = ours(image, kernel, mode=mode, cval=0.75)
                want = theirs(image.astype(np.float64), kernel, mode=mode, cval=0.75)
                assert got.dtype == np.float32 and got.shape == image.shape
                err = np.abs(got - want).max()
                assert err <= bound(kernel, image, 0.75), (ours.__name__, shape, (kh, kw), err)


def test_rank1_quick_rejection_agrees_with_the_svd_rule():
    """The 2 x 2-minor rejection in front of the SVD never changes the answer, also for kernels
    a hair from rank 1 on either side of RANK1_TOL."""
    def svd_rule(k):
        u, s, vt = np.linalg.svd(k)
        ky, kx = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
        return np.abs(k - np.outer(ky, kx)).sum() <= F.RANK1_TOL * np.abs(k).sum()

    rng = np.random.default_rng(16)
    for trial in range(3000):
        h, w = rng.integers(2, 8, 2)
        k = np.outer(rng.standard_normal(h), rng.standard_normal(w))
        k += rng.standard_normal((h, w)) * 10.0 ** rng.uniform(-11, -5) * (trial % 3 != 0)
        assert (F._rank1_factors(k) is not None) == svd_rule(k), k


def test_rank1_detection():
    rng = np.random.default_rng(4)
    k = np.outer(rng.standard_normal(5), rng.standard_normal(3))
    ky, kx = F._rank1_factors(k)
    np.testing.assert_allclose(np.outer(ky, kx), k, atol=1e-12)
    assert F._rank1_factors(rng.standard_normal((5, 3))) is None
    assert F._rank1_factors(np.ones((1, 7))) is None          # single row: one pass anyway


def test_multichannel_is_per_channel():
    rng = np.random.default_rng(5)
    image = rng.random((12, 10, 3)).astype(np.float32)
    kernel = rng.standard_normal((4, 3))
    got = correlate(image, kernel, mode="mirror")
    for c in range(3):
        want = ndi.correlate(image[:, :, c], kernel, mode="mirror")
        assert np.abs(got[:, :, c] - want).max() <= bound(kernel, image)


@pytest.mark.parametrize("name", ["box.pgm", "roofs1.jpg"])
def test_real_image_matches_scipy(name):
    image = load_test_image(name)
    rng = np.random.default_rng(6)
    for kernel in [rng.standard_normal((5, 5)), np.outer([1, 4, 6, 4, 1], [1, 2, 1]) / 64.0]:
        for mode in ["reflect", "constant"]:
            got = convolve(image, kernel, mode=mode)
            want = ndi.convolve(image.astype(np.float64), kernel, mode=mode)
            assert np.abs(got - want).max() <= bound(kernel, image)


# ---------------------------------------------------------------- properties (hypothesis)

DTYPES = [np.uint8, np.int16, np.float32, np.float64, np.bool_]


@st.composite
def images(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.tuples(st.integers(1, 12), st.integers(1, 12)))
    if dtype == np.bool_:
        elements = st.booleans()
    elif dtype in (np.float32, np.float64):
        elements = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    base = draw(hnp.arrays(dtype, (shape[0] * 2, shape[1] * 2), elements=elements))
    view = draw(st.sampled_from(["contiguous", "strided", "reversed", "transposed", "channels"]))
    if view == "channels":                   # (H, W, C) view with C = 2, channel-strided
        return np.stack([base, base[::-1]], axis=-1)[::2]
    if view == "strided":
        return base[::2, ::2]
    if view == "reversed":
        return base[::-1, ::-2]
    if view == "transposed":
        return base.T
    return base


kernels_st = st.tuples(st.integers(1, 9), st.integers(1, 9)).flatmap(
    lambda s: hnp.arrays(np.float64, s, elements=st.floats(-4, 4)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), kernel=kernels_st, mode=st.sampled_from(MODES),
       flip=st.booleans(), cval=st.floats(-10, 10))
def test_property_any_input_matches_scipy(image, kernel, mode, flip, cval):
    ours, theirs = (convolve, ndi.convolve) if flip else (correlate, ndi.correlate)
    got = ours(image, kernel, mode=mode, cval=cval)
    as32 = image.astype(np.float32).astype(np.float64)
    if image.ndim == 3:                      # per channel: a (kh, kw, 1) kernel in SciPy
        want = theirs(as32, kernel[:, :, None], mode=mode, cval=cval)
    else:
        want = theirs(as32, kernel, mode=mode, cval=cval)
    assert got.shape == image.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= bound(kernel, as32, cval) + 1e-30


@settings(max_examples=25, deadline=None)
@given(image=images(), ky=hnp.arrays(np.float64, st.integers(1, 7), elements=st.floats(-3, 3)),
       kx=hnp.arrays(np.float64, st.integers(1, 7), elements=st.floats(-3, 3)),
       mode=st.sampled_from(MODES))
def test_property_rank1_kernels(image, ky, kx, mode):
    kernel = np.outer(ky, kx)
    got = correlate(image, kernel, mode=mode, cval=1.5)
    as32 = image.astype(np.float32).astype(np.float64)
    k = kernel[:, :, None] if image.ndim == 3 else kernel
    want = ndi.correlate(as32, k, mode=mode, cval=1.5)
    assert np.abs(got - want).max() <= bound(kernel, as32, 1.5) + 1e-30


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("image, kernel, kwargs, exc, words", [
    (np.zeros(5), np.ones((3, 3)), {}, ValueError, "dimensions"),
    (np.zeros((2, 2, 2, 2)), np.ones((3, 3)), {}, ValueError, "dimensions"),
    (np.zeros((0, 4)), np.ones((3, 3)), {}, ValueError, "empty"),
    (np.array([[1.0, np.nan]]), np.ones((3, 3)), {}, ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), np.ones((3, 3)), {}, ValueError, "infinity"),
    (np.array([[1e300]]), np.ones((3, 3)), {}, ValueError, "float32"),
    (np.zeros((3, 3), complex), np.ones((3, 3)), {}, TypeError, "complex"),
    (np.array([["a"]]), np.ones((3, 3)), {}, TypeError, "numeric"),
    (np.zeros((3, 3)), np.ones(3), {}, ValueError, "kernel"),
    (np.zeros((3, 3)), np.ones((0, 3)), {}, ValueError, "kernel"),
    (np.zeros((3, 3)), np.array([[np.nan]]), {}, ValueError, "kernel"),
    (np.zeros((3, 3)), np.ones((3, 3)), {"mode": "same"}, ValueError, "mode"),
    (np.zeros((3, 3)), np.ones((3, 3)), {"mode": 3}, TypeError, "mode"),
    (np.zeros((3, 3)), np.ones((3, 3)), {"cval": np.nan}, ValueError, "cval"),
    (np.zeros((3, 3)), np.ones((3, 3)), {"cval": "0"}, TypeError, "cval"),
])
def test_errors(image, kernel, kwargs, exc, words):
    for fn in (correlate, convolve):
        with pytest.raises(exc, match=words):
            fn(image, kernel, **kwargs)


def test_one_compiled_signature_per_kernel():
    """Compile time is part of the user's wait: every dtype, layout and mode reaches the
    kernels as the same types (float32 C-contiguous planes, int64 maps, Python scalars)."""
    import kernels.conv as kc
    rng = np.random.default_rng(7)
    for image in [rng.random((6, 5)), (rng.random((5, 6, 3)) * 255).astype(np.uint8),
                  rng.random((9, 9)).astype(np.float32)[::-2, ::3], np.ones((4, 4), bool)]:
        for mode in MODES:
            correlate(image, rng.standard_normal((3, 2)), mode=mode, cval=1)
            convolve(image, np.outer([1, 2], [3, 4, 5]), mode=mode)
    assert len(kc.correlate2d.signatures) == 1
    assert len(kc.correlate_separable.signatures) == 1
    assert len(kc.border_map.signatures) == 1
