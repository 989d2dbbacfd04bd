"""gaussian, sobel / prewitt / scharr, laplace, median: hand cases, SciPy/OpenCV agreement,
the sorting network, properties and errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cvcore.preprocess import gaussian, laplace, median, prewitt, scharr, sobel
from cvcore.preprocess import filters as F
from kernels.reference import conv as ref
from tests.conftest import load_test_image

ndi = pytest.importorskip("scipy.ndimage")

MODES = ["reflect", "mirror", "nearest", "constant", "wrap"]


def close(got, want, weight_sum, image, cval=0.0):
    """The promised accuracy: 1e-5 of sum|k| * max|image| (cval counts as an image value)."""
    scale = max(np.abs(image).max(), abs(cval), 1e-30)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5 * weight_sum * scale


# ---------------------------------------------------------------- Gaussian


def test_gaussian_kernel_follows_scipy_radius_rule():
    # radius = int(truncate * sigma + 0.5) (module docstring / scipy.ndimage.gaussian_filter)
    assert F.gaussian_kernel1d(2.0).size == 2 * 8 + 1
    assert F.gaussian_kernel1d(1.3, truncate=3.0).size == 2 * int(3.9 + 0.5) + 1
    assert F.DEFAULT_TRUNCATE == 4.0
    g = F.gaussian_kernel1d(1.0)
    assert abs(g.sum() - 1) < 1e-12 and np.all(g == g[::-1])


def test_gaussian_of_constant_is_constant():
    image = np.full((9, 7), 3.0)
    for mode in ["reflect", "mirror", "nearest", "wrap"]:
        np.testing.assert_allclose(gaussian(image, 1.5, mode=mode), 3.0, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_gaussian_matches_scipy(mode):
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 2), (20, 31)]:
        image = rng.random(shape).astype(np.float32)
        for sigma in [0.3, 1.0, 2.5, (1.0, 3.0)]:
            for truncate in [4.0, 2.0]:
                got = gaussian(image, sigma, truncate=truncate, mode=mode, cval=0.4)
                want = ndi.gaussian_filter(image.astype(np.float64), sigma, truncate=truncate,
                                           mode=mode, cval=0.4)
                close(got, want, 1.0, image, 0.4)


def test_gaussian_real_and_multichannel():
    image = load_test_image("roofs1.jpg", mode="rgb")
    got = gaussian(image, 2.0)
    want = ndi.gaussian_filter(image.astype(np.float64), (2.0, 2.0, 0.0))
    close(got, want, 1.0, image)


# ---------------------------------------------------------------- derivative filters


def test_sobel_of_ramp_by_hand():
    # A unit ramp along columns: [-1, 0, 1] gives 2, smoothing [1, 2, 1] multiplies by 4.
    ramp = np.tile(np.arange(6.0), (5, 1))
    assert np.all(sobel(ramp, axis=1)[:, 1:-1] == 8.0)
    assert np.all(sobel(ramp, axis=0) == 0.0)
    assert np.all(prewitt(ramp, axis=1)[:, 1:-1] == 6.0)
    assert np.all(scharr(ramp, axis=1)[:, 1:-1] == 32.0)      # 2 * (3 + 10 + 3)
    np.testing.assert_array_equal(sobel(ramp), np.abs(sobel(ramp, axis=1)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cval", [0.0, 0.6])
def test_gradients_match_scipy(mode, cval):
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (2, 5), (17, 12)]:
        image = rng.random(shape).astype(np.float32)
        for ours, theirs, wsum in [(sobel, ndi.sobel, 8), (prewitt, ndi.prewitt, 6)]:
            for axis in [0, 1]:
                got = ours(image, axis=axis, mode=mode, cval=cval)
                want = theirs(image.astype(np.float64), axis=axis, mode=mode, cval=cval)
                close(got, want, wsum, image, cval)
            mag = ours(image, mode=mode, cval=cval)
            want = np.hypot(theirs(image.astype(np.float64), 0, mode=mode, cval=cval),
                            theirs(image.astype(np.float64), 1, mode=mode, cval=cval))
            close(mag, want, wsum, image, cval)
        got = laplace(image, mode=mode, cval=cval)
        close(got, ndi.laplace(image.astype(np.float64), mode=mode, cval=cval), 8, image, cval)


def test_sobel_real_image():
    image = load_test_image("scene.pgm")
    for axis in [0, 1]:
        close(sobel(image, axis), ndi.sobel(image.astype(np.float64), axis), 8, image)


def test_scharr_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    image = load_test_image("book.pgm")
    np.testing.assert_allclose(scharr(image, axis=1, mode="mirror"),
                               cv2.Scharr(image, cv2.CV_32F, 1, 0), atol=1e-4)
    np.testing.assert_allclose(scharr(image, axis=0, mode="mirror"),
                               cv2.Scharr(image, cv2.CV_32F, 0, 1), atol=1e-4)


# ---------------------------------------------------------------- median


def test_batcher_network_sorts():
    rng = np.random.default_rng(2)
    for n in range(1, 34):
        pairs = F.batcher_pairs(n)
        for _ in range(5):
            x = rng.standard_normal(n)
            for a, b in pairs:
                if x[a] > x[b]:
                    x[a], x[b] = x[b], x[a]
            assert np.all(np.diff(x) >= 0)
        # 0-1 principle on all-but-one patterns catches a missing comparator cheaply
        for k in range(n):
            x = np.ones(n)
            x[k] = 0
            for a, b in pairs:
                if x[a] > x[b]:
                    x[a], x[b] = x[b], x[a]
            assert x[0] == 0


def test_selection_network_finds_rank():
    rng = np.random.default_rng(3)
    for n in [1, 2, 4, 9, 15, 25, 49]:
        rank = n // 2
        pairs = F.selection_network(n, rank)
        assert len(pairs) <= len(F.batcher_pairs(n))
        for _ in range(20):
            x = rng.standard_normal(n)
            for a, b in pairs:
                if x[a] > x[b]:
                    x[a], x[b] = x[b], x[a]
            assert x[rank] == np.sort(x)[rank] or n == 1


def test_presorted_median_network_selects_median():
    # The 5 x 5 network assumes sorted columns; on them it must give the median, ties included.
    steps, result = F.presorted_median_network(5)
    assert len(steps) == 82 and sum(a + b for _, _, a, b in steps) == 140
    rng = np.random.default_rng(5)
    for high in [2, 6, 1000]:                     # few distinct values: many ties
        x = rng.integers(0, high, size=(25, 4000)).astype(np.float32)
        slots = np.full((64, x.shape[1]), np.inf, np.float32)
        for v in range(5):
            slots[v * 8:v * 8 + 5] = np.sort(x[v * 5:v * 5 + 5], axis=0)
        for a, b, keep_min, keep_max in steps:
            lo, hi = np.minimum(slots[a], slots[b]), np.maximum(slots[a], slots[b])
            if keep_min:
                slots[a] = lo
            if keep_max:
                slots[b] = hi
        np.testing.assert_array_equal(slots[result], np.median(x, axis=0))


def test_median5x5_kernel_is_the_generated_network():
    # kernels.filters.median5x5 spells the network out (registers, no loop over pairs): its
    # lines must be exactly the ones presorted_median_network(5) gives.
    import inspect

    import kernels.filters as kf
    steps, result = F.presorted_median_network(5)

    def name(slot):
        return f"c{slot // 8}{slot % 8}"

    want = []
    for a, b, keep_min, keep_max in steps:
        A, B = name(a), name(b)
        if keep_min and keep_max:
            want.append(f"{A}, {B} = min({A}, {B}), max({A}, {B})")
        elif keep_min:
            want.append(f"{A} = min({A}, {B})")
        else:
            want.append(f"{B} = max({A}, {B})")
    lines = [ln.strip() for ln in inspect.getsource(kf.median5x5).splitlines()]
    start = lines.index(want[0])
    assert lines[start:start + len(want)] == want
    assert lines[start + len(want)] == f"dst[j] = {name(result)}"
    assert kf.MEDIAN5_RESULT == name(result)


def test_median5x5_ties_and_wide_rows_match_scipy():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 4, size=(37, 301)).astype(np.float32)    # ties everywhere
    for mode in MODES:
        np.testing.assert_array_equal(median(image, 5, mode=mode, cval=2.0),
                                      ndi.median_filter(image, 5, mode=mode, cval=2.0))


def test_median_by_hand():
    image = np.array([[1.0, 9.0, 2.0],
                      [8.0, 3.0, 7.0],
                      [4.0, 6.0, 5.0]])
    assert median(image, 3)[1, 1] == 5.0
    spike = np.zeros((5, 5))
    spike[2, 2] = 100.0
    assert np.all(median(spike, 3) == 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_median_matches_scipy_and_twin(mode):
    rng = np.random.default_rng(4)
    for shape in [(1, 1), (2, 3), (13, 10)]:
        image = rng.random(shape).astype(np.float32)
        for size in [1, 2, 3, (3, 5), (4, 2), 5]:
            got = median(image, size, mode=mode, cval=0.5)
            want = ndi.median_filter(image, size=size, mode=mode, cval=0.5)
            np.testing.assert_array_equal(got, want)
            pair = (size, size) if isinstance(size, int) else size
            np.testing.assert_array_equal(got, ref.median(image, pair, mode, 0.5))


@pytest.mark.parametrize("mode", MODES)
def test_median3x3_row_pairs_and_bands(mode):
    """The 3 x 3 kernel does output rows two at a time (the last of an odd count alone, its
    partner written to scratch) and carries column triples along the row: every height and
    width from 1 up, and any split into bands (odd and even starts and lengths), must equal
    SciPy exactly, ties (few distinct values) included."""
    from kernels.conv import border_map
    from kernels.filters import median3x3
    rng = np.random.default_rng(17)
    for H in range(1, 8):
        for W in (1, 2, 3, 5, 17, 40):
            image = rng.integers(0, 4, (H, W)).astype(np.float32)
            want = ndi.median_filter(image, 3, mode=mode, cval=1.5)
            np.testing.assert_array_equal(median(image, 3, mode=mode, cval=1.5), want)
    image = rng.random((23, 37)).astype(np.float32)
    want = ndi.median_filter(image, 3, mode=mode, cval=0.25)
    code = F.MODES[mode]
    rows, cols = border_map(23, 1, 1, code), border_map(37, 1, 1, code)
    for bounds in ([0, 23], [0, 1, 23], [0, 2, 5, 6, 9, 23], [0, 7, 8, 15, 22, 23]):
        out = np.full_like(image, np.nan)
        bad = np.zeros(23, np.uint8)
        for r0, r1 in zip(bounds[:-1], bounds[1:]):
            median3x3(image, image.view(np.uint32), rows, cols, 0.25, out, bad, r0, r1)
        np.testing.assert_array_equal(out, want)
        assert not bad.any()


def test_median_real_multichannel():
    image = load_test_image("spots.jpg", mode="rgb")
    got = median(image, 5)
    want = ndi.median_filter(image, size=(5, 5, 1))
    np.testing.assert_array_equal(got, want)


@settings(max_examples=30, deadline=None)
@given(image=hnp.arrays(st.sampled_from([np.uint8, np.int16, np.float64, np.bool_]),
                        st.tuples(st.integers(1, 10), st.integers(1, 10))),
       size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       mode=st.sampled_from(MODES), reverse=st.booleans())
def test_property_median_and_gaussian(image, size, mode, reverse):
    if image.dtype.kind == "f":
        image = np.nan_to_num(image, posinf=1e6, neginf=-1e6).clip(-1e6, 1e6)
    if reverse:
        image = image[::-1, ::-1]
    as32 = image.astype(np.float32)
    np.testing.assert_array_equal(median(image, size, mode=mode),
                                  ndi.median_filter(as32, size=size, mode=mode))
    got = gaussian(image, (size[0] / 3, size[1] / 4), mode=mode)
    want = ndi.gaussian_filter(as32.astype(np.float64), (size[0] / 3, size[1] / 4), mode=mode)
    assert np.abs(got - want).max() <= 1e-5 * max(np.abs(as32).max(), 1e-30)
    for axis in (0, 1):
        got = sobel(image, axis, mode=mode)
        want = ndi.sobel(as32.astype(np.float64), axis, mode=mode)
        assert np.abs(got - want).max() <= 8e-5 * max(np.abs(as32).max(), 1e-30)


@pytest.mark.parametrize("mode", MODES)
def test_magnitude_alone_equals_the_both_pass_bit_for_bit(mode):
    # sobel(axis=None) writes only the magnitude (GRADIENT_MAGNITUDE); Canny takes all three
    # outputs (GRADIENT_BOTH): the two must agree exactly.
    rng = np.random.default_rng(22)
    for shape in [(1, 1), (2, 7), (300, 257)]:
        image = (rng.random(shape) * 100).astype(np.float32)
        for smooth in (F.SOBEL_SMOOTH, F.SCHARR_SMOOTH):
            both = F.gradient_magnitude_plane(image, F.MODES[mode], 0.0, smooth)[2]
            alone = F.gradient_magnitude_only(image, F.MODES[mode], 0.0, smooth)
            np.testing.assert_array_equal(alone, both)


@pytest.mark.parametrize("mode", MODES)
def test_columns_kernel_equals_the_general_kernel_bit_for_bit(mode):
    # sobel/scharr/prewitt(axis=1) run gradient_columns3x3 (the smoothed values carried in
    # registers); Harris runs gradient3x3's GRADIENT_COLUMNS: the numbers must be the same, for
    # every tap set (contracted multiply-adds alike), border, width (1 and 2 included), in
    # bands, with the NaN/infinity flags.
    from kernels.filters import GRADIENT_COLUMNS, gradient3x3, gradient_columns3x3
    rng = np.random.default_rng(23)
    for shape in [(1, 1), (2, 2), (5, 1), (1, 9), (7, 3), (33, 130), (64, 257)]:
        image = (rng.random(shape) * 200 - 100).astype(np.float32)
        image.flat[rng.integers(image.size)] = 3e38            # squares and sums overflow
        bits = image.view(np.uint32)
        rows, cols = F._gradient_maps(image, F.MODES[mode])
        for smooth in (F.SOBEL_SMOOTH, F.SCHARR_SMOOTH, F.PREWITT_SMOOTH, (0.3, 0.4, 0.3)):
            want = np.empty_like(image)
            flags = np.zeros(shape[0], np.uint8)
            gradient3x3(image, bits, rows, cols, *smooth, GRADIENT_COLUMNS, want, want,
                        F._NO_PLANE, flags, 0, shape[0])
            got = np.full_like(image, np.nan)
            got_flags = np.zeros(shape[0], np.uint8)
            cuts = sorted({0, shape[0], shape[0] // 3, shape[0] // 2})
            for r0, r1 in zip(cuts[:-1], cuts[1:]):
                gradient_columns3x3(image, bits, rows, cols, *smooth, got, got_flags, r0, r1)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
            assert not got_flags.any()
        np.testing.assert_array_equal(F.gradient_plane(image, 1, F.MODES[mode], 0.0),
                                      F.gradient_plane(image, 1, F.MODES[mode], 0.0,
                                                       one_kernel=True))
    image = rng.random((9, 12)).astype(np.float32)
    image[4, 11] = np.inf
    flags = np.zeros(9, np.uint8)
    rows, cols = F._gradient_maps(image, 0)
    gradient_columns3x3(image, image.view(np.uint32), rows, cols, 1.0, 2.0, 1.0,
                        np.empty_like(image), flags, 0, 9)
    assert flags[0] == 1


def test_magnitude_of_huge_and_tiny_gradients():
    # float32 squares of 1e19 overflow and of 1e-25 vanish into the subnormals: such rows are
    # computed again in float64 (kernels.filters.MAGNITUDE_SQUARE_MAX / MIN); elsewhere the
    # float32 root is within an ulp or so of numpy.hypot.
    rng = np.random.default_rng(23)
    base = rng.random((40, 70))
    for scale in (1e19, 3e37, 1e-25, 1e-40, 1.0):
        image = (base * scale).astype(np.float32)
        image[5] = (rng.random(70) * 1e30).astype(np.float32)   # a row of extremes nearby
        got = sobel(image)
        want = np.hypot(ndi.sobel(image.astype(np.float64), 0),
                        ndi.sobel(image.astype(np.float64), 1))
        assert np.isfinite(got).all() == np.isfinite(want.astype(np.float32)).all()
        ok = np.isfinite(want.astype(np.float32))
        np.testing.assert_allclose(got[ok], want[ok], rtol=2e-6, atol=1e-44)


def test_float32_nan_and_infinity_are_refused_by_name():
    # float32 input is checked by kernels.finite.all_finite_bits (the geometry functions'
    # kernel, tested against np.isfinite in test_preprocess_geometry); the error still names
    # the problem, whichever filter is called.
    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sobel(bad)
    bad[1, 2] = -np.inf
    with pytest.raises(ValueError, match="infinity"):
        median(bad, 3)


@pytest.mark.parametrize("call", [lambda x: sobel(x, 1), lambda x: sobel(x),
                                  lambda x: scharr(x, 1, mode="wrap"),
                                  lambda x: prewitt(x, None, mode="constant"),
                                  lambda x: sobel(x, 0), lambda x: sobel(x, 1, "constant", 1.0),
                                  lambda x: median(x, 3), lambda x: median(x, 5, "constant"),
                                  lambda x: median(x, (3, 2))],
                         ids=["sobel1", "magnitude", "scharr-wrap", "prewitt-constant",
                              "sobel0", "constant-cval", "median3", "median5", "median3x2"])
def test_nan_and_infinity_refused_anywhere(call):
    # The gradient and 3x3 median kernels test each image row as they read it
    # (kernels/filters.py, FLOAT32_EXPONENT) instead of a pass over the image first: wherever
    # the bad value sits (first/last row or column, a band's first or last row, any channel)
    # it is refused.
    rng = np.random.default_rng(21)
    for shape in [(1, 1), (3, 1), (1, 4), (300, 301), (260, 257, 3)]:
        for value, word in [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")]:
            H, W = shape[:2]
            for i, j in {(0, 0), (H - 1, W - 1), (H // 2, 0), (H // 4, W - 1), (H // 2, W // 2)}:
                image = rng.random(shape).astype(np.float32)
                image[(i, j, 2) if len(shape) == 3 else (i, j)] = value
                with pytest.raises(ValueError, match=word):
                    call(image)
            clean = rng.random(shape).astype(np.float32)
            assert np.isfinite(call(clean)).all()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("call, exc, words", [
    (lambda: gaussian(np.zeros((4, 4)), 0), ValueError, "sigma"),
    (lambda: gaussian(np.zeros((4, 4)), -1.0), ValueError, "sigma"),
    (lambda: gaussian(np.zeros((4, 4)), (1.0, 0.0)), ValueError, "sigma"),
    (lambda: gaussian(np.zeros((4, 4)), (1.0, 2.0, 3.0)), TypeError, "sigma"),
    (lambda: gaussian(np.zeros((4, 4)), np.nan), ValueError, "sigma"),
    (lambda: gaussian(np.zeros((4, 4)), 1.0, truncate=0), ValueError, "truncate"),
    (lambda: gaussian(np.zeros(4), 1.0), ValueError, "dimensions"),
    (lambda: gaussian(np.zeros((0, 3)), 1.0), ValueError, "empty"),
    (lambda: gaussian(np.full((3, 3), np.nan), 1.0), ValueError, "NaN"),
    (lambda: sobel(np.zeros((4, 4)), axis=2), ValueError, "axis"),
    (lambda: sobel(np.zeros((4, 4)), axis=True), ValueError, "axis"),
    (lambda: sobel(np.zeros((4, 4)), mode="edge"), ValueError, "mode"),
    (lambda: laplace(np.array([[np.inf]])), ValueError, "infinity"),
    (lambda: median(np.zeros((4, 4)), 0), ValueError, "size"),
    (lambda: median(np.zeros((4, 4)), 2.5), TypeError, "size"),
    (lambda: median(np.zeros((4, 4), complex), 3), TypeError, "complex"),
])
def test_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
