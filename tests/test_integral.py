"""Integral images: exact against np.cumsum and brute-force box sums, the kernels' box helpers
against their readable twins, edge cases and errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcore.preprocess import box_sum, integral_image, squared_integral_image
from kernels import integral as K
from kernels.reference import integral as ref


def cumsum_table(image):
    """The definition through NumPy: zero row and column, then the two running sums."""
    a = np.asarray(image, dtype=np.float64)
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1) + a.shape[2:])
    out[1:, 1:] = np.cumsum(np.cumsum(a, axis=1), axis=0)
    return out


def test_hand_worked_2x3():
    # [[0 1 2], [3 4 5]]: row prefixes [0 1 3], [3 7 12]; column running sums [0 1 3], [3 8 15]
    ii = integral_image(np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.testing.assert_array_equal(ii, [[0, 0, 0, 0], [0, 0, 1, 3], [0, 3, 8, 15]])
    assert ii.dtype == np.float64 and ii.shape == (3, 4)


def test_1x1():
    np.testing.assert_array_equal(integral_image(np.array([[7.5]])), [[0, 0], [0, 7.5]])
    assert box_sum(integral_image([[7.5]]), 0, 0, 1, 1) == 7.5


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64, bool])
def test_bit_identical_to_cumsum(dtype, rng):
    for shape in [(1, 5), (5, 1), (17, 31), (64, 48)]:
        if dtype == bool:
            image = rng.random(shape) > 0.5
        elif np.dtype(dtype).kind == "f":
            image = rng.random(shape).astype(dtype) * 3 - 1
        else:
            image = rng.integers(0, 200, shape).astype(dtype)
        np.testing.assert_array_equal(integral_image(image), cumsum_table(image))
        np.testing.assert_array_equal(integral_image(image), ref.integral_image(image))


def test_uint8_exact_on_a_large_image():
    # 4000 x 4000 of 255: the total 4.08e9 is far past float32's 2**24 and exact in float64
    image = np.full((4000, 4000), 255, np.uint8)
    ii = integral_image(image)
    assert ii[-1, -1] == 255 * 4000 * 4000
    assert box_sum(ii, 1, 2, 3999, 3998) == 255 * 3998 * 3996
    # why float64: the same table in float32 is off once its running sums pass 2**24
    table32 = np.cumsum(np.cumsum(image[:1000, :1000], axis=1, dtype=np.float32), axis=0,
                        dtype=np.float32)
    assert table32[-1, -1] != 255 * 1000 * 1000


def test_multichannel_is_per_channel(rng):
    image = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    ii = integral_image(image)
    assert ii.shape == (10, 12, 3)
    for c in range(3):
        np.testing.assert_array_equal(ii[:, :, c], cumsum_table(image[:, :, c]))
    np.testing.assert_array_equal(box_sum(ii, 2, 3, 7, 9), image[2:7, 3:9].sum(axis=(0, 1)))


def test_squared_table(rng):
    image = rng.integers(0, 256, (13, 8)).astype(np.uint8)
    np.testing.assert_array_equal(squared_integral_image(image),
                                  cumsum_table(image.astype(np.float64) ** 2))
    # variance of a window from the two tables (Viola & Jones 2001, sec. 5.6)
    ii, ii2 = integral_image(image), squared_integral_image(image)
    n = 5 * 4
    mean = box_sum(ii, 3, 2, 8, 6) / n
    var = box_sum(ii2, 3, 2, 8, 6) / n - mean ** 2
    np.testing.assert_allclose(var, image[3:8, 2:6].astype(np.float64).var(), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_box_sum_equals_brute_force(H, W, data):
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    image = np.random.default_rng(seed).integers(-50, 50, (H, W)).astype(np.int32)
    ii = integral_image(image)
    r0 = data.draw(st.integers(0, H))
    r1 = data.draw(st.integers(r0, H))
    c0 = data.draw(st.integers(0, W))
    c1 = data.draw(st.integers(c0, W))
    want = ref.box_sum(image, r0, c0, r1, c1)
    assert box_sum(ii, r0, c0, r1, c1) == want
    assert K.box_sum(ii, r0, c0, r1, c1) == want
    # the clamped helper: any bounds, pixels outside the image count as zero
    a, b = data.draw(st.integers(-5, H + 5)), data.draw(st.integers(-5, H + 5))
    c, d = data.draw(st.integers(-5, W + 5)), data.draw(st.integers(-5, W + 5))
    assert K.box_sum_clamped(ii, a, c, b, d) == ref.box_sum_clamped(image, a, c, b, d)


def test_box_sum_vectorised(rng):
    image = rng.integers(0, 10, (20, 30))
    ii = integral_image(image)
    r0 = np.array([0, 5, 19, 3])
    c0 = np.array([0, 7, 0, 29])
    r1 = r0 + np.array([20, 3, 1, 0])
    got = box_sum(ii, r0, c0, r1, 30)
    want = [image[a:b, c:].sum() for a, b, c in zip(r0, r1, c0)]
    np.testing.assert_array_equal(got, want)
    assert got.shape == (4,)


def test_float_precision_as_documented(rng):
    # values in 0..1 (non-integer): a box sum is within (H + W) * 2**-53 * total of the exact one
    image = rng.random((300, 400)).astype(np.float32)
    ii = integral_image(image)
    exact = float(np.sum(image[10:290, 20:390], dtype=np.float64))
    tol = (300 + 400) * 2.0 ** -53 * ii[-1, -1] * 4
    assert abs(box_sum(ii, 10, 20, 290, 390) - exact) <= tol


@pytest.mark.parametrize("bad, err, match", [
    (np.zeros((0, 4)), ValueError, "empty"),
    (np.zeros((3, 0)), ValueError, "empty"),
    (np.zeros(5), ValueError, "dimensions"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), ValueError, "infinity"),
    (np.array([["a"]]), TypeError, "numeric"),
    (np.ones((2, 2), complex), TypeError, "dtype"),
])
def test_integral_image_refuses(bad, err, match):
    with pytest.raises(err, match=match):
        integral_image(bad)
    with pytest.raises(err, match=match):
        squared_integral_image(bad)


def test_box_sum_refuses_bad_bounds():
    ii = integral_image(np.ones((4, 5)))
    with pytest.raises(ValueError, match="rows must lie in 0..4"):
        box_sum(ii, 0, 0, 5, 1)
    with pytest.raises(ValueError, match="columns must lie in 0..5"):
        box_sum(ii, 0, -1, 1, 1)
    with pytest.raises(ValueError, match="end before its start"):
        box_sum(ii, 3, 0, 2, 1)
    with pytest.raises(TypeError, match="integer"):
        box_sum(ii, 0.5, 0, 1, 1)
    with pytest.raises(ValueError, match="broadcast"):
        box_sum(ii, [0, 1], 0, [1, 2, 3], 1)
    with pytest.raises(TypeError, match="dtype"):
        box_sum(np.ones((3, 3), np.int64), 0, 0, 1, 1)
    assert box_sum(ii, 2, 3, 2, 5) == 0.0   # empty box
