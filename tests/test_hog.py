"""Tests of cvcore.features.hog / hog_batch / HOGDescriptor.

Three kinds: hand-worked toy cases, agreement with references (the readable twins in
kernels/reference/hog.py, scikit-image, OpenCV) and properties. Real images come from the shared
test-images via conftest.load_test_image; the references skip with a reason when not installed.
"""
import doctest
import gzip
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcore.features import HOGDescriptor, hog, hog_batch
from kernels.reference import hog as ref
from tests.conftest import dataset_path, load_test_image

NORMS = ["L1", "L1-sqrt", "L2", "L2-Hys"]
# (orientations, pixels_per_cell, cells_per_block): 7 geometries, square and not
GEOMETRIES = [
    (9, (8, 8), (3, 3)),
    (9, (4, 4), (2, 2)),
    (6, (5, 7), (2, 3)),
    (4, (6, 6), (1, 1)),
    (8, (3, 5), (3, 2)),
    (12, (8, 8), (2, 2)),
    (7, (7, 7), (2, 2)),
]
REAL = ["box.pgm", "scene.pgm", "book.pgm", "roofs1.jpg", "roofs2.jpg", "river1.jpg", "spots.jpg"]


def crop(image, rows, cols, seed):
    """A deterministic crop of a real image (keeps the scikit-image side of the tests quick)."""
    rng = np.random.default_rng(seed)
    r = int(rng.integers(0, image.shape[0] - rows + 1))
    c = int(rng.integers(0, image.shape[1] - cols + 1))
    return np.ascontiguousarray(image[r:r + rows, c:c + cols])


# --- hand-worked toy cases ------------------------------------------------------------------

def test_vertical_edge_by_hand():
    # columns 0 0 1 1: g_col = I[c+1] - I[c-1] is 1 at columns 1 and 2 (0 on the border
    # columns), g_row = 0. Eight pixels of magnitude 1 at 0 degrees -> bin 0; the 4x4 cell's
    # average is 8 / 16 = 0.5; L1 with eps = 1e-5 gives 0.5 / (0.5 + 1e-5).
    img = np.tile(np.array([0, 0, 1, 1], np.float64), (4, 1))
    f = hog(img, orientations=4, pixels_per_cell=(4, 4), cells_per_block=(1, 1), block_norm="L1")
    np.testing.assert_allclose(f, [0.5 / (0.5 + 1e-5), 0, 0, 0], rtol=0, atol=1e-15)


def test_horizontal_edge_on_a_bin_edge():
    # rows 0 0 1 1: the gradient points down, theta = 90 deg exactly. With 4 bins the edges are
    # 0, 45, 90, 135: 90 belongs to bin 2 ([90, 135)), not bin 1.
    img = np.tile(np.array([[0], [0], [1], [1]], np.float64), (1, 4))
    f = hog(img, 4, (4, 4), (1, 1), "L1", feature_vector=False)
    assert f.shape == (1, 1, 1, 1, 4)
    np.testing.assert_allclose(f.ravel(), [0, 0, 0.5 / (0.5 + 1e-5), 0], atol=1e-15)


def test_diagonal_ramp_at_45_degrees():
    # I = r + c: g_row = g_col = 2 inside, theta = 45 deg -> bin 1 of 4 ([45, 90)). Inside a 5x5
    # image the 3x3 interior has both differences; the border rows / columns have one of them
    # zero (theta = 0 or 90). Per cell (5x5, 25 pixels): interior 9 px of magnitude sqrt(8);
    # border: first/last row (g_row = 0) interior columns 3 px each of magnitude 2 at 0 deg;
    # first/last column interior rows 3 px each of magnitude 2 at 90 deg.
    img = np.add.outer(np.arange(5.0), np.arange(5.0))
    h = hog(img, 4, (5, 5), (1, 1), "L1", feature_vector=False).ravel()
    cell = np.array([6 * 2.0, 9 * np.sqrt(8.0), 6 * 2.0, 0]) / 25
    cell = cell.astype(np.float32).astype(np.float64)          # float32 sums, as scikit-image
    np.testing.assert_allclose(h, cell / (cell.sum() + 1e-5), rtol=1e-7)


def test_zeros_give_zeros_not_nan():
    img = np.zeros((32, 40))
    for norm in NORMS:
        f = hog(img, 9, (8, 8), (2, 2), norm)
        assert np.isfinite(f).all() and not f.any(), norm
    d = HOGDescriptor()
    out = d.compute(np.zeros((128, 64), np.uint8))
    assert out.shape == (3780,) and np.isfinite(out).all() and not out.any()
    assert not hog_batch(np.zeros((3, 16, 16)), 9, (4, 4), (2, 2)).any()


# --- agreement with the readable twins ------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS)
def test_fast_equals_reference_twin(rng, norm):
    for shape, (o, cell, block) in [((29, 31), GEOMETRIES[1]), ((23, 37, 3), GEOMETRIES[2])]:
        img = rng.random(shape)
        expect = ref.skimage_hog(img, o, cell, block, norm, transform_sqrt=True)
        got = hog(img, o, cell, block, norm, transform_sqrt=True, feature_vector=False,
                  channel_axis=-1 if len(shape) == 3 else None)
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)


def test_descriptor_equals_reference_twin(rng):
    img = rng.integers(0, 256, (48, 40)).astype(np.uint8)
    for gamma in (True, False):
        d = HOGDescriptor((40, 48), (16, 16), (8, 8), (8, 8), 9, gamma_correction=gamma)
        expect = ref.opencv_hog_window(img, (40, 48), (16, 16), (8, 8), (8, 8), 9,
                                       gamma_correction=gamma)
        np.testing.assert_allclose(d.compute(img), expect, rtol=0, atol=1e-5)


# --- agreement with scikit-image ------------------------------------------------------------

@pytest.mark.parametrize("transform_sqrt", [False, True])
@pytest.mark.parametrize("norm", NORMS)
def test_equals_skimage_grey_real_and_random(norm, transform_sqrt, rng):
    skf = pytest.importorskip("skimage.feature")
    worst = 0.0
    for g, (o, cell, block) in enumerate(GEOMETRIES):
        real = crop(load_test_image(REAL[g % len(REAL)]), 70, 90, seed=g)
        odd = rng.random((41 + 2 * g, 37 + 4 * g))                      # odd sizes, float64
        for img in (real, odd):
            expect = skf.hog(img, o, cell, block, norm, transform_sqrt=transform_sqrt)
            got = hog(img, o, cell, block, norm, transform_sqrt=transform_sqrt)
            assert got.shape == expect.shape and got.dtype == expect.dtype
            worst = max(worst, float(np.abs(got - expect).max()))
    assert worst <= 1e-5


@pytest.mark.parametrize("norm", NORMS)
def test_equals_skimage_colour_and_integer_input(norm):
    skf = pytest.importorskip("skimage.feature")
    for k, name in enumerate(["roofs1.jpg", "river1.jpg", "spots.jpg"]):
        rgb = crop(load_test_image(name, mode="rgb"), 64, 80, seed=k)
        o, cell, block = GEOMETRIES[k]
        for img, axis in [(rgb, -1), (np.moveaxis(rgb, -1, 0).copy(), 0),
                          ((rgb * 255).astype(np.uint8), 2)]:
            for sq in (False, True):
                expect = skf.hog(img, o, cell, block, norm, transform_sqrt=sq, channel_axis=axis)
                got = hog(img, o, cell, block, norm, transform_sqrt=sq, channel_axis=axis)
                assert got.dtype == expect.dtype
                np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)


def test_equals_skimage_on_a_whole_real_image():
    skf = pytest.importorskip("skimage.feature")
    img = load_test_image("box.pgm")
    np.testing.assert_allclose(hog(img), skf.hog(img), rtol=0, atol=1e-5)
    u8 = (img * 255).astype(np.uint8)
    np.testing.assert_allclose(hog(u8, 8, (6, 6), (2, 2), "L1"),
                               skf.hog(u8, 8, (6, 6), (2, 2), "L1"), rtol=0, atol=1e-5)


def test_defaults_match_skimage_signature():
    skf = pytest.importorskip("skimage.feature")
    ours = inspect.signature(hog).parameters
    theirs = inspect.signature(skf.hog).parameters
    assert list(ours) == list(theirs)
    for name in ours:
        assert ours[name].default == theirs[name].default, name


# --- hog_batch ------------------------------------------------------------------------------

def test_batch_rows_equal_single_calls(rng):
    x = rng.random((7, 28, 28)).astype(np.float32)
    out = hog_batch(x, 9, (4, 4), (2, 2), "L2-Hys")
    assert out.shape == (7, 1296) and out.dtype == np.float32
    for n in range(7):
        np.testing.assert_array_equal(out[n], hog(x[n], 9, (4, 4), (2, 2), "L2-Hys"))
    u8 = (x * 255).astype(np.uint8)
    single = hog_batch(u8, 9, (4, 4), (2, 2), dtype=np.float32)   # computed in float64
    assert single.dtype == np.float32
    np.testing.assert_array_equal(single, hog_batch(u8, 9, (4, 4), (2, 2)).astype(np.float32))
    rgb = rng.random((3, 20, 24, 3))
    out = hog_batch(rgb, 6, (5, 6), (2, 2), "L1", channel_axis=-1)
    np.testing.assert_array_equal(out[2], hog(rgb[2], 6, (5, 6), (2, 2), "L1", channel_axis=-1))


def _fashion_mnist(count):
    path = dataset_path("fashion-mnist", "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        data = f.read(16 + count * 28 * 28)
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)


def test_batch_equals_skimage_on_fashion_mnist():
    skf = pytest.importorskip("skimage.feature")
    x = _fashion_mnist(40)
    out = hog_batch(x, 9, (4, 4), (2, 2))
    expect = np.stack([skf.hog(img, 9, (4, 4), (2, 2)) for img in x])
    np.testing.assert_allclose(out, expect, rtol=0, atol=1e-5)


# --- agreement with OpenCV ------------------------------------------------------------------

def test_descriptor_equals_opencv_people_window():
    cv2 = pytest.importorskip("cv2")
    grey = (load_test_image("roofs1.jpg") * 255).round().astype(np.uint8)
    rgb = (load_test_image("river1.jpg", mode="rgb") * 255).round().astype(np.uint8)
    ours, theirs = HOGDescriptor(), cv2.HOGDescriptor()
    assert ours.descriptor_size == theirs.getDescriptorSize()
    one = np.ascontiguousarray(grey[100:228, 200:264])
    np.testing.assert_allclose(ours.compute(one), theirs.compute(one), rtol=0, atol=1e-4)
    for img in (crop(grey, 200, 160, 1), crop(rgb, 190, 150, 2)):
        for stride, pad in [(None, None), ((8, 8), (0, 0)), ((16, 24), (8, 8)),
                            ((24, 16), (5, 3))]:
            kw = {k: v for k, v in (("winStride", stride), ("padding", pad)) if v is not None}
            expect = theirs.compute(img, **kw)
            got = ours.compute(img, stride, pad)
            assert got.shape == expect.shape
            np.testing.assert_allclose(got, expect, rtol=0, atol=1e-4)


@pytest.mark.parametrize("geometry", [
    ((32, 32), (16, 16), (8, 8), (8, 8), 9),
    ((48, 96), (16, 16), (8, 8), (8, 8), 12),
    ((64, 64), (24, 24), (8, 8), (8, 8), 9),
    ((40, 40), (20, 20), (10, 10), (5, 5), 6),
])
def test_descriptor_equals_opencv_other_geometries(geometry):
    cv2 = pytest.importorskip("cv2")
    for gamma, signed in ((False, False), (True, False), (False, True)):
        # positional: derivAperture, winSigma, histogramNormType, L2HysThreshold,
        # gammaCorrection, nlevels, signedGradient
        theirs = cv2.HOGDescriptor(*geometry, 1, -1, 0, 0.2, gamma, 64, signed)
        ours = HOGDescriptor(*geometry, gamma_correction=gamma, signed_gradient=signed)
        for k, name in enumerate(["scene.pgm", "spots.jpg"]):
            img = crop((load_test_image(name) * 255).round().astype(np.uint8), 120, 110, k)
            expect = theirs.compute(img, winStride=(16, 8), padding=(8, 8))
            np.testing.assert_allclose(ours.compute(img, (16, 8), (8, 8)), expect,
                                       rtol=0, atol=1e-4)


def test_descriptor_sigma_follows_opencv_and_threshold_the_twin(rng):
    cv2 = pytest.importorskip("cv2")
    geometry = ((32, 32), (16, 16), (8, 8), (8, 8), 9)
    theirs = cv2.HOGDescriptor(*geometry, 1, 2.5, 0, 0.2, False)
    ours = HOGDescriptor(*geometry, win_sigma=2.5, gamma_correction=False)
    img = crop((load_test_image("book.pgm") * 255).round().astype(np.uint8), 64, 72, 3)
    np.testing.assert_allclose(ours.compute(img), theirs.compute(img), rtol=0, atol=1e-4)
    # Another clipping threshold is checked against the readable twin, not OpenCV: OpenCV's
    # SSE path keeps the threshold of the first descriptor used in the process in a static
    # variable (hog.cpp, normalizeBlockHistogram), so its answer depends on call history.
    small = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    d = HOGDescriptor(*geometry, win_sigma=2.5, l2_hys_threshold=0.3, gamma_correction=False)
    expect = ref.opencv_hog_window(small, *geometry, win_sigma=2.5, gamma_correction=False,
                                   threshold=0.3)
    np.testing.assert_allclose(d.compute(small), expect, rtol=0, atol=1e-5)


def test_descriptor_colour_ties_follow_opencv(rng):
    # Channels with equal dx^2 + dy^2 but different (dx, dy) (e.g. (3, 4), (4, 3), (5, 0)):
    # OpenCV's vector code keeps the lowest channel, its scalar tail (the last width % 4
    # columns) the highest. Widths 33..47 put pixels in both.
    cv2 = pytest.importorskip("cv2")
    theirs = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
    ours = HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9, gamma_correction=False)
    for width in (33, 38, 43, 47):
        img = rng.choice(np.array([0, 3, 4, 5, 8, 12], np.uint8), size=(34, width, 3))
        np.testing.assert_allclose(ours.compute(img, (1, 2), (0, 0)),
                                   theirs.compute(img, winStride=(1, 2), padding=(0, 0)),
                                   rtol=0, atol=1e-4)


def test_descriptor_defaults_match_opencv():
    cv2 = pytest.importorskip("cv2")
    ours, theirs = HOGDescriptor(), cv2.HOGDescriptor()
    assert ours.win_size == theirs.winSize and ours.block_size == theirs.blockSize
    assert ours.block_stride == theirs.blockStride and ours.cell_size == theirs.cellSize
    assert ours.nbins == theirs.nbins
    assert ours.gamma_correction == theirs.gammaCorrection
    assert ours.get_win_sigma() == theirs.getWinSigma()
    assert ours.l2_hys_threshold == pytest.approx(theirs.L2HysThreshold)
    assert ours.signed_gradient == theirs.signedGradient


def test_block_grid_is_the_dense_form_of_compute(rng):
    # compute() reads every window from one grid of block histograms: a window's descriptor is
    # the grid's blocks at that window, x-major.
    img = rng.integers(0, 256, (60, 50)).astype(np.uint8)
    d = HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)
    grid = d.compute_block_grid(img)                     # (P, Q, 36) at a stride of 8
    desc = d.compute(img, (8, 8)).reshape(-1, d.descriptor_size)
    nwx = (50 - 32) // 8 + 1
    for w, (wy, wx) in enumerate([(0, 0), (1, 2), (2, 1)]):
        expect = grid[wy:wy + 3, wx:wx + 3].transpose(1, 0, 2).ravel()
        np.testing.assert_array_equal(desc[wy * nwx + wx], expect)


def test_windows_read_from_the_whole_image(rng):
    # The Notes of hog(): a cell-aligned window of the whole image's block array equals
    # hog(window) when the pixels around the window mirror it (then the border gradients that
    # hog(window) sets to zero are zero in the whole image too).
    window = rng.random((40, 48))
    padded = np.pad(window, 8, mode="reflect")              # mirror without repeating the edge
    whole = hog(padded, 9, (8, 8), (2, 2), feature_vector=False)
    alone = hog(window, 9, (8, 8), (2, 2), feature_vector=False)
    np.testing.assert_allclose(whole[1:1 + alone.shape[0], 1:1 + alone.shape[1]], alone,
                               rtol=0, atol=1e-12)


# --- picture --------------------------------------------------------------------------------

def test_picture_glyphs_sit_at_bin_centres():
    # A horizontal edge has theta = 90 deg, the centre of bin 4 of 9 ([80, 100)); its glyph is
    # drawn along the edge, i.e. horizontally: one row per cell. A glyph drawn at the bin's lower
    # edge (80 deg) would be tilted and cover several rows.
    img = np.zeros((32, 32))
    img[16:] = 1
    f, picture = hog(img, 9, (8, 8), (1, 1), visualize=True)
    assert picture.shape == img.shape and picture.dtype == np.float64
    lit = np.argwhere(picture > 0)
    assert len(lit) and set(lit[:, 0] % 8) == {4}          # the cells' middle row, only
    from cvcore.features._hog import _glyph_pixels
    rows, cols = _glyph_pixels(2, (9, 9))[0]                # bin 0 of 2: centre 45 deg
    np.testing.assert_array_equal(rows + cols, np.full(len(rows), 8))   # the anti-diagonal


def test_picture_brightness_follows_the_histogram():
    img = np.zeros((16, 16))
    img[:, 8:] = 1                                          # vertical edge: bin 0
    _, picture = hog(img, 9, (8, 8), (1, 1), visualize=True)
    _, double = hog(2 * img, 9, (8, 8), (1, 1), visualize=True)
    np.testing.assert_allclose(double, 2 * picture)


# --- properties -----------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(rows=st.integers(8, 30), cols=st.integers(8, 30), shift=st.integers(-50, 50),
       seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(NORMS))
def test_adding_a_constant_changes_nothing(rows, cols, shift, seed, norm):
    # gradients are differences: I + k has the same ones (exact on integer-valued images)
    img = np.random.default_rng(seed).integers(0, 100, (rows, cols)).astype(np.float64)
    a = hog(img, 9, (4, 4), (2, 2), norm)
    b = hog(img + shift, 9, (4, 4), (2, 2), norm)
    np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(4, 40), cols=st.integers(4, 40), cr=st.integers(1, 6),
       cc=st.integers(1, 6), br=st.integers(1, 3), bc=st.integers(1, 3))
def test_shape_follows_the_geometry(rows, cols, cr, cc, br, bc):
    img = np.ones((rows, cols))
    ncr, ncc = rows // cr, cols // cc
    if ncr < br or ncc < bc:
        with pytest.raises(ValueError, match="smaller than one block"):
            hog(img, 5, (cr, cc), (br, bc))
        return
    f = hog(img, 5, (cr, cc), (br, bc), feature_vector=False)
    assert f.shape == (ncr - br + 1, ncc - bc + 1, br, bc, 5)


def test_deterministic_and_input_untouched(rng):
    img = rng.random((50, 60)).astype(np.float32)
    keep = img.copy()
    a = hog(img, transform_sqrt=True)
    b = hog(img, transform_sqrt=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, keep)


# --- errors ---------------------------------------------------------------------------------

def test_bad_input_gives_clear_errors():
    img = np.random.default_rng(0).random((30, 30))
    with pytest.raises(ValueError, match="smaller than one block"):
        hog(img, 9, (8, 8), (4, 4))                        # 3 cells, block of 4
    with pytest.raises(ValueError, match="smaller than one block"):
        hog(img, 9, (40, 8), (1, 1))                       # a cell taller than the image
    with pytest.raises(ValueError, match="block_norm"):
        hog(img, block_norm="L3")
    with pytest.raises(TypeError, match="block_norm"):
        hog(img, block_norm=2)
    with pytest.raises(ValueError, match="channel_axis"):
        hog(np.zeros((30, 30, 3)), channel_axis=3)
    with pytest.raises(ValueError, match="channel_axis"):
        hog(img, channel_axis=0)                           # grey image, channel_axis given
    with pytest.raises(ValueError, match="pass channel_axis"):
        hog(np.zeros((30, 30, 3)))
    with pytest.raises(ValueError, match="NaN"):
        hog(np.full((30, 30), np.nan))
    with pytest.raises(ValueError, match="non-negative"):
        hog(img - 1, transform_sqrt=True)
    with pytest.raises(ValueError, match="orientations"):
        hog(img, orientations=0)
    with pytest.raises(TypeError, match="pixels_per_cell"):
        hog(img, pixels_per_cell="8")
    with pytest.raises(TypeError, match="numeric"):
        hog(np.array([["a"] * 30] * 30))
    with pytest.raises(ValueError, match="empty"):
        hog(np.zeros((0, 30)))
    with pytest.raises(ValueError, match="batch axis"):
        hog_batch(np.zeros((2, 16, 16, 3)), 9, (4, 4), (2, 2), channel_axis=0)
    with pytest.raises(ValueError, match="3 dimensions"):
        hog_batch(np.zeros((16, 16)), 9, (4, 4), (2, 2))


def test_descriptor_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="multiple of cell_size"):
        HOGDescriptor(block_size=(16, 16), cell_size=(6, 8))
    with pytest.raises(ValueError, match="block_stride"):
        HOGDescriptor(win_size=(64, 128), block_stride=(10, 8))
    with pytest.raises(ValueError, match="exceeds win_size"):
        HOGDescriptor(win_size=(8, 128))
    d = HOGDescriptor()
    with pytest.raises(ValueError, match="smaller than the 64x128 window"):
        d.compute(np.zeros((100, 64), np.uint8))
    with pytest.raises(ValueError, match="grey .* or colour"):
        d.compute(np.zeros((128, 64, 4), np.uint8))
    with pytest.raises(ValueError, match="non-negative"):
        d.compute(-np.ones((128, 64), np.float32))


def test_docstring_examples_run():
    import cvcore.features._hog as module
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0
