"""The HOG backward pass: central differences in float64 away from the binning switch points,
the readable twin, hand-worked cases, argument checks."""
import numpy as np
import pytest

from cvcore.features import hog, hog_backward, hog_batch
from kernels.reference import hog as ref

NORMS = ["L1", "L1-sqrt", "L2", "L2-Hys"]
H_STEP = 1e-6          # central-difference step: far below any bin switch of these images


def _image(seed, shape=(12, 12)):
    # values in [0.1, 1]: away from the square root's kink at 0
    return np.random.default_rng(seed).uniform(0.1, 1.0, shape)


def _bins_stable(img, idx, args):
    """Whether moving pixel ``idx`` by +-H_STEP leaves every pixel's orientation bin as is."""
    out = []
    for sign in (1, -1):
        x = img.copy()
        x[idx] += sign * H_STEP
        x = np.sqrt(x) if args["transform_sqrt"] else x
        out.append(ref._pixel_bins(*ref.centred_gradients(x), args["orientations"]))
    return np.array_equal(out[0], out[1])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("transform_sqrt", [False, True])
def test_hog_backward_matches_central_differences_in_float64(norm, transform_sqrt):
    args = dict(orientations=6, pixels_per_cell=(3, 3), cells_per_block=(2, 2),
                block_norm=norm, transform_sqrt=transform_sqrt)
    img = _image(1)
    f = ref.skimage_hog_float64(img, **args).ravel()
    # the float64 twin is the function hog computes (hog sums cells in float32)
    np.testing.assert_allclose(f, hog(img, **args), rtol=1e-5, atol=1e-7)
    d = np.random.default_rng(2).standard_normal(f.shape)
    twin = ref.skimage_hog_backward(img, d, **args)
    # the kernel differentiates at the forward's own histograms, summed in float32 as
    # scikit-image does: agreement to that rounding
    fast = hog_backward(img, d, **args)
    np.testing.assert_allclose(fast, twin, rtol=1e-5, atol=1e-6 * np.abs(twin).max())
    rng = np.random.default_rng(3)
    checked = 0
    for idx in zip(rng.integers(0, 12, 40), rng.integers(0, 12, 40)):
        if not _bins_stable(img, idx, args):
            continue                     # a switch point: the derivative does not exist
        xp, xm = img.copy(), img.copy()
        xp[idx] += H_STEP
        xm[idx] -= H_STEP
        num = np.dot(d, ref.skimage_hog_float64(xp, **args).ravel()
                     - ref.skimage_hog_float64(xm, **args).ravel()) / (2 * H_STEP)
        assert abs(num - twin[idx]) <= 1e-6 * max(1.0, abs(num)), (idx, num, twin[idx])
        assert abs(num - fast[idx]) <= 1e-5 * max(1.0, abs(num)), (idx, num, fast[idx])
        checked += 1
    assert checked >= 30


def test_hog_backward_batch_colour_and_pixels_outside_cells():
    rng = np.random.default_rng(5)
    imgs = rng.uniform(0, 1, (3, 13, 11))       # 13 x 11: the last row / column in no cell
    d = rng.standard_normal(hog_batch(imgs, 9, (4, 4), (2, 2)).shape)
    batch = hog_backward(imgs, d, 9, (4, 4), (2, 2))
    for n in range(3):
        np.testing.assert_allclose(batch[n], hog_backward(imgs[n], d[n], 9, (4, 4), (2, 2)),
                                   rtol=1e-12)
    # pixels beyond the last full cell are in no histogram; they still receive gradient as
    # neighbours of a pixel inside (row 12 of row 11; column 8 of column 7), the rest none
    assert np.all(batch[:, :, 9:] == 0) and np.any(batch[:, 12, :8] != 0)
    assert np.any(batch[:, :12, 8] != 0)
    colour = rng.uniform(0, 1, (12, 12, 3))
    dc = rng.standard_normal(hog(colour, 9, (4, 4), (2, 2), channel_axis=-1).shape)
    g = hog_backward(colour, dc, 9, (4, 4), (2, 2), channel_axis=-1)
    assert g.shape == colour.shape
    # central difference on one colour pixel (the dominant channel keeps its choice)
    idx = (5, 6, int(np.argmax(np.abs(g[5, 6]))))
    h = 1e-6
    xp, xm = colour.copy(), colour.copy()
    xp[idx] += h
    xm[idx] -= h

    def colour_hog64(x):          # the twin's stages in float64, with the dominant channel
        hist = ref._hard_binned_cells(*ref.dominant_gradients(x), 9, 4, 4)
        return ref._blocks(hist, (2, 2), "L2-Hys").ravel()
    np.testing.assert_allclose(colour_hog64(colour), hog(colour, 9, (4, 4), (2, 2),
                                                         channel_axis=-1), rtol=1e-5, atol=1e-7)
    num = np.dot(dc, colour_hog64(xp) - colour_hog64(xm)) / (2 * h)
    assert abs(num - g[idx]) <= 1e-5 * max(1.0, abs(num))


def test_hog_backward_by_hand_one_edge():
    # A vertical step edge: g_col = 1 at the two columns beside it, orientation 0 (bin 0).
    img = np.zeros((4, 4))
    img[:, 2:] = 1.0
    args = dict(orientations=4, pixels_per_cell=(4, 4), cells_per_block=(1, 1),
                block_norm="L1", transform_sqrt=False)
    f = hog(img, **args)
    # cell sum of bin 0 = 4 rows x 2 columns of magnitude 1 = 8, / 16 pixels = 0.5; L1 -> ~1
    np.testing.assert_allclose(f, [0.5 / (0.5 + 1e-5), 0, 0, 0], rtol=1e-6)
    # d f_0 / d (cell value) = eps / (v + eps)^2 -- tiny: L1 of a single bin is flat
    d = np.array([0.0, 1.0, 0.0, 0.0])          # a bin that is empty: v_1 = 0
    g = hog_backward(img, d, **args)
    # f_1 = v_1 / S, v_1 = 0: df_1/dv_0 = -v_1/S^2 = 0, so nothing flows back from bin 1
    np.testing.assert_array_equal(g, np.zeros_like(img))


def test_hog_backward_argument_checks():
    img = _image(0, (8, 8))
    with pytest.raises(ValueError, match="dfeatures has shape"):
        hog_backward(img, np.zeros(5), 9, (4, 4), (2, 2))
    with pytest.raises(ValueError, match="NaN"):
        hog_backward(img, np.full(36, np.nan), 9, (4, 4), (2, 2))
    with pytest.raises(ValueError, match="non-negative"):
        hog_backward(img - 1, np.zeros(36), 9, (4, 4), (2, 2), transform_sqrt=True)
    with pytest.raises(ValueError, match="block_norm"):
        hog_backward(img, np.zeros(36), 9, (4, 4), (2, 2), block_norm="L3")
