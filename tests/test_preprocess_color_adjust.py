"""Tests of cvcore.preprocess colour conversion and intensity adjustment."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from cvcore import preprocess as pp
from cvcore.io.images import to_uint8
from cvcore.preprocess.adjust import (CLAHE_CLIP_LIMIT, CLAHE_TILE_GRID, _mirror_indices,
                                      _pad_reflect101)
from cvcore.preprocess.color import RGB2GRAY_WEIGHTS
from kernels.reference import histogram as ref_hist
from tests.conftest import load_test_image

GRAY_IMAGES = ["box.pgm", "scene.pgm", "roofs1.jpg"]


# ----------------------------------------------------------------------------- colour
def test_rgb2gray_hand_values():
    rgb = np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]]])
    np.testing.assert_allclose(pp.rgb2gray(rgb), [[0.2125, 0.7154, 0.0721, 1.0]], atol=1e-7)
    # uint8 is mapped to 0..1 first: 255 red -> 0.2125
    u8 = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(pp.rgb2gray(u8), [[0.2125]], atol=1e-7)
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 0.3)], axis=2)   # alpha ignored
    np.testing.assert_array_equal(pp.rgb2gray(rgba), pp.rgb2gray(rgb))
    assert pp.rgb2gray(rgb).dtype == np.float32


def test_rgb2gray_weights_are_scikit_images():
    colorconv = pytest.importorskip("skimage.color.colorconv")
    # the constants in scikit-image's source: read them off a unit basis
    np.testing.assert_allclose(colorconv.rgb2gray(np.eye(3)[None]), RGB2GRAY_WEIGHTS[None],
                               atol=1e-7)


@pytest.mark.parametrize("name", ["roofs1.jpg", "spots.jpg"])
def test_rgb2gray_agrees_with_skimage(name):
    color = pytest.importorskip("skimage.color")
    rgb = to_uint8(load_test_image(name, mode="rgb"))
    np.testing.assert_allclose(pp.rgb2gray(rgb), color.rgb2gray(rgb), atol=1e-6)


def test_gray2rgb():
    g = np.arange(6, dtype=np.uint16).reshape(2, 3)
    out = pp.gray2rgb(g)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint16
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)
    np.testing.assert_array_equal(pp.gray2rgb(g[:, :, None]), out)
    np.testing.assert_allclose(pp.rgb2gray(pp.gray2rgb(g.astype(np.float32) / 5)),
                               g / 5, atol=1e-6)   # the weights sum to 1


def test_color_rejects_bad_input():
    with pytest.raises(ValueError, match="channels"):
        pp.rgb2gray(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="dimensions"):
        pp.rgb2gray(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        pp.rgb2gray(np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="empty"):
        pp.rgb2gray(np.zeros((0, 2, 3)))
    with pytest.raises(TypeError):
        pp.rgb2gray(np.zeros((2, 2, 3), np.int32))
    with pytest.raises(ValueError, match="grey"):
        pp.gray2rgb(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        pp.gray2rgb(np.zeros(4))


# ----------------------------------------------------------------------------- point operations
def test_brightness_and_contrast_hand_values():
    x = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    np.testing.assert_allclose(pp.adjust_brightness(x, 2.0), [[0, 0.5], [1.0, 1.0]])
    np.testing.assert_array_equal(pp.adjust_brightness(x, 1.0), x)
    np.testing.assert_array_equal(pp.adjust_brightness(x, 0.0), np.zeros_like(x))
    # mean 0.4375; factor 0.5 -> 0.4375 + 0.5 (x - 0.4375)
    np.testing.assert_allclose(pp.adjust_contrast(x, 0.5),
                               [[0.21875, 0.34375], [0.46875, 0.71875]], atol=1e-7)
    np.testing.assert_allclose(pp.adjust_contrast(x, 0.0), np.full((2, 2), 0.4375))
    u8 = np.array([[10, 100, 200]], np.uint8)
    out = pp.adjust_brightness(u8, 1.5)                 # 15, 150, 300 -> clipped 255
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[15, 150, 255]])
    np.testing.assert_array_equal(pp.adjust_brightness(np.array([[3]], np.uint8), 0.5), [[2]])
    u16 = np.array([[1000, 60000]], np.uint16)
    np.testing.assert_array_equal(pp.adjust_brightness(u16, 1.1), [[1100, 65535]])


def test_contrast_uses_luminance_mean_for_colour():
    rgb = np.zeros((1, 2, 3), np.float32)
    rgb[0, 0] = [1.0, 0.0, 0.0]            # luminance 0.2125, the other pixel 0
    m = 0.2125 / 2
    np.testing.assert_allclose(pp.adjust_contrast(rgb, 0.0), np.full((1, 2, 3), m), atol=1e-7)


def test_gamma_hand_values_and_skimage():
    x = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_allclose(pp.adjust_gamma(x, 2.0), [[0, 0.0625, 1]])
    np.testing.assert_allclose(pp.adjust_gamma(x, 0.5, gain=2.0), [[0, 1.0, 2.0]])  # not clipped
    exposure = pytest.importorskip("skimage.exposure")
    img = to_uint8(load_test_image("scene.pgm"))
    for gamma, gain in [(0.5, 1.0), (2.2, 1.0), (1.0, 1.3), (0.0, 1.0)]:
        np.testing.assert_array_equal(pp.adjust_gamma(img, gamma, gain),
                                      exposure.adjust_gamma(img, gamma, gain))
        f = img / 255.0
        np.testing.assert_allclose(pp.adjust_gamma(f, gamma, gain),
                                   exposure.adjust_gamma(f, gamma, gain), rtol=1e-6, atol=1e-7)
    u16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    ref = exposure.adjust_gamma(u16, 0.7)                 # scikit-image truncates
    assert np.abs(pp.adjust_gamma(u16, 0.7).astype(int) - ref).max() <= 1


@pytest.mark.parametrize("fn, args", [(pp.adjust_brightness, (1.2,)),
                                      (pp.adjust_contrast, (1.2,)),
                                      (pp.adjust_gamma, (1.2,))])
def test_point_ops_reject_bad_input(fn, args):
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([[0.1, np.nan]]), *args)
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 3)), *args)
    with pytest.raises(ValueError, match="dimensions"):
        fn(np.zeros(3), *args)
    with pytest.raises(TypeError):
        fn(np.zeros((2, 2), np.int32), *args)
    with pytest.raises(TypeError):
        fn(np.zeros((2, 2), np.uint32), *args)
    with pytest.raises(ValueError, match="non-negative"):
        fn(np.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="finite"):
        fn(np.zeros((2, 2)), float("nan"))


def test_gamma_rejects_negative_image():
    with pytest.raises(ValueError, match="negative"):
        pp.adjust_gamma(np.array([[-0.1, 0.2]]), 2.0)


# ----------------------------------------------------------------------------- equalize_hist
def test_equalize_hist_hand_worked():
    # uint8 levels 10, 10, 20, 30: one bin per level from 10 to 30; cdf at 10 = 2/4, 20 = 3/4
    x = np.array([[10, 10], [20, 30]], np.uint8)
    np.testing.assert_allclose(pp.equalize_hist(x), [[0.5, 0.5], [0.75, 1.0]])
    # float, 2 bins over [0, 1]: centres 0.25, 0.75; counts (2, 2) -> cdf (0.5, 1.0)
    f = np.array([[0.0, 0.1], [0.9, 1.0]])
    out = pp.equalize_hist(f, nbins=2)
    np.testing.assert_allclose(out, [[0.5, 0.5], [1.0, 1.0]])     # np.interp clamps outside
    # a constant float image: the range widens to [0, 1] (as np.histogram does), 0.5 falls in
    # bin 128 and sits half-way between the centres of bins 127 (cdf 0) and 128 (cdf 1)
    np.testing.assert_allclose(pp.equalize_hist(np.array([[0.5, 0.5]])), [[0.5, 0.5]])
    np.testing.assert_allclose(pp.equalize_hist(np.array([[7, 7]], np.uint8)), [[1.0, 1.0]])


@pytest.mark.parametrize("name", GRAY_IMAGES)
def test_equalize_hist_agrees_with_skimage(name):
    exposure = pytest.importorskip("skimage.exposure")
    f32 = load_test_image(name)
    u8 = to_uint8(f32)
    np.testing.assert_allclose(pp.equalize_hist(u8), exposure.equalize_hist(u8), atol=1e-6)
    f64 = u8 / 255.0
    np.testing.assert_allclose(pp.equalize_hist(f64), exposure.equalize_hist(f64), atol=1e-6)
    np.testing.assert_allclose(pp.equalize_hist(f64, nbins=37),
                               exposure.equalize_hist(f64, nbins=37), atol=1e-6)
    # float32: scikit-image bins in float32, cvcore in float64; a value exactly on an edge may
    # land in the neighbouring bin, which moves the cdf by a count of 1 / N
    np.testing.assert_allclose(pp.equalize_hist(f32), exposure.equalize_hist(f32), atol=1e-4)


def test_equalize_hist_random_agrees_with_skimage(rng):
    exposure = pytest.importorskip("skimage.exposure")
    x = rng.normal(size=(37, 23)) ** 3
    np.testing.assert_allclose(pp.equalize_hist(x), exposure.equalize_hist(x), atol=1e-6)
    u16 = rng.integers(0, 65536, size=(20, 20)).astype(np.uint16)
    np.testing.assert_allclose(pp.equalize_hist(u16), exposure.equalize_hist(u16), atol=1e-6)


def test_equalize_hist_histogram_kernel_matches_numpy(rng):
    from kernels.histogram import histogram_equal_bins
    for _ in range(20):
        values = rng.normal(size=rng.integers(1, 300)) * 10 ** rng.uniform(-3, 3)
        nbins = int(rng.integers(1, 50))
        ref, edges = np.histogram(values, bins=nbins)
        counts = np.zeros(nbins, np.int64)
        histogram_equal_bins(values, edges, counts)
        np.testing.assert_array_equal(counts, ref)


# ----------------------------------------------------------------------------- CLAHE
def test_clahe_clip_hand_worked():
    hist = np.array([10, 0, 0, 2] + [0] * 4)
    # limit 4: excess 6, 6 // 8 = 0 to each, remainder 6 at step 8 // 6 = 1 -> bins 0..5
    np.testing.assert_array_equal(ref_hist.clip_histogram(hist, 4), [5, 1, 1, 3, 1, 1, 0, 0])


def test_mirror_padding():
    np.testing.assert_array_equal(_mirror_indices(4, 5), [0, 1, 2, 3, 2, 1, 0, 1, 2])
    np.testing.assert_array_equal(_mirror_indices(1, 3), [0, 0, 0, 0])
    x = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(_pad_reflect101(x, 1, 2),
                                  [[0, 1, 2, 1, 0], [3, 4, 5, 4, 3], [0, 1, 2, 1, 0]])


def test_clahe_flat_image_hand_worked():
    # 4x4 image, every pixel 7, one tile, clip_limit 1: limit = max(int(1 * 16 / 256), 1) = 1.
    # hist[7] = 16 is cut to 1, excess 15; 15 // 256 = 0 to every bin, then the 15 leftovers one
    # each at step 256 // 15 = 17: bins 0, 17, 34, ... So cdf(7) = 1 (bin 0) + 1 (bin 7) = 2 and
    # the table gives rint(2 * 255 / 16) = rint(31.875) = 32 for every pixel.
    x = np.full((4, 4), 7, np.uint8)
    np.testing.assert_array_equal(to_uint8(pp.equalize_adapthist(x, 1.0, 1)), np.full((4, 4), 32))
    np.testing.assert_array_equal(ref_hist.clahe(x, x, 1, 1, 1), np.full((4, 4), 32))


@pytest.mark.parametrize("clip, grid", [(CLAHE_CLIP_LIMIT, CLAHE_TILE_GRID), (2.0, (8, 8)),
                                        (0.0, (4, 6)), (3.0, (7, 5)), (1.5, (1, 1)),
                                        (2.0, (300, 500))])
def test_clahe_bit_exact_with_opencv(clip, grid):
    cv2 = pytest.importorskip("cv2")
    for name in GRAY_IMAGES:
        img = to_uint8(load_test_image(name))
        ref = cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid[1], grid[0])).apply(img)
        np.testing.assert_array_equal(to_uint8(pp.equalize_adapthist(img, clip, grid)), ref)


def test_clahe_small_and_odd_shapes_match_opencv(rng):
    cv2 = pytest.importorskip("cv2")
    for shape in [(1, 1), (1, 7), (3, 2), (17, 9), (64, 33)]:
        x = rng.integers(0, 256, size=shape).astype(np.uint8)
        ref = cv2.createCLAHE(2.0, (8, 8)).apply(x)
        np.testing.assert_array_equal(to_uint8(pp.equalize_adapthist(x, 2.0, 8)), ref)


def test_clahe_kernel_matches_readable_twin(rng):
    x = rng.integers(0, 256, size=(23, 31)).astype(np.uint8)
    x[:10, :10] = 50                                         # a flat patch to trigger clipping
    padded = _pad_reflect101(x, 3 - 23 % 3, 4 - 31 % 4)
    tile_area = (padded.shape[0] // 3) * (padded.shape[1] // 4)
    limit = max(int(2.0 * tile_area / 256), 1)
    expected = ref_hist.clahe(padded, x, 3, 4, limit)
    np.testing.assert_array_equal(to_uint8(pp.equalize_adapthist(x, 2.0, (3, 4))), expected)


def test_clahe_colour_is_per_channel_and_float_input(rng):
    rgb = rng.integers(0, 256, size=(20, 24, 3)).astype(np.uint8)
    out = pp.equalize_adapthist(rgb, 2.0, (2, 3))
    assert out.shape == rgb.shape and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], pp.equalize_adapthist(rgb[:, :, c], 2.0, (2, 3)))
    np.testing.assert_array_equal(pp.equalize_adapthist(rgb[:, :, 0] / 255.0, 2.0, (2, 3)),
                                  out[:, :, 0])


def test_equalizers_reject_bad_input():
    for fn in (pp.equalize_hist, pp.equalize_adapthist):
        with pytest.raises(ValueError, match="NaN"):
            fn(np.array([[0.1, np.nan]]))
        with pytest.raises(ValueError, match="empty"):
            fn(np.zeros((0, 4)))
        with pytest.raises(ValueError, match="dimensions"):
            fn(np.zeros(4))
        with pytest.raises(TypeError):
            fn(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="nbins"):
        pp.equalize_hist(np.zeros((2, 2)), nbins=0)
    with pytest.raises(ValueError, match="tile_grid"):
        pp.equalize_adapthist(np.zeros((4, 4), np.uint8), 2.0, (0, 2))
    with pytest.raises(ValueError, match="clip_limit"):
        pp.equalize_adapthist(np.zeros((4, 4), np.uint8), -1.0)


# ----------------------------------------------------------------------------- standardize
def test_standardize_hand_values():
    x = np.array([[1.0, 3.0]])                      # mean 2, std 1
    np.testing.assert_allclose(pp.standardize(x), [[-1.0, 1.0]])
    c = np.zeros((2, 2, 2))
    c[:, :, 0] = [[0, 2], [0, 2]]                   # channel 0: mean 1, std 1
    c[:, :, 1] = 5.0                                # channel 1 constant -> zeros, not NaN
    out = pp.standardize(c, per_channel=True)
    np.testing.assert_allclose(out[:, :, 0], [[-1, 1], [-1, 1]])
    np.testing.assert_array_equal(out[:, :, 1], 0.0)
    np.testing.assert_array_equal(pp.standardize(np.full((3, 3), 0.1)), 0.0)
    assert pp.standardize(np.array([[1, 2]], np.uint8)).dtype == np.float32
    with pytest.raises(ValueError, match="per_channel"):
        pp.standardize(np.zeros((2, 2)), per_channel=True)
    with pytest.raises(ValueError, match="NaN"):
        pp.standardize(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        pp.standardize(np.zeros((0, 2)))


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8),
                                          st.integers(1, 3)),
                    elements=st.floats(-1e3, 1e3, allow_nan=False)),
       per_channel=st.booleans())
def test_property_standardize(x, per_channel):
    out = pp.standardize(x, per_channel=per_channel)
    assert np.isfinite(out).all()
    axes = (0, 1) if per_channel else None
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-4)
    std = out.astype(np.float64).std(axis=axes)
    assert np.all((np.abs(std - 1) < 1e-3) | (std == 0))


# ----------------------------------------------------------------------------- properties
_dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=_dtypes,
       shape=st.one_of(st.tuples(st.integers(1, 9), st.integers(1, 9)),
                       st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4))))
def test_property_no_crash_and_ranges(data, dtype, shape):
    if np.dtype(dtype).kind == "u":
        x = data.draw(hnp.arrays(dtype, shape))
    else:
        x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(0, 1, width=32)))
    if data.draw(st.booleans()):
        x = x[::-1, ::2]                          # negative and non-unit strides
    for fn in (pp.adjust_brightness, pp.adjust_contrast, pp.adjust_gamma):
        out = fn(x, data.draw(st.floats(0, 3)))
        assert out.shape == x.shape
        assert out.dtype == (x.dtype if x.dtype.kind == "u" else np.float32)
    eq = pp.equalize_hist(x)
    assert eq.shape == x.shape and (eq > 0).all() and (eq <= 1 + 1e-6).all()
    grid = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    cl = pp.equalize_adapthist(x if x.dtype.kind == "u" else np.clip(x, 0, 1),
                               data.draw(st.floats(0, 50)), grid)
    assert cl.shape == x.shape and (cl >= 0).all() and (cl <= 1).all()
    if x.ndim == 3 and x.shape[2] == 3:
        assert pp.rgb2gray(x).shape == x.shape[:2]


def test_clahe_defaults_are_opencvs():
    """The documented defaults (clip 40, 8x8 tiles) are cv2.createCLAHE's."""
    cv2 = pytest.importorskip("cv2")
    assert CLAHE_CLIP_LIMIT == 40.0 and CLAHE_TILE_GRID == (8, 8)
    img = to_uint8(load_test_image("box.pgm"))
    np.testing.assert_array_equal(to_uint8(pp.equalize_adapthist(img)),
                                  cv2.createCLAHE().apply(img))
