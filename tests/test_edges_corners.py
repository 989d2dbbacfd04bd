"""canny, harris, shi_tomasi, corner_peaks: toy cases, twins, scikit-image agreement, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cvcore.features import canny, corner_peaks, harris, shi_tomasi
from kernels.reference import edges as ref
from tests.conftest import TEST_IMAGES, load_test_image

CANNY_PARAMS = [
    dict(),
    dict(sigma=2.0),
    dict(sigma=1.5, low_threshold=0.05, high_threshold=0.15),
    dict(sigma=1.0, low_threshold=0.5, high_threshold=0.9, use_quantiles=True),
]


def square(size=32, lo=8, hi=24):
    image = np.zeros((size, size), np.float32)
    image[lo:hi, lo:hi] = 1.0
    return image


# ---------------------------------------------------------------- canny


def test_canny_square_outline():
    edges = canny(square())
    assert edges.dtype == bool and edges.shape == (32, 32)
    rows, cols = np.nonzero(edges)
    # The step lies between pixels 7|8 and 23|24: edges within one pixel of it, a closed ring.
    assert set(np.unique(rows)) <= set(range(6, 26)) and set(np.unique(cols)) <= set(range(6, 26))
    assert edges[7:9, 12:20].any(axis=0).all() and edges[12:20, 23:25].any(axis=1).all()
    assert not edges[11:21, 11:21].any()          # nothing inside the flat interior
    assert not canny(np.ones((20, 20))).any()      # a flat image has no edges


def test_canny_defaults_are_documented_values():
    image = load_test_image("spots.jpg")
    np.testing.assert_array_equal(canny(image), canny(image, 1.0, 0.1, 0.2))


def test_canny_integer_images_use_dtype_scale():
    image = (square() * 200).astype(np.uint8)
    np.testing.assert_array_equal(canny(image, 1.0, 25.5, 51.0),
                                  canny(image.astype(np.float32) / 255, 1.0, 0.1, 0.2))


@pytest.mark.parametrize("name", TEST_IMAGES)
def test_canny_matches_skimage(name):
    skf = pytest.importorskip("skimage.feature")
    image = load_test_image(name)
    for params in CANNY_PARAMS:
        agree = (canny(image, **params) == skf.canny(image, **params)).mean()
        assert agree >= 0.99, (params, agree)


def test_canny_bleed_weight_is_the_blur_of_ones_bit_for_bit():
    # The maskless bleed-over weight is built from a small blurred image of ones; it must equal
    # scikit-image's definition (the blur of the full image of ones) exactly, or edges move.
    from cvcore.features.edges import _bleed
    from cvcore.preprocess.filters import DEFAULT_TRUNCATE, MODES, gaussian_plane
    for shape in [(478, 640), (5, 7), (20, 300), (33, 17), (300, 2)]:
        for sigma in (0.5, 1.0, 1.7, 3.0, 5.0):
            full = gaussian_plane(np.ones(shape, np.float32), sigma, sigma, DEFAULT_TRUNCATE,
                                  MODES["constant"], 0.0) + np.finfo(np.float32).eps
            np.testing.assert_array_equal(_bleed(shape, None, sigma), full)


def test_canny_uint8_scaling_pass_equals_the_float_image_bit_for_bit():
    # canny(uint8) scales in one banded pass (kernels.edges.scale_rows)
    # instead of numpy's cast and division: the same float32 numbers, so the same edges as
    # the float image with the thresholds divided by 255, on every pixel.
    rng = np.random.default_rng(7)
    u8 = (rng.random((70, 90)) * 255).astype(np.uint8)
    u8[20:50, 30:60] //= 3
    as_float = u8.astype(np.float32) / np.float32(255)
    for sigma, low, high in ((1.0, 50, 100), (2.0, 10, 30)):
        np.testing.assert_array_equal(canny(u8, sigma, low, high),
                                      canny(as_float, sigma, low / 255, high / 255))
    mask = rng.random(u8.shape) > 0.1
    np.testing.assert_array_equal(canny(u8, 1.0, 50, 100, mask=mask),
                                  canny(as_float, 1.0, 50 / 255, 100 / 255, mask=mask))


def test_canny_workspace_reused_across_calls_shapes_and_threads():
    # canny keeps its scratch images per thread between calls (cvcore.features.edges
    # ._workspace, and the Gaussian's set-up per sigma): a result must not alias them, a call
    # with another shape, sigma or mask must not see a previous call's numbers, and threads
    # must not share them.
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(11)
    images = [(rng.random(shape) * 255).astype(np.uint8)
              for shape in ((40, 50), (40, 50), (33, 61))]
    images[1][10:30, 10:40] = 200
    first = [canny(im, 1.0, 30, 80).copy() for im in images]
    again = [canny(im, 1.0, 30, 80) for im in images[::-1]][::-1]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    mask = rng.random(images[0].shape) > 0.2
    masked = canny(images[0], 1.0, 30, 80, mask=mask)
    np.testing.assert_array_equal(canny(images[0], 1.0, 30, 80), first[0])
    assert (masked <= mask).all()
    # the smoothing set-up kept per sigma (_smoothing): sigmas alternated, more than it keeps
    sigmas = [0.7 + 0.3 * k for k in range(10)]
    once = [canny(images[2], s, 30, 80) for s in sigmas]
    for s, a in zip(sigmas[::-1], once[::-1]):
        np.testing.assert_array_equal(canny(images[2], s, 30, 80), a)
    with ThreadPoolExecutor(3) as pool:
        for _ in range(5):
            results = list(pool.map(lambda im: canny(im, 1.0, 30, 80), images * 2))
            for a, b in zip(results, first * 2):
                np.testing.assert_array_equal(a, b)


def test_scale_and_divide_rows_match_twins():
    from kernels.edges import divide_rows, scale_rows
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (13, 17)).astype(np.uint8)
    image[0, :2] = 0, 255
    out = np.full(image.shape, np.nan, np.float32)
    scale_rows(image, 255.0, out, 0, 6)
    scale_rows(image, 255.0, out, 6, 13)            # two bands: the whole image
    np.testing.assert_array_equal(out, ref.scale_rows(image, 255.0))
    plane = rng.random((13, 17)).astype(np.float32)
    divisors = (rng.random((4, 17)) + 0.5).astype(np.float32)
    row_of = rng.integers(0, 4, 13)
    done = plane.copy()
    divide_rows(done, divisors, row_of, 0, 13)
    np.testing.assert_array_equal(done, ref.divide_rows(plane, divisors, row_of))


def test_canny_equals_skimage_exactly_on_the_shipped_photo():
    skf = pytest.importorskip("skimage.feature")
    from pathlib import Path

    import cvcore
    image = cvcore.to_float(cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg",
                                          mode="gray"))
    for sigma in (1.0, 3.0):
        np.testing.assert_array_equal(canny(image, sigma=sigma), skf.canny(image, sigma=sigma))


def test_canny_matches_skimage_mask_uint8_random():
    skf = pytest.importorskip("skimage.feature")
    image = load_test_image("roofs2.jpg")
    mask = np.zeros(image.shape, bool)
    mask[20:-40, 50:-10] = True
    assert (canny(image, mask=mask) == skf.canny(image, mask=mask)).mean() >= 0.99
    u8 = (image * 255).astype(np.uint8)
    assert (canny(u8, 2.0, 10, 30) == skf.canny(u8, 2.0, 10, 30)).mean() >= 0.99
    rng = np.random.default_rng(0)
    noise = rng.random((64, 80)).astype(np.float32)
    for params in CANNY_PARAMS:
        assert (canny(noise, **params) == skf.canny(noise, **params)).mean() >= 0.99


def test_nonmax_kernel_matches_twin():
    from kernels.edges import NONE, STRONG, WEAK, nonmax_suppression
    rng = np.random.default_rng(1)
    for _ in range(3):
        gr = rng.standard_normal((20, 24)).astype(np.float32)
        gc = rng.standard_normal((20, 24)).astype(np.float32)
        gc[3, :] = 0.0                      # exercise the axis-aligned and 45-degree cases
        gc[4, :] = gr[4, :]
        gc[5, :] = -gr[5, :]
        gr[6, :] = 0.0
        mag = np.hypot(gr, gc).astype(np.float32)
        mask = np.zeros(mag.shape, np.uint8)
        mask[1:-1, 1:-1] = 1
        state = np.empty(mag.shape, np.uint8)
        nonmax_suppression(gr, gc, mag, mask, 0.3, 1.5, state, 0, 20)
        want = ref.nonmax_suppression(gr, gc, mag, mask, 0.3).astype(np.float32)
        banded = np.full(mag.shape, 9, np.uint8)       # any split into bands: the same map
        for r0, r1 in [(0, 1), (1, 7), (7, 19), (19, 20)]:
            nonmax_suppression(gr, gc, mag, mask, 0.3, 1.5, banded, r0, r1)
        np.testing.assert_array_equal(banded, state)
        assert set(np.unique(state)) <= {NONE, WEAK, STRONG}
        assert ((state != NONE) == (want > 0)).mean() >= 0.999
        assert ((state == STRONG) == (want >= 1.5)).mean() >= 0.999


def test_nonmax_kernel_tiny_images_are_all_frame():
    from kernels.edges import NONE, nonmax_suppression
    for shape in [(1, 1), (2, 7), (7, 2), (1, 9)]:
        ones = np.ones(shape, np.float32)
        state = np.full(shape, 7, np.uint8)
        nonmax_suppression(ones, ones, ones, np.ones(shape, np.uint8), 0.1, 0.2, state, 0,
                           shape[0])
        assert (state == NONE).all()


def test_hysteresis_kernel_matches_twin():
    from kernels.edges import EDGE, STRONG, WEAK, hysteresis
    rng = np.random.default_rng(2)
    for cut, high in [(0.55, 0.97), (0.3, 0.9), (0.8, 0.99)]:
        cand = rng.random((30, 30)).astype(np.float32)
        cand[cand < cut] = 0.0
        cand[[0, -1], :] = 0.0              # the kernel's precondition: no candidate on the frame
        cand[:, [0, -1]] = 0.0
        state = np.where(cand >= high, STRONG, np.where(cand > 0, WEAK, 0)).astype(np.uint8)
        want = ref.hysteresis(cand, high)
        one = state.copy()
        hysteresis(one, np.zeros(0, np.uint8), 0, one.shape[0])
        np.testing.assert_array_equal(one == EDGE, want)
        # in bands (each flood kept in its rows), then from the seams: the same map
        for cuts in ([0, 1, 30], [0, 15, 16, 30], [0, 2, 7, 8, 20, 29, 30], list(range(31))):
            banded = state.copy()
            starts = np.zeros(30, np.uint8)
            for r0, r1 in zip(cuts[:-1], cuts[1:]):
                hysteresis(banded, starts, r0, r1)
            assert starts[cuts[:-1]].all() and starts.sum() == len(cuts) - 1
            hysteresis(banded, starts, -1, -1)
            np.testing.assert_array_equal(banded, one)


def test_hysteresis_bands_follow_paths_across_many_seams():
    """A one-pixel-wide path that crosses every band boundary twice, with its only
    strong pixel at the far end: only the seam pass can carry the edge back."""
    from kernels.edges import EDGE, STRONG, WEAK, hysteresis
    H, W = 24, 12
    state = np.zeros((H, W), np.uint8)
    for i in range(1, H - 1):                    # down column 1, then zig-zag columns 3..9
        state[i, 1] = WEAK
    for j in range(1, 10):
        state[H - 2, j] = WEAK
    for i in range(1, H - 1):
        state[i, 9] = WEAK if i > 1 else STRONG
    state[5:9, 5] = WEAK                          # an island with no strong pixel: stays WEAK
    one = state.copy()
    hysteresis(one, np.zeros(0, np.uint8), 0, H)
    assert (one[state > 0] == EDGE).sum() == (state > 0).sum() - 4
    for step in (1, 2, 3, 5, 7):
        banded = state.copy()
        starts = np.zeros(H, np.uint8)
        for r0 in range(0, H, step):
            hysteresis(banded, starts, r0, min(H, r0 + step))
        hysteresis(banded, starts, -1, -1)
        np.testing.assert_array_equal(banded, one)


@settings(max_examples=25, deadline=None)
@given(image=hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_]),
                        st.tuples(st.integers(1, 12), st.integers(1, 12))),
       sigma=st.floats(0.3, 3.0), transpose=st.booleans())
def test_property_canny_never_crashes(image, sigma, transpose):
    if image.dtype.kind == "f":
        image = np.nan_to_num(image).clip(-10, 10)
    if transpose:
        image = image.T
    edges = canny(image, sigma)
    assert edges.shape == image.shape and edges.dtype == bool
    assert not edges[0].any() and not edges[:, 0].any()      # the frame is never an edge


@pytest.mark.parametrize("call, exc, words", [
    (lambda: canny(np.zeros((5, 5, 3))), ValueError, "dimensions"),
    (lambda: canny(np.zeros((0, 5))), ValueError, "empty"),
    (lambda: canny(np.full((5, 5), np.nan)), ValueError, "NaN"),
    (lambda: canny(np.zeros((5, 5), np.int64)), TypeError, "64-bit"),
    (lambda: canny(np.zeros((5, 5)), sigma=0), ValueError, "sigma"),
    (lambda: canny(np.zeros((5, 5)), low_threshold=0.3, high_threshold=0.2), ValueError, "low"),
    (lambda: canny(np.zeros((5, 5)), 1, 0.1, 1.5, use_quantiles=True), ValueError, "quantile"),
    (lambda: canny(np.zeros((5, 5)), low_threshold=-1), ValueError, "low_threshold"),
    (lambda: canny(np.zeros((5, 5)), mask=np.ones((4, 5), bool)), ValueError, "mask"),
])
def test_canny_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


# ---------------------------------------------------------------- corners


def test_harris_square_corners():
    response = harris(square(40, 10, 30), sigma=1.5)
    peaks = corner_peaks(response, min_distance=5, threshold_rel=0.1)
    found = sorted(map(tuple, peaks.tolist()))
    assert len(found) == 4
    for (r, c), (er, ec) in zip(found, [(10, 10), (10, 29), (29, 10), (29, 29)]):
        assert abs(r - er) <= 1 and abs(c - ec) <= 1
    # Along an edge the response is negative (one large eigenvalue), flat areas give 0.
    assert response[20, 10] < 0 and response[20, 20] == 0


@pytest.mark.parametrize("name", ["box.pgm", "roofs1.jpg", "spots.jpg"])
def test_harris_and_shi_tomasi_match_skimage(name):
    skf = pytest.importorskip("skimage.feature")
    image = load_test_image(name)
    for params in [dict(), dict(sigma=2.0, k=0.04), dict(method="eps", eps=1e-6)]:
        got = harris(image, **params)
        want = skf.corner_harris(image, **params)
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    got = shi_tomasi(image, 1.5)
    want = skf.corner_shi_tomasi(image, 1.5)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("name", ["scene.pgm", "roofs2.jpg"])
def test_corner_peaks_match_skimage(name):
    skf = pytest.importorskip("skimage.feature")
    image = load_test_image(name)
    response = skf.corner_harris(image)
    for params in [dict(), dict(min_distance=5, threshold_rel=0.01),
                   dict(min_distance=3, threshold_rel=0.05, exclude_border=False),
                   dict(min_distance=2, threshold_abs=1e-4, num_peaks=50)]:
        np.testing.assert_array_equal(corner_peaks(response, **params),
                                      skf.corner_peaks(response, **params))
    # On our own response (float rounding differs slightly) by a metric: the same peaks.
    ours = corner_peaks(harris(image), min_distance=5, threshold_rel=0.01)
    theirs = skf.corner_peaks(response, min_distance=5, threshold_rel=0.01)
    same = len(set(map(tuple, ours.tolist())) & set(map(tuple, theirs.tolist())))
    assert same >= 0.98 * max(len(theirs), 1)


def test_greedy_spacing_matches_twin():
    from kernels.corners import greedy_spacing
    rng = np.random.default_rng(3)
    coords = rng.integers(0, 25, (200, 2)).astype(np.int64)
    for reach in [1, 2, 4]:
        keep = np.empty(len(coords), np.uint8)
        greedy_spacing(coords, np.zeros((25, 25), np.uint8), reach, keep)
        np.testing.assert_array_equal(keep.astype(bool), ref.greedy_spacing(coords, reach))


def test_corner_peaks_flat_and_tiny():
    assert corner_peaks(np.zeros((10, 10))).shape == (0, 2)
    assert corner_peaks(np.ones((1, 1)), exclude_border=False).shape == (0, 2)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: harris(np.zeros((5, 5)), method="x"), ValueError, "method"),
    (lambda: harris(np.zeros((5, 5)), sigma=-1), ValueError, "sigma"),
    (lambda: harris(np.zeros((5, 5)), method="eps", eps=0), ValueError, "eps"),
    (lambda: harris(np.zeros(5)), ValueError, "dimensions"),
    (lambda: shi_tomasi(np.full((5, 5), np.inf)), ValueError, "infinity"),
    (lambda: corner_peaks(np.zeros((5, 5)), min_distance=0), ValueError, "min_distance"),
    (lambda: corner_peaks(np.zeros((5, 5)), exclude_border=-1), ValueError, "exclude_border"),
    (lambda: corner_peaks(np.zeros((5, 5)), threshold_abs=np.nan), ValueError, "threshold_abs"),
    (lambda: corner_peaks(np.zeros((0, 5))), ValueError, "empty"),
])
def test_corner_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_harris_default_k_is_documented_value():
    image = load_test_image("spots.jpg")
    from cvcore.features.corners import HARRIS_K
    assert HARRIS_K == 0.05
    np.testing.assert_array_equal(harris(image), harris(image, k=0.05))


def test_max_filter_kernel_matches_scipy():
    ndi = pytest.importorskip("scipy.ndimage")
    from kernels.corners import max_cols_nearest, max_rows_nearest
    rng = np.random.default_rng(4)
    for shape, radius in [((1, 1), 2), ((3, 7), 1), ((20, 15), 3), ((9, 4), 6), ((5, 30), 7)]:
        image = rng.random(shape).astype(np.float32)
        rowmax = np.empty_like(image)
        out = np.empty_like(image)
        H = shape[0]
        for r0, r1 in ((0, H // 2), (H // 2, H)):          # two bands of rows, as two threads
            max_rows_nearest(image, radius, rowmax, r0, r1)
        np.testing.assert_array_equal(rowmax, ndi.maximum_filter1d(image, 2 * radius + 1, axis=1,
                                                                   mode="nearest"))
        for r0, r1 in ((0, H // 3), (H // 3, H)):
            max_cols_nearest(rowmax, radius, out, r0, r1)
        np.testing.assert_array_equal(out, ndi.maximum_filter(image, 2 * radius + 1,
                                                              mode="nearest"))


@settings(max_examples=20, deadline=None)
@given(image=hnp.arrays(st.sampled_from([np.uint8, np.float64, np.bool_]),
                        st.tuples(st.integers(1, 14), st.integers(1, 14))),
       min_distance=st.integers(1, 4), sigma=st.floats(0.5, 2.0))
def test_property_corners_never_crash(image, min_distance, sigma):
    if image.dtype.kind == "f":
        image = np.nan_to_num(image).clip(-5, 5)
    response = harris(image, sigma=sigma)
    assert response.shape == image.shape and response.dtype == np.float32
    assert shi_tomasi(image, sigma).shape == image.shape
    peaks = corner_peaks(response, min_distance=min_distance)
    assert peaks.ndim == 2 and peaks.shape[1] == 2
    if len(peaks):
        assert peaks.min() >= min_distance                         # the border is excluded
        assert (peaks[:, 0] < image.shape[0] - min_distance).all()
        d = np.abs(peaks[:, None, :] - peaks[None, :, :]).max(axis=2)
        assert (d[~np.eye(len(peaks), dtype=bool)] > min_distance).all()
