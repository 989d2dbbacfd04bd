"""SURF: box responses against dense filters, blob scales, 90-degree rotation, the readable twin,
the interface shared with SIFT, mahotas' SURF where installed, and errors."""
import numpy as np
import pytest

from cvcore.features import (SurfKeypoints, assign_orientations, describe_surf, detect_surf,
                             draw_keypoints, fast_hessian, hessian_maxima, integral_gray,
                             interpolate_maxima, orientation_angles, sift, surf)
from cvcore.features import _surf as S
from cvcore.match import match_descriptors
from kernels import surf as ks
from kernels.reference import surf as ref
from tests.conftest import load_test_image


def gaussian_blob(sigma, n, bright=True):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    g = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2))
    return (0.2 + 0.6 * g) if bright else (0.8 - 0.6 * g)


# ------------------------------------------------------------------ box filters


def test_box_filters_by_hand():
    dxx, dyy, dxy = ref.box_filters(9)
    # sec. 3.2, fig. 1: lobes of 3, the y-filter 5 wide, the mixed one four 3x3 squares
    assert dyy[:, 2:7].sum(axis=1).tolist() == [5, 5, 5, -10, -10, -10, 5, 5, 5]
    assert dyy[:, :2].any() == False and dyy.sum() == 0      # noqa: E712
    np.testing.assert_array_equal(dxx, dyy.T)
    assert dxy[1:4, 1:4].sum() == 9 and dxy[5:8, 1:4].sum() == -9 and dxy[4].any() == False  # noqa
    # the 3 x 3 filter is the plain second difference and the cross difference
    dxx3, dyy3, dxy3 = ref.box_filters(3)
    np.testing.assert_array_equal(dyy3, [[0, 1, 0], [0, -2, 0], [0, 1, 0]])
    np.testing.assert_array_equal(dxy3, [[1, 0, -1], [0, 0, 0], [-1, 0, 1]])


@pytest.mark.parametrize("step", [1, 2])
def test_box_responses_equal_dense_filters(rng, step):
    # every sample, border ones (zero padding) included, against the dense filters' sums
    image = rng.random((31, 44)).astype(np.float32)
    ii = integral_gray(image)
    sizes = np.array([3, 9, 15, 21], np.int64)
    Hs, Ws = -(-31 // step), -(-44 // step)
    det = np.empty((4, Hs, Ws), np.float32)
    sign = np.empty((4, Hs, Ws), np.int8)
    ks.hessian_octave(ii, sizes, step, det, sign)
    for k, L in enumerate(sizes):
        for i in range(Hs):
            for j in range(Ws):
                want, want_sign = ref.hessian_response(image, i * step, j * step, int(L))
                assert abs(det[k, i, j] - want) <= 1e-6 * max(1.0, abs(want))
                assert sign[k, i, j] == want_sign


def test_filter_sizes_follow_the_paper():
    # sec. 3.3: 9, 15, 21, 27 then 15, 27, 39, 51 then 27, 51, 75, 99 (steps 6, 12, 24)
    assert S.filter_sizes(0).tolist() == [9, 15, 21, 27]
    assert S.filter_sizes(1).tolist() == [15, 27, 39, 51]
    assert S.filter_sizes(2).tolist() == [27, 51, 75, 99]
    assert S.size_to_scale(9) == pytest.approx(1.2)
    assert ks.MIXED_WEIGHT == 0.9        # eq. 4


@pytest.mark.parametrize("small_scales", [True, False])
def test_shared_layers_are_copied_exactly(rng, small_scales):
    # a layer whose filter side the finer octave already has is every other sample of it: the
    # pyramid equals computing every layer of every octave directly (steps 1, 2, 4 and 2, 4, 8)
    ii = integral_gray(rng.random((83, 101)).astype(np.float32))
    for initial_step in (1, 2):
        pyr = fast_hessian(ii, n_octaves=3, initial_step=initial_step, small_scales=small_scales)
        assert len(pyr.det) == 3
        for det, sign, sizes, step in zip(pyr.det, pyr.sign, pyr.sizes, pyr.steps):
            want_det, want_sign = np.empty_like(det), np.empty_like(sign)
            ks.hessian_octave(ii, sizes, step, want_det, want_sign)
            np.testing.assert_array_equal(det, want_det)
            np.testing.assert_array_equal(sign, want_sign)


# ------------------------------------------------------------------ scale


@pytest.mark.parametrize("sigma", [2.0, 3.0, 4.0, 6.0, 8.0, 10.0])
@pytest.mark.parametrize("bright", [True, False])
def test_blob_scale_within_a_tenth_of_an_octave(sigma, bright):
    n = max(161, int(16 * sigma) | 1)
    kp, _ = surf(gaussian_blob(sigma, n, bright), threshold=1e-6)
    top = kp[0]
    centre = (n - 1) / 2
    np.testing.assert_allclose(top.xy[0], [centre, centre], atol=0.05)
    assert abs(np.log2(top.size[0] / (2 * sigma))) <= 0.1     # size = 2 sigma of the blob
    assert top.laplacian[0] == (-1 if bright else 1)           # bright blob: Dxx + Dyy < 0


def test_small_scales_reach_below_the_papers_pyramid():
    blob = gaussian_blob(1.8, 81)
    kp, _ = surf(blob, threshold=1e-6)
    assert abs(np.log2(kp.size[0] / 3.6)) <= 0.15
    kp_paper, _ = surf(blob, threshold=1e-6, small_scales=False)
    assert kp_paper.size[0] > 1.4 * 3.6      # the paper's search starts at 15 x 15


# ------------------------------------------------------------------ rotation by 90 degrees


def test_rotation_by_90_degrees():
    # (W - 1) and (H - 1) divisible by 8: the sample grids of octaves 0..3 map onto themselves
    image = load_test_image("roofs1.jpg")[100:297, 100:353]       # 197 x 253
    kp, desc = surf(image, threshold=0.002)
    rot = np.ascontiguousarray(np.rot90(image))                    # new[i, j] = old[j, W-1-i]
    kp_r, desc_r = surf(rot, threshold=0.002)
    W = image.shape[1]
    moved = np.stack([kp.xy[:, 1], W - 1 - kp.xy[:, 0]], axis=1)   # (x, y) -> (y, W - 1 - x)
    d = np.linalg.norm(moved[:, None, :] - kp_r.xy[None, :, :], axis=2)
    nearest = d.argmin(axis=1)
    same = (d.min(axis=1) < 1e-3) & np.isclose(kp.size, kp_r.size[nearest], rtol=1e-4)
    assert len(kp) >= 30 and same.mean() >= 0.95
    a, b = kp[same], kp_r[nearest[same]]
    turn = np.mod(a.angle - 90.0 - b.angle + 180.0, 360.0) - 180.0
    assert np.median(np.abs(turn)) < 0.05 and np.mean(np.abs(turn) < 1.0) >= 0.9
    # descriptors of the corresponding keypoints: equal up to interpolation
    close = np.abs(turn) < 1.0
    err = np.linalg.norm(desc[same][close] - desc_r[nearest[same]][close], axis=1)
    assert np.median(err) < 0.01 and np.mean(err < 0.05) >= 0.9
    # and the descriptor matcher pairs them
    m = match_descriptors(desc, desc_r)
    right = nearest[m[:, 0]] == m[:, 1]
    assert right.mean() >= 0.9


def test_upright_descriptor_is_exact_under_90_degree_turns():
    # U-SURF at angle 0 and the turned path at angle 90 read the same wavelets, rotated
    image = load_test_image("box.pgm")[40:161, 40:201]
    ii = integral_gray(image)
    rot = np.ascontiguousarray(np.rot90(image, k=-1))              # new[i, j] = old[H-1-j, i]
    H = image.shape[0]
    kp = SurfKeypoints.from_xy([[60.0, 50.0], [80.0, 70.0]], size=[6.0, 9.0], angle=0.0)
    kp_r = SurfKeypoints.from_xy([[H - 1 - 50.0, 60.0], [H - 1 - 70.0, 80.0]], size=[6.0, 9.0],
                                 angle=90.0)
    np.testing.assert_allclose(describe_surf(ii, kp), describe_surf(integral_gray(rot), kp_r),
                               atol=1e-5)


# ------------------------------------------------------------------ readable twin


def test_orientation_and_descriptor_match_the_twin():
    image = load_test_image("box.pgm")[60:140, 80:180].astype(np.float64)
    ii = integral_gray(image)
    kp = SurfKeypoints.from_xy([[50.3, 40.6], [30.0, 35.0], [70.2, 44.9], [41.7, 38.2],
                                [55.0, 30.5]], size=[4.0, 6.5, 3.1, 5.0, 7.0],
                               angle=[0.0, 33.0, 250.0, 90.0, 180.0])
    s = S.paper_scale(kp.size)
    angles = orientation_angles(ii, kp)
    for q in range(len(kp)):
        want = ref.orientation(image, kp.xy[q, 0], kp.xy[q, 1], s[q])
        diff = abs((angles[q] - want + 180.0) % 360.0 - 180.0)
        assert diff < 1e-3
    for extended in (False, True):
        got = describe_surf(ii, kp, extended=extended)
        for q in range(len(kp)):
            args = (image, kp.xy[q, 0], kp.xy[q, 1], s[q], kp.angle[q], extended)
            np.testing.assert_allclose(got[q], ref.descriptor(*args), atol=2e-6)
            # the paper reads each wavelet at its turned sample; the upright grid of responses
            # agrees exactly at multiples of 90 degrees, elsewhere up to the interpolation (on
            # this sharp-edged image 0.04-0.35 in L2 between unit vectors at s = 1.1-2.4 px; on
            # Oxford graf / boat both give the same matching accuracy, 0.385 / 0.706 against
            # 0.398 / 0.702)
            err = np.linalg.norm(got[q] - ref.descriptor_direct(*args))
            assert err < (1e-5 if kp.angle[q] % 90 == 0 else 0.4)


def test_turned_grid_reaches_every_turned_sample():
    # the kernel's upright response grid is trimmed per angle: every turned sample of the 20 x 20
    # window must still have its four grid neighbours on it, and the trim is exact at 0 and 45
    uv, _, _ = ks.descriptor_samples()
    angles = np.concatenate([np.arange(0.0, 360.0, 0.7), [44.999, 45.0, 89.9999, 90.0, 270.0]])
    for angle in angles:
        t = np.radians(angle)
        co, si = np.cos(t), np.sin(t)
        n = ks.turned_grid_size(co, si)
        assert n % 2 == 0 and n <= ks.TURNED_GRID
        c = 0.5 * (n - 1)
        gx = uv[:, 0] * co - uv[:, 1] * si + c
        gy = uv[:, 0] * si + uv[:, 1] * co + c
        assert gx.min() >= -1e-9 and gy.min() >= -1e-9
        assert gx.max() <= n - 1 + 1e-9 and gy.max() <= n - 1 + 1e-9
    assert ks.turned_grid_size(1.0, 0.0) == 20 and ks.turned_grid_size(0.5 ** 0.5, 0.5 ** 0.5) == 28


# ------------------------------------------------------------------ stages and interface


def test_stages_compose_to_surf():
    image = load_test_image("box.pgm")
    ii = integral_gray(image)
    pyramid = fast_hessian(ii)
    assert [d.shape[0] for d in pyramid.det] == [5, 4, 4, 4]
    assert pyramid.steps == [1, 2, 4, 8]
    maxima = hessian_maxima(pyramid, 0)
    assert maxima.shape[1] == 3 and set(np.unique(maxima[:, 0])) <= {1, 2, 3}
    part = interpolate_maxima(pyramid, 0, maxima)
    assert isinstance(part, SurfKeypoints) and len(part) <= len(maxima)
    kp = assign_orientations(ii, detect_surf(pyramid))
    desc = describe_surf(ii, kp)
    kp2, desc2 = surf(image)
    np.testing.assert_array_equal(kp.xy, kp2.xy)
    np.testing.assert_array_equal(desc, desc2)
    assert np.all(np.diff(kp2.response) <= 0)


def test_interface_shared_with_sift():
    image = load_test_image("box.pgm")
    kp, desc = surf(image)
    assert desc.dtype == np.float32 and desc.shape == (len(kp), 64)
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    assert kp.laplacian.dtype == np.int8 and set(np.unique(kp.laplacian)) <= {-1, 1}
    sub = kp[:5]
    assert isinstance(sub, SurfKeypoints) and len(sub.laplacian) == 5
    assert isinstance(kp[3], SurfKeypoints) and len(kp[3]) == 1
    _, d128 = surf(image, extended=True)
    assert d128.shape == (len(kp), 128)
    kp_u, _ = surf(image, upright=True)
    assert np.all(kp_u.angle == 0) and np.array_equal(kp_u.xy, kp.xy)
    # SIFT's keypoints described by SURF, SURF's drawn and converted like SIFT's
    kp_sift, _ = sift(image, n_features=20)
    _, d = surf(image, keypoints=kp_sift)
    assert d.shape == (20, 64)
    kp_n, _ = surf(image, n_features=7)
    assert len(kp_n) == 7
    import matplotlib
    matplotlib.use("Agg")
    ax = draw_keypoints(image, kp)
    assert len(ax.patches) == min(len(kp), 300)


def test_scene_matches_object():
    # the box of box.pgm in the cluttered scene.pgm: matches consistent with one homography
    from cvcore.match import ransac_homography
    box, scene = load_test_image("box.pgm"), load_test_image("scene.pgm")
    kp1, d1 = surf(box)
    kp2, d2 = surf(scene)
    m = match_descriptors(d1, d2)
    res = ransac_homography(kp1.xy[m[:, 0]], kp2.xy[m[:, 1]], threshold=3.0, seed=0)
    assert res is not None and res.inliers.sum() >= 20


def test_laplacian_groups_in_matching():
    # sec. 4.3: only keypoints of equal sign are compared. On box -> scene the sign-restricted
    # matcher pairs only equal signs, equals the brute force with cross-sign pairs removed from
    # the candidates, and keeps at least as many RANSAC inliers.
    from cvcore.match import ransac_homography
    box, scene = load_test_image("box.pgm"), load_test_image("scene.pgm")
    kp1, d1 = surf(box)
    kp2, d2 = surf(scene)
    assert set(np.unique(kp1.laplacian)) == {-1, 1}
    m = match_descriptors(d1, d2, groups=(kp1.laplacian, kp2.laplacian))
    assert np.all(kp1.laplacian[m[:, 0]] == kp2.laplacian[m[:, 1]])
    plain = match_descriptors(d1, d2)
    inl = [ransac_homography(kp1.xy[x[:, 0]], kp2.xy[x[:, 1]], threshold=3.0, seed=0).inliers.sum()
           for x in (m, plain)]
    assert inl[0] >= 20 and inl[0] >= inl[1] - 2


def test_empty_and_flat_images():
    kp, desc = surf(np.zeros((40, 50), np.float32))
    assert len(kp) == 0 and desc.shape == (0, 64)
    kp, desc = surf(np.zeros((5, 5), np.uint8))          # smaller than the 9 x 9 filter
    assert len(kp) == 0


def test_errors():
    image = np.zeros((40, 40), np.float32)
    with pytest.raises(ValueError, match="threshold"):
        surf(image, threshold=-1)
    with pytest.raises(TypeError, match="Keypoints"):
        surf(image, keypoints=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        surf(np.full((20, 20), np.nan))
    with pytest.raises(ValueError, match="zero first row"):
        fast_hessian(np.ones((10, 10)))
    with pytest.raises(ValueError, match="integral table"):
        fast_hessian(np.zeros((1, 10)))
    with pytest.raises(ValueError, match="n_layers"):
        fast_hessian(np.zeros((10, 10)), n_layers=2)
    pyramid = fast_hessian(integral_gray(np.random.default_rng(0).random((40, 40))))
    with pytest.raises(ValueError, match="octave"):
        hessian_maxima(pyramid, 9)
    with pytest.raises(ValueError, match="maxima must lie"):
        interpolate_maxima(pyramid, 0, np.array([[0, 5, 5]]))
    with pytest.raises(TypeError, match="HessianPyramid"):
        hessian_maxima("pyramid", 0)
    with pytest.raises(ValueError, match="size must be positive"):
        SurfKeypoints.from_xy([[1.0, 2.0]], size=[0.0])


# ------------------------------------------------------------------ reference SURF (mahotas)


def test_keypoints_agree_with_mahotas_surf():
    mahotas_surf = pytest.importorskip("mahotas.features.surf",
                                       reason="mahotas (bench extra) not installed")
    # mahotas ports dlib's SURF: same box filters, 0..255 intensities, its own thresholding and
    # step rules. Its 200 strongest keypoints should mostly be ours too (position within 2 px).
    image = load_test_image("box.pgm")
    theirs = mahotas_surf.surf((image * 255).astype(np.float64), max_points=200,
                               descriptor_only=False)
    kp, _ = surf(image, threshold=0.0002)
    xy_theirs = theirs[:, [1, 0]]
    d = np.linalg.norm(xy_theirs[:, None, :] - kp.xy[None, :, :], axis=2)
    assert len(theirs) >= 50
    assert (d.min(axis=1) <= 2.0).mean() >= 0.7


def test_cvcore_features_kind_surf(tmp_path):
    from PIL import Image

    from cvcore.cli import main
    from cvcore.io.datasets import decode_image
    from tests.conftest import dataset_path
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("box.pgm", "roofs1.jpg"):
        image = Image.open(dataset_path("test-images", name)).convert("L")
        image.thumbnail((160, 160))
        image.save(folder / (name.split(".")[0] + ".png"))
    out = tmp_path / "surf"
    assert main(["features", str(folder), "--kind", "surf", "--out", str(out),
                 "--max-keypoints", "40"]) == 0
    index = [__import__("json").loads(line) for line in (out / "index.jsonl").open()]
    with np.load(out / index[0]["shard"]) as z:
        offsets, desc, lap = z["offsets"], z["descriptors"], z["laplacian"]
    assert lap.dtype == np.int8
    for r, row in enumerate(index):
        kp, d = surf(decode_image(row["image"], "gray"), n_features=40)
        assert row["keypoints"] == len(kp) == offsets[r + 1] - offsets[r] > 10
        np.testing.assert_array_equal(desc[offsets[r]:offsets[r + 1]], d)
        np.testing.assert_array_equal(lap[offsets[r]:offsets[r + 1]], kp.laplacian)


def test_defaults_named_in_the_docstring_are_the_real_ones():
    import inspect
    params = inspect.signature(surf).parameters
    doc = surf.__doc__
    assert params["threshold"].default == S.THRESHOLD == 0.001
    assert "default 0.001" in doc
    assert params["n_octaves"].default == S.N_OCTAVES == 4 and "Octaves (default 4)" in doc
    assert params["n_layers"].default == S.N_LAYERS == 4 and "filters per octave (default 4)" in doc
    assert params["initial_step"].default == S.INITIAL_STEP == 1 and "(default 1)" in doc
    assert params["small_scales"].default is True and "(default\n        True)" in doc
