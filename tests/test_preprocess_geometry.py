"""Tests of cvcore.preprocess geometry: resize, warp_affine, warp_perspective."""
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from cvcore import preprocess as pp
from cvcore.preprocess.geometry import BORDER_MODES, INTERPOLATIONS
from kernels.reference import resize as ref_resize
from kernels.reference import warp as ref_warp
from tests.conftest import dataset_path, load_test_image

CV2_INTER = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "area": "INTER_AREA"}
CV2_BORDER = {"constant": "BORDER_CONSTANT", "nearest": "BORDER_REPLICATE",
              "reflect": "BORDER_REFLECT", "mirror": "BORDER_REFLECT_101", "wrap": "BORDER_WRAP"}
SKIMAGE_MODE = {"constant": "constant", "nearest": "edge", "reflect": "symmetric",
                "mirror": "reflect", "wrap": "wrap"}


def smooth_image(rows, cols, channels=None):
    """A smooth test pattern in 0..1 (gradients below 0.1 per pixel)."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 0.5 + 0.25 * np.sin(xx / 7.0 + 0.3) + 0.25 * np.cos(yy / 5.0)
    if channels:
        img = np.stack([img * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=-1)
    return img.astype(np.float32)


# ----------------------------------------------------------------------------- resize: by hand
def test_resize_hand_worked():
    x = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    # nearest 4 -> 2: columns floor(0 * 2), floor(1 * 2) = 0, 2
    np.testing.assert_array_equal(pp.resize(x, (1, 2), "nearest"), [[0.0, 2.0]])
    # area 4 -> 2: block means
    np.testing.assert_array_equal(pp.resize(x, (1, 2), "area"), [[0.5, 2.5]])
    # area 4 -> 3: cells of 4/3 pixels: [0, 1.33) = 0 * 3/4 + 1 * 1/4 ... = 0.25, 1.5, 2.75
    np.testing.assert_allclose(pp.resize(x, (1, 3), "area"), [[0.25, 1.5, 2.75]], atol=1e-6)
    # bilinear 4 -> 8: source positions (d + 0.5) / 2 - 0.5 = -0.25 (clamped), 0.25, 0.75, ...
    np.testing.assert_allclose(pp.resize(x, (1, 8), "bilinear"),
                               [[0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]], atol=1e-6)
    # bilinear 4 -> 2 sits half-way between pixel pairs: same as the block mean
    np.testing.assert_allclose(pp.resize(x, (1, 2), "bilinear"), [[0.5, 2.5]], atol=1e-6)


def test_resize_identity_and_dtypes():
    rng = np.random.default_rng(0)
    x = rng.random((7, 9, 3)).astype(np.float32)
    for mode in INTERPOLATIONS:
        np.testing.assert_allclose(pp.resize(x, (7, 9), mode), x, atol=1e-6)
    u8 = (x * 255).astype(np.uint8)
    out = pp.resize(u8, (14, 18), "bilinear")
    assert out.dtype == np.uint8 and out.shape == (14, 18, 3)
    u16 = (x[:, :, 0] * 65535).astype(np.uint16)
    assert pp.resize(u16, (3, 4), "area").dtype == np.uint16
    assert pp.resize(u8[:, :, 0] > 100, (3, 4), "nearest").dtype == np.float32
    assert pp.resize(x[:, :, 0], 5, "nearest").shape == (5, 5)


def test_resize_float32_fast_path_equals_the_general_path(rng):
    """A float32 2-D C-ordered image skips ``check_array`` and the plane copy; the same values
    in any other layout (a strided view, Fortran order, big-endian, read-only, float64, a
    list) take the general path: the results must be the same bits."""
    x = rng.random((37, 52)).astype(np.float32)
    read_only = x.copy()
    read_only.flags.writeable = False
    strided = np.zeros((37, 104), np.float32)
    strided[:, ::2] = x
    others = [np.asfortranarray(x), x.astype(">f4"), read_only, strided[:, ::2],
              x.astype(np.float64), x.tolist()]
    for shape in ((18, 26), (12, 17), (50, 80), (37, 52)):
        for mode in INTERPOLATIONS:
            want = pp.resize(x, shape, mode)
            assert want.dtype == np.float32 and want.flags.c_contiguous
            for other in others:
                np.testing.assert_array_equal(pp.resize(other, shape, mode), want)


# ----------------------------------------------------------------------------- resize: twin
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_matches_readable_twin(rng, interpolation):
    for _ in range(25):
        H, W, h, w = (int(v) for v in rng.integers(1, 30, size=4))
        x = rng.random((H, W, 2)).astype(np.float32)
        expected = ref_resize.resize(x, h, w, interpolation)
        np.testing.assert_allclose(pp.resize(x, (h, w), interpolation), expected, atol=1e-5,
                                   err_msg=f"{(H, W)} -> {(h, w)}")


# ----------------------------------------------------------------------------- resize: OpenCV
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_agrees_with_opencv_random_sizes(rng, interpolation):
    cv2 = pytest.importorskip("cv2")
    flag = getattr(cv2, CV2_INTER[interpolation])
    for _ in range(60):
        H, W = (int(v) for v in rng.integers(1, 40, size=2))
        h, w = (int(v) for v in rng.integers(1, 60, size=2))
        x = rng.random((H, W, int(rng.choice([1, 3])))).astype(np.float32)
        if x.shape[2] == 1:
            x = x[:, :, 0]
        ref = cv2.resize(x, (w, h), interpolation=flag)
        np.testing.assert_allclose(pp.resize(x, (h, w), interpolation), ref, atol=1e-5,
                                   err_msg=f"{(H, W)} -> {(h, w)}")


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("factor", [0.5, 0.25, 1 / 3, 0.37, 0.8, 1.6, 2.0, 3.0])
def test_resize_agrees_with_opencv_real_image(interpolation, factor):
    cv2 = pytest.importorskip("cv2")
    img = load_test_image("roofs1.jpg", mode="rgb")[:160, :200]
    h, w = max(1, round(img.shape[0] * factor)), max(1, round(img.shape[1] * factor))
    ref = cv2.resize(img, (w, h), interpolation=getattr(cv2, CV2_INTER[interpolation]))
    np.testing.assert_allclose(pp.resize(img, (h, w), interpolation), ref, atol=1e-5)
    # uint8: OpenCV uses 11-bit fixed point for bilinear, cvcore float32: within one level
    u8 = np.rint(img * 255).astype(np.uint8)
    ref8 = cv2.resize(u8, (w, h), interpolation=getattr(cv2, CV2_INTER[interpolation]))
    assert np.abs(pp.resize(u8, (h, w), interpolation).astype(int) - ref8).max() <= 1


def test_resize_bilinear_agrees_with_torch(rng):
    """The docstring's claim: bilinear is PyTorch's interpolate(align_corners=False) too."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for _ in range(30):
        H, W, h, w = (int(v) for v in rng.integers(1, 40, size=4))
        x = rng.random((H, W, 2)).astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 2, 0)))[None]
        ref = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
        np.testing.assert_allclose(pp.resize(x, (h, w), "bilinear"), np.moveaxis(ref, 0, 2),
                                   atol=1e-5)


def test_resize_area_agrees_with_pillow_box():
    """Pillow's BOX filter is the same box average as INTER_AREA when shrinking by an integer
    factor (for other factors Pillow's box support differs slightly)."""
    from PIL import Image
    img = load_test_image("scene.pgm")[:120, :160]
    ref = np.asarray(Image.fromarray(img).resize((40, 30), Image.Resampling.BOX))
    np.testing.assert_allclose(pp.resize(img, (30, 40), "area"), ref, atol=1e-5)


def test_area_antialiases_where_nearest_aliases():
    # a 1-pixel checkerboard shrunk 4x: the area mean is the true flat grey 0.5; nearest samples
    # every 4th pixel, which are all black (aliasing turns the grey into 0)
    yy, xx = np.mgrid[0:64, 0:64]
    board = ((yy + xx) % 2).astype(np.float32)
    np.testing.assert_allclose(pp.resize(board, (16, 16), "area"), 0.5, atol=1e-6)
    np.testing.assert_array_equal(pp.resize(board, (16, 16), "nearest"), 0.0)


# ----------------------------------------------------------------------------- warps
def _full(M):
    full = np.eye(3)
    full[: M.shape[0]] = M
    return full


AFFINE = np.array([[0.93, 0.21, 3.37], [-0.17, 1.07, -2.71]])
HOMOGRAPHY = np.array([[1.01, 0.11, 2.3], [0.053, 0.947, -3.1], [1.1e-3, -5.3e-4, 1.0]])


def test_warp_hand_worked():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])       # move right by one column
    out = pp.warp_affine(x, shift, interpolation="nearest", cval=-1)
    np.testing.assert_array_equal(out, np.c_[np.full(3, -1), x[:, :3]])
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])        # half a column: mean of pairs
    out = pp.warp_affine(x, half, mode="nearest")
    np.testing.assert_allclose(out[:, 1:], (x[:, :-1] + x[:, 1:]) / 2)
    np.testing.assert_allclose(out[:, 0], x[:, 0])              # edge pixel repeated
    np.testing.assert_array_equal(pp.warp_affine(x, np.eye(3)[:2]), x)
    np.testing.assert_array_equal(pp.warp_perspective(x, np.eye(3)), x)
    # a homography that is affine gives the same as warp_affine
    np.testing.assert_allclose(pp.warp_perspective(x, _full(AFFINE)), pp.warp_affine(x, AFFINE),
                               atol=1e-6)
    # wrap mode: shifting a periodic image by its width changes nothing
    period = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 3.0]])
    np.testing.assert_allclose(pp.warp_affine(x, period, mode="wrap"), x)


@pytest.mark.parametrize("mode", BORDER_MODES)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_warp_matches_readable_twin(rng, mode, interpolation):
    x = rng.random((9, 11, 2)).astype(np.float32)
    for M in (AFFINE, np.array([[0.4, -1.3, 20.0], [1.2, 0.3, -4.0]])):
        expected = ref_warp.warp(x, np.linalg.inv(_full(M)), 12, 10, interpolation, mode, 0.25)
        got = pp.warp_affine(x, M, (12, 10), interpolation, mode, 0.25)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    expected = ref_warp.warp(x, np.linalg.inv(HOMOGRAPHY), 12, 10, interpolation, mode, 0.25)
    got = pp.warp_perspective(x, HOMOGRAPHY, (12, 10), interpolation, mode, 0.25)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("mode", BORDER_MODES)
@pytest.mark.parametrize("interpolation, order", [("nearest", 0), ("bilinear", 1)])
def test_warp_agrees_with_skimage(rng, mode, interpolation, order):
    transform = pytest.importorskip("skimage.transform")
    x = rng.random((30, 40))
    for M, fn in ((AFFINE, pp.warp_affine), (HOMOGRAPHY, pp.warp_perspective)):
        inverse = transform.ProjectiveTransform(np.linalg.inv(_full(M)))
        ref = transform.warp(x, inverse, output_shape=(35, 45), order=order,
                             mode=SKIMAGE_MODE[mode], cval=0.3, preserve_range=True)
        got = fn(x, M, (35, 45), interpolation, mode, 0.3)
        if order == 1:
            np.testing.assert_allclose(got, ref, atol=1e-6)
        else:
            # a source position exactly half-way between pixels may round either way
            assert np.mean(np.abs(got - ref) > 1e-6) < 0.01


@pytest.mark.parametrize("mode", BORDER_MODES)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_warp_agrees_with_opencv(mode, interpolation):
    """OpenCV rounds source positions to 1/32 pixel (INTER_BITS = 5), so on a smooth image
    (gradient < 0.1 / pixel) bilinear results differ by at most about 0.1 / 64 inside the image,
    a little more where a tap meets the constant border; nearest differs only where the rounded
    position crosses a half-pixel."""
    cv2 = pytest.importorskip("cv2")
    img = smooth_image(60, 80, channels=3)
    flags = getattr(cv2, CV2_INTER[interpolation])
    border = getattr(cv2, CV2_BORDER[mode])
    for M, fn, cv_fn in ((AFFINE, pp.warp_affine, cv2.warpAffine),
                         (HOMOGRAPHY, pp.warp_perspective, cv2.warpPerspective)):
        ref = cv_fn(img, M, (90, 70), flags=flags, borderMode=border, borderValue=(0.3,) * 3)
        got = fn(img, M, (70, 90), interpolation, mode, 0.3)
        diff = np.abs(got - ref)
        if interpolation == "bilinear":
            assert np.quantile(diff, 0.99) < 2.5e-3 and diff.max() < 2e-2
        else:
            assert np.mean(diff > 1e-6) < 0.02


def test_warp_perspective_oxford_pair():
    """The Oxford graf homography maps img1 onto img2: warping img1 by it must line up with img2
    far better than the unwarped img1 does (on the region where the warp has data)."""
    folder = dataset_path("oxford-affine", "graf")
    from PIL import Image
    candidates = sorted(p for p in folder.iterdir() if p.name.startswith("img1."))
    with Image.open(candidates[0]) as im:
        img1 = np.asarray(im.convert("L"), dtype=np.float32) / 255
    img2_path = sorted(p for p in folder.iterdir() if p.name.startswith("img2."))[0]
    with Image.open(img2_path) as im:
        img2 = np.asarray(im.convert("L"), dtype=np.float32) / 255
    H = np.loadtxt(folder / "H1to2p")
    # work at half size to keep the test quick: S H S^-1 with S = diag(0.5, 0.5, 1)
    S = np.diag([0.5, 0.5, 1.0])
    small1 = pp.resize(img1, (img1.shape[0] // 2, img1.shape[1] // 2), "area")
    small2 = pp.resize(img2, (img2.shape[0] // 2, img2.shape[1] // 2), "area")
    warped = pp.warp_perspective(small1, S @ H @ np.linalg.inv(S), small2.shape, cval=-1)
    valid = warped >= 0
    assert valid.mean() > 0.5
    aligned = np.abs(warped - small2)[valid].mean()
    unaligned = np.abs(small1 - small2)[valid].mean()
    assert aligned < 0.6 * unaligned


# ----------------------------------------------------------------------------- errors
def test_geometry_rejects_bad_input():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="interpolation"):
        pp.resize(x, (2, 2), "cubic")
    with pytest.raises(ValueError, match="output_shape"):
        pp.resize(x, (0, 2))
    with pytest.raises(TypeError, match="output_shape"):
        pp.resize(x, (2.5, 2))
    with pytest.raises(TypeError, match="output_shape"):
        pp.resize(x, None)
    with pytest.raises(ValueError, match="too large"):
        pp.resize(x, (100000, 100000))
    for fn, M in ((pp.warp_affine, np.eye(3)[:2]), (pp.warp_perspective, np.eye(3))):
        with pytest.raises(ValueError, match="mode"):
            fn(x, M, mode="edge")
        with pytest.raises(ValueError, match="interpolation"):
            fn(x, M, interpolation="area")
        with pytest.raises(ValueError, match="shape"):
            fn(x, np.eye(4))
        with pytest.raises(ValueError, match="singular"):
            fn(x, np.zeros_like(M))
        with pytest.raises(ValueError, match="NaN"):
            fn(x, np.full_like(M, np.nan))
        with pytest.raises(ValueError, match="cval"):
            fn(x, M, cval=float("nan"))
    for call in (lambda a: pp.resize(a, (2, 2)), lambda a: pp.warp_affine(a, np.eye(3)[:2]),
                 lambda a: pp.warp_perspective(a, np.eye(3))):
        with pytest.raises(ValueError, match="dimensions"):
            call(np.zeros(5))
        with pytest.raises(ValueError, match="dimensions"):
            call(np.zeros((2, 2, 2, 2)))
        with pytest.raises(ValueError, match="empty"):
            call(np.zeros((0, 3)))
        with pytest.raises(ValueError, match="NaN"):
            call(np.array([[np.nan, 1.0]]))
        with pytest.raises(TypeError):
            call(np.zeros((2, 2), complex))
        # float32, 2-D, C order: the resize's fast path past check_array refuses the same
        with pytest.raises(ValueError, match="empty"):
            call(np.zeros((0, 3), np.float32))
        with pytest.raises(ValueError, match="NaN"):
            call(np.array([[np.nan, 1.0]], np.float32))
        with pytest.raises(ValueError, match="infinity"):
            call(np.array([[np.inf, 1.0]], np.float32))


def test_warp_point_at_infinity_gets_cval():
    x = np.ones((5, 5), np.float32)
    # the line x = 2 of the output comes from infinity: h_2 . (x', y', 1) = 0 for x' = 2
    Hinv = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, -2.0]])
    out = pp.warp_perspective(x, np.linalg.inv(Hinv), mode="nearest", cval=7.0)
    np.testing.assert_array_equal(out[:, 2], 7.0)


# ----------------------------------------------------------------------------- properties
@settings(max_examples=40, deadline=None)
@given(data=st.data(),
       dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.bool_]),
       shape=st.one_of(st.tuples(st.integers(1, 9), st.integers(1, 9)),
                       st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4))),
       out_shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
       interpolation=st.sampled_from(INTERPOLATIONS), mode=st.sampled_from(BORDER_MODES))
def test_property_random_inputs_do_not_crash(data, dtype, shape, out_shape, interpolation, mode):
    if np.dtype(dtype).kind == "f":
        x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))
    else:
        x = data.draw(hnp.arrays(dtype, shape))
    if data.draw(st.booleans()):
        x = x[::-1, ::2]                               # negative and non-unit strides
    out = pp.resize(x, out_shape, interpolation)
    assert out.shape == out_shape + x.shape[2:]
    assert np.isfinite(out.astype(np.float64)).all()
    if x.dtype in (np.uint8, np.uint16):
        assert out.dtype == x.dtype
    M = data.draw(hnp.arrays(np.float64, (2, 3), elements=st.floats(-3, 3)))
    if abs(np.linalg.det(M[:, :2])) > 1e-3:
        w_interp = "nearest" if interpolation == "nearest" else "bilinear"
        out = pp.warp_affine(x, M, out_shape, w_interp, mode, 0.5)
        assert out.shape == out_shape + x.shape[2:]
        Hm = np.vstack([M, data.draw(hnp.arrays(np.float64, (1, 3), elements=st.floats(-1, 1)))])
        if np.linalg.cond(Hm) < 1e8:
            out = pp.warp_perspective(x, Hm, out_shape, w_interp, mode, 0.5)
            assert np.isfinite(out.astype(np.float64)).all()


@settings(max_examples=20, deadline=None)
@given(H=st.integers(1, 20), W=st.integers(1, 20), k=st.integers(1, 4))
def test_property_area_preserves_mean_for_integer_factors(H, W, k):
    x = np.random.default_rng(H * 100 + W).random((H * k, W * k)).astype(np.float32)
    out = pp.resize(x, (H, W), "area")
    np.testing.assert_allclose(out.mean(), x.mean(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- fast kernels
def test_all_finite_bits_matches_numpy(rng):
    """The integer finiteness test of the geometry functions against np.isfinite, on every kind
    of special value (both NaN signs, both infinities, the largest finite float, -0.0)."""
    from kernels.finite import all_finite_bits
    specials = [np.nan, -np.nan, np.inf, -np.inf, np.finfo(np.float32).max, -0.0, 1e-45]
    for value in specials:
        for size in (1, 17, 1000):
            x = rng.random(size).astype(np.float32)
            x[rng.integers(size)] = value
            assert all_finite_bits(x.view(np.uint32)) == bool(np.isfinite(x).all()), (value, size)


@pytest.mark.parametrize("shape_in, shape_out", [((64, 48), (32, 24)), ((60, 90), (20, 30)),
                                                 ((64, 48), (32, 16)), ((50, 70), (33, 41)),
                                                 ((30, 20), (47, 61)), ((37, 41), (37, 82))])
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_fast_paths_match_twin(rng, shape_in, shape_out, interpolation):
    """Every kernel path (integer block mean, rows-first and columns-first separable passes,
    several channels, row blocks of the parallel split) against the readable twin."""
    x = rng.random(shape_in + (3,)).astype(np.float32)
    expected = ref_resize.resize(x, *shape_out, interpolation)
    np.testing.assert_allclose(pp.resize(x, shape_out, interpolation), expected, atol=1e-5)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("value, name", [(np.nan, "NaN"), (np.inf, "infinity"),
                                         (-np.inf, "infinity")])
def test_resize_rejects_non_finite_float32_on_every_path(interpolation, value, name):
    """float32 input is checked after the kernel on the block-mean path (its output cannot lose
    a non-finite input) and before it elsewhere: each path must still name the bad value."""
    for shape_out in ((4, 6), (3, 5), (16, 24)):        # block mean, general shrink, enlarge
        x = np.ones((8, 12), np.float32)
        x[5, 7] = value
        with pytest.raises(ValueError, match=name):
            pp.resize(x, shape_out, interpolation)
    big = np.full((8, 12), np.finfo(np.float32).max, np.float32)   # finite, overflows the sum
    assert np.isinf(pp.resize(big, (4, 6), "area")).all()


@pytest.mark.parametrize("bands", [1, 3])
def test_rows_first_bilinear_rejects_a_nan_in_any_input_row(monkeypatch, bands):
    """The rows-first pass of a bilinear shrink scans the two rows it blends in the blend
    itself (``kernels.resize._blend_scan``) and the rows it skips alone: a NaN in any input
    row, read or skipped, first, last or shared by two output rows, in one band or several,
    must be rejected (shrinking 40 rows to 27 reads every row, to 13 skips some)."""
    import numba

    from cvcore import _team

    monkeypatch.setattr(_team, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_team, "bands_for", lambda rows, work: (bands, numba.get_num_threads()))
    for rows_out in (27, 13):
        x = np.ones((40, 20), np.float32)
        pp.resize(x, (rows_out, 15), "bilinear")
        for row in range(40):
            bad = x.copy()
            bad[row, 11] = np.nan
            with pytest.raises(ValueError, match="NaN"):
                pp.resize(bad, (rows_out, 15), "bilinear")


def test_affine_run_is_exact(rng):
    """The affine kernels find the run of output pixels whose source coordinate
    ``a * x + b`` (float64, as the row loop computes it) lies in ``[lower, upper)`` from a
    division and a correction: it must be exactly the set a pixel-by-pixel test gives, for
    steep, shallow, zero, negative and tiny slopes, offsets far outside, and coordinates
    landing exactly on the bounds."""
    from kernels.warp import _affine_run, _span
    slopes = [1.0, -1.0, 0.5, -0.5, 0.3, -0.7, 2.0, 1e-12, -1e-12, 0.0, -0.0, 1e6, -1e6,
              1.0 / 3.0, 0.1 + 0.2]
    offsets = [0.0, -0.0, -5.0, -5.5, 3.0, 7.25, -1e9, 1e9, 1e-300, 63.0, 64.0, 1e15]
    cases = [(a, b) for a in slopes for b in offsets]
    cases += [(rng.normal() * 10 ** rng.uniform(-6, 2), rng.normal() * 10 ** rng.uniform(-3, 3))
              for _ in range(300)]
    # slopes below the rounding step of the offset near a bound: the computed coordinate
    # crosses the bound well before (or after) the real solution (t - b) / a
    for t in (63.0, 64.0, 1.0, -1.0):
        step = np.spacing(t)
        for k in (1, 2, 3):
            for f in (0.07, 0.1, 0.3):
                cases += [(f * step, t - k * step), (-f * step, t + k * step)]
    for n in (1, 64, 200):
        for lower, upper in ((0.0, 63.0), (-1.0, 64.0), (0.0, 1.0), (0.0, 0.0)):
            for a, b in cases:
                x = np.arange(n, dtype=np.float64)
                p = a * x + b                        # the same IEEE operations, no fusing
                inside = np.flatnonzero((lower <= p) & (p < upper))
                lo, hi = _span(a, b, n, lower, upper)
                if inside.size:
                    assert (lo, hi) == (inside[0], inside[-1] + 1), (a, b, n, lower, upper)
                    assert inside.size == hi - lo        # one run: p is monotone in x
                else:
                    assert lo >= hi, (a, b, n, lower, upper)
    # both coordinates: the intersection; non-finite coefficients give no run
    assert _affine_run(1.0, -3.0, 0.0, 2.0, 10, 0.0, 5.0, 5.0) == (3, 8)
    assert _affine_run(1.0, -3.0, 0.0, 7.0, 10, 0.0, 5.0, 5.0) == (0, 0)
    assert _affine_run(np.inf, 0.0, 0.0, 2.0, 10, 0.0, 5.0, 5.0) == (0, 0)
    assert _affine_run(1.0, np.nan, 0.0, 2.0, 10, 0.0, 5.0, 5.0) == (0, 0)


# exact (dyadic) maps: positions on pixel centres, half-pixels and the image edges, where a run
# boundary or a rounding tie is decided by the last bit
EXACT_AFFINE = [np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]),       # integer shift
                np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]),        # half a pixel: ties
                np.array([[0.0, -1.0, 6.0], [1.0, 0.0, 0.0]]),       # 90 degrees: a == 0
                np.array([[-1.0, 0.0, 8.0], [0.0, -1.0, 6.0]]),      # 180 degrees: a < 0
                np.array([[2.0, 0.0, -1.0], [0.0, 0.5, 1.0]]),       # scale 2 and 1/2
                np.array([[1.0, 0.5, 0.0], [0.25, 1.0, -0.75]]),     # shears
                np.array([[1.0, 0.0, 500.0], [0.0, 1.0, 0.0]])]      # everything outside


@pytest.mark.parametrize("mode", BORDER_MODES)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_warp_affine_runs_and_borders_match_twin(rng, mode, interpolation):
    """The affine kernels (a run of inside pixels per row, chunks of positions, the border
    rules only off the run) against the readable twin: exact maps whose positions hit the run
    boundaries and rounding ties, 1-pixel and 1-row images, outputs wider than a chunk."""
    for shape in ((7, 9, 2), (1, 7), (7, 1), (1, 1), (2, 2)):
        x = rng.random(shape).astype(np.float32)
        x3 = x if x.ndim == 3 else x[..., None]
        for M in EXACT_AFFINE:
            for out_shape in ((8, 150), (5, 3)):
                inverse = np.linalg.inv(_full(M))
                expected = ref_warp.warp(x3, inverse, *out_shape, interpolation, mode, 0.25)
                got = pp.warp_affine(x, M, out_shape, interpolation, mode, 0.25)
                got = got if got.ndim == 3 else got[..., None]
                np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=str((M, shape)))


@pytest.mark.parametrize("mode", BORDER_MODES)
def test_warp_affine_equals_the_general_kernel(rng, mode):
    """``warp_affine`` (row-wise positions ``a * x + (b * y + c)``) against the general
    homography kernel given the same affine matrix (positions ``(a * x + b * y) + c``): the
    same samples to float rounding on random maps, sizes across the chunk length."""
    x = rng.random((40, 70, 3)).astype(np.float32)
    mismatched = 0
    for _ in range(6):
        M = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) + rng.normal(0, 0.3, (2, 3))
        M[:, 2] = rng.uniform(-20, 20, 2)
        for interpolation in ("bilinear", "nearest"):
            got = pp.warp_affine(x, M, (45, 131), interpolation, mode, 0.5)
            ref = pp.warp_perspective(x, _full(M), (45, 131), interpolation, mode, 0.5)
            if interpolation == "bilinear":
                np.testing.assert_allclose(got, ref, atol=1e-5)
            else:                  # a position within rounding of a half-pixel may go either way
                mismatched += np.count_nonzero(got != ref)
    assert mismatched <= 3


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "openmp"])
def test_bands_give_the_same_result_and_still_reject_non_finite(rng, monkeypatch, pool):
    """The geometry kernels each compute bands of output rows, run on the helper pool
    (``cvcore._team.run_pooled``, parts taken one by one) or one band per thread of Numba's team
    (``cvcore._team.run_openmp``, the kernel called through its address from a ``prange``):
    in many bands every resize kind and both warps must give the one-band result bit for bit,
    and a NaN in an input row owned by any band (read or skipped by the sampling) must still be
    rejected."""
    import numba

    from cvcore import _team
    from kernels import team as team_kernels

    x = rng.random((600, 264, 2)).astype(np.float32)
    M = np.array([[0.9, 0.2, 5.0], [-0.15, 1.05, -3.0]])
    calls = [lambda a: pp.resize(a, (300, 132), "nearest"),    # 2x: uint64 pairs
             lambda a: pp.resize(a, (300, 132), "area"),       # block mean
             lambda a: pp.resize(a, (422, 190), "bilinear"),   # separable, rows first
             lambda a: pp.resize(a, (422, 190), "area"),
             lambda a: pp.resize(a, (820, 300), "bilinear"),   # separable, columns first
             lambda a: pp.resize(a, (820, 300), "nearest"),    # gather, repeated rows
             lambda a: pp.resize(a, (599, 263), "nearest"),    # gather, every row read
             lambda a: pp.resize(a, (200, 88), "area"),        # block mean 3 x 3
             lambda a: pp.warp_affine(a, M, (560, 270)),
             lambda a: pp.warp_perspective(a, np.vstack([M, [1e-4, 2e-4, 1]]), (560, 270),
                                           "nearest")]
    monkeypatch.setattr(_team, "MIN_PARALLEL_PIXELS", 0)      # split even the small calls
    monkeypatch.setitem(_team.POOL, "on", pool)
    bands_used, regions = [], []
    real_team, real_pooled = team_kernels.run_team, _team.run_pooled
    monkeypatch.setattr(team_kernels, "run_team", lambda entry, address, data, n, bands, failed:
                        regions.append(bands)
                        or real_team(entry, address, data, n, bands, failed))
    monkeypatch.setattr(_team, "run_pooled", lambda p, kernel, n, threads, args:
                        regions.append(threads) or real_pooled(p, kernel, n, threads, args))
    monkeypatch.setattr(_team, "bands_for", lambda rows, work:
                        bands_used.append(1) or (1, numba.get_num_threads()))
    expected = [call(x) for call in calls]
    assert len(bands_used) == len(calls) and regions == []    # one band: a plain call
    for bands in (2, 5, 7):                                   # more bands than threads too
        monkeypatch.setattr(_team, "bands_for", lambda rows, work, b=bands:
                            bands_used.append(b) or (b, numba.get_num_threads()))
        bands_used.clear()
        regions.clear()
        for call, want in zip(calls, expected):
            np.testing.assert_array_equal(call(x), want)
        assert bands_used == [bands] * len(calls)
        assert regions == [bands] * len(calls)        # every call ran in a region / the pool
        for row in (1, 301, 599):                             # rows of the first and last bands
            bad = x.copy()
            bad[row, 7, 1] = np.nan
            for call in calls[:8]:
                with pytest.raises(ValueError, match="NaN"):
                    call(bad)
    read_only = x.copy()                                      # its own compiled kernels
    read_only.flags.writeable = False
    for call, want in zip(calls, expected):
        np.testing.assert_array_equal(call(read_only), want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("pool", [True, False], ids=["pool", "openmp"])
def test_resize_in_a_forked_child_after_a_parallel_resize(rng, monkeypatch, pool):
    """GNU OpenMP terminates a forked child that starts a parallel region after its parent used
    one, and a child has none of the parent's pool threads: the child must resize and warp
    (serially) and get the parent's result."""
    import numba

    from cvcore import _team
    from kernels import team as team_kernels

    if numba.get_num_threads() < 2:
        pytest.skip("needs two Numba threads for a parallel region in the parent")
    monkeypatch.setattr(_team, "usable_threads", lambda cap: cap)
    monkeypatch.setitem(_team.POOL, "on", pool)
    regions = []
    real_team, real_pooled = team_kernels.run_team, _team.run_pooled
    monkeypatch.setattr(team_kernels, "run_team", lambda entry, address, data, n, bands, failed:
                        regions.append(bands)
                        or real_team(entry, address, data, n, bands, failed))
    monkeypatch.setattr(_team, "run_pooled", lambda p, kernel, n, threads, args:
                        regions.append(threads) or real_pooled(p, kernel, n, threads, args))
    x = rng.random((600, 528)).astype(np.float32)       # above MIN_PARALLEL_PIXELS each

    def run():
        return [pp.resize(x, (300, 264), "nearest"), pp.resize(x, (300, 264), "area"),
                pp.resize(x, (422, 190), "bilinear"), pp.warp_affine(x, np.eye(3)[:2] * 1.1)]

    want = run()
    assert regions == [2] * len(want)             # the parent used parallel regions / the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                               # the child
        ok = 0
        try:
            regions.clear()
            got = run()
            ok = all(np.array_equal(g, w) for g, w in zip(got, want)) and regions == []
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and answer == b"1"


@pytest.mark.parametrize("n_in, n_out, interpolation", [(1024, 700, "bilinear"), (64, 96, "bilinear"),
                                                        (50, 33, "area"), (40, 77, "area"),
                                                        (17, 9, "bilinear"), (100, 40, "bilinear"),
                                                        (12, 20, "bilinear")])
def test_vector_horizontal_pass_matches_its_plain_form(rng, n_in, n_out, interpolation):
    """The horizontal pass's vector blocks (AVX2 permutes from a window of 2 * LANES input
    values, where the host has AVX2) and their plain Numba form give the column table's sums
    ``sum_t w[t, x] * src[idx[t, x]]`` (taps in order, float32) bit for bit. A table whose
    blocks' taps do not fit a window (100 -> 40: shrinking by 2.5) or whose input row is
    shorter than one (12 -> 20) has no blocks: the scalar loop does every output."""
    from cvcore.preprocess.geometry import _axis_table, _column_blocks
    from kernels import resize as k

    growing = n_out > n_in
    idx, w = _axis_table(n_in, n_out, interpolation, growing)
    base, rel = _column_blocks(n_in, n_out, interpolation, growing)
    if n_in < 2 * k.LANES or n_in > 2 * n_out:
        assert base.size == 0 and rel.shape == (idx.shape[0], 0)
    else:
        assert base.size == n_out // k.LANES and 0 <= rel.min() and rel.max() < 2 * k.LANES
    src = rng.random(n_in).astype(np.float32)
    expected = w[0] * src[idx[0]]
    for t in range(1, idx.shape[0]):
        expected = expected + w[t] * src[idx[t]]
    blocks = base.size * k.LANES
    plain = np.zeros(n_out, np.float32)
    k._blocks_plain(src, base, rel, w, plain)
    np.testing.assert_array_equal(plain[:blocks], expected[:blocks])
    full = np.zeros(n_out, np.float32)
    k._horizontal(src, idx, w, base, rel, full)        # blocks (the host's kind) + the rest
    np.testing.assert_array_equal(full, expected)
    rows = [rng.random(n_in).astype(np.float32) for _ in range(4)]   # four rows per call
    sums = [sum((w[t] * r[idx[t]] for t in range(1, idx.shape[0])), w[0] * r[idx[0]])
            for r in rows]
    plain4, host4 = np.zeros((4, n_out), np.float32), np.zeros((4, n_out), np.float32)
    k._blocks4_plain(*rows, base, rel, w, *plain4)
    k._horizontal4(*rows, idx, w, base, rel, *host4)
    for i in range(4):
        np.testing.assert_array_equal(plain4[i, :blocks], sums[i][:blocks])
        np.testing.assert_array_equal(host4[i], sums[i])
