"""SIFT: readable twins of the kernels, hand-worked cases, agreement with OpenCV, properties.

The readable twins below (``*_reference``) are the plain-NumPy statement of each stage; the
Numba kernels in ``kernels/sift.py`` are tested against them on small random inputs.
"""
import math

import numpy as np
import pytest

from cvcore.features import (Keypoints, describe_keypoints, detect_keypoints, dog_scale_space,
                             gaussian_scale_space, orientation_histogram, scale_space_extrema,
                             sift)
from cvcore.features import _sift as S
from kernels import sift as ks
from tests.conftest import dataset_path, load_test_image


# ----------------------------------------------------------------------------- readable twins
def reflect101_reference(i, n):
    """Mirror index i into [0, n) without repeating the edge sample: ...2 1 | 0 1 2 ... n-1 | n-2."""
    if n == 1:
        return 0
    period = 2 * n - 2
    i = abs(i) % period
    return i if i < n else period - i


def blur_reference(image, kernel):
    """Separable correlation with a symmetric kernel, reflect-101 border, rows then columns."""
    r = len(kernel) // 2
    H, W = image.shape
    cols = np.array([[reflect101_reference(x + t, W) for t in range(-r, r + 1)] for x in range(W)])
    rows = np.array([[reflect101_reference(y + t, H) for t in range(-r, r + 1)] for y in range(H)])
    tmp = (image.astype(np.float64)[:, cols] * kernel).sum(axis=2)          # (H, W)
    return (tmp[rows, :] * kernel[:, None]).sum(axis=1)                     # (H, W)


def upsample_reference(image):
    """Bilinear 2x with half-pixel centres: output X samples input x = (X + 0.5) / 2 - 0.5,
    clamped to the image (edge pixels repeated)."""
    H, W = image.shape

    def taps(n):
        x = (np.arange(2 * n) + 0.5) / 2 - 0.5
        x0 = np.floor(x).astype(int)
        f = x - x0
        return np.clip(x0, 0, n - 1), np.clip(x0 + 1, 0, n - 1), f

    y0, y1, fy = taps(H)
    x0, x1, fx = taps(W)
    img = image.astype(np.float64)
    rows = img[y0] * (1 - fy)[:, None] + img[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


def extrema_reference(dog, threshold, border):
    """All (level, row, col) whose value beats |threshold| and is >= (or <=) its 26 neighbours."""
    L, H, W = dog.shape
    found = []
    for i in range(1, L - 1):
        for y in range(border, H - border):
            for x in range(border, W - border):
                v = dog[i, y, x]
                cube = dog[i - 1:i + 2, y - 1:y + 2, x - 1:x + 2]
                if abs(v) > threshold and ((v > 0 and v >= cube.max()) or
                                           (v < 0 and v <= cube.min())):
                    found.append((i, y, x))
    return np.array(found, np.int32).reshape(-1, 3)


def descriptor_reference(image, x, y, angle, scale):
    """Lowe's 4x4x8 descriptor of one keypoint, sample by sample (Lowe 2004, sec. 6.1).

    Each pixel within the rotated grid votes its gradient magnitude, weighted by a Gaussian of
    sigma = half the grid width, into the 2x2x2 nearest (row cell, col cell, orientation bin),
    each weighted by 1 - distance in bin units. Orientation is counted anticlockwise with y up
    (OpenCV's layout). Then normalise, clip at 0.2, normalise.
    """
    d, n = 4, 8
    H, W = image.shape
    width = 3.0 * scale                                   # one cell, in pixels
    radius = int(round(width * math.sqrt(2) * (d + 1) / 2))
    ang = math.radians(angle)
    hist = np.zeros((d, d, n))
    cx, cy = int(round(x)), int(round(y))
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            r, c = cy + i, cx + j
            if not (0 < r < H - 1 and 0 < c < W - 1):
                continue
            u = (j * math.cos(ang) + i * math.sin(ang)) / width + d / 2 - 0.5   # col cell
            v = (-j * math.sin(ang) + i * math.cos(ang)) / width + d / 2 - 0.5  # row cell
            if not (-1 < u < d and -1 < v < d):
                continue
            dx = float(image[r, c + 1]) - float(image[r, c - 1])
            dy_up = float(image[r - 1, c]) - float(image[r + 1, c])
            weight = math.exp(-(i * i + j * j) / (width * width * 0.5 * d * d))
            mag = math.hypot(dx, dy_up) * weight
            theta = (math.degrees(math.atan2(dy_up, dx)) - (360.0 - angle)) % 360.0
            o = theta * n / 360.0
            for rb in (math.floor(v), math.floor(v) + 1):
                for cb in (math.floor(u), math.floor(u) + 1):
                    for ob in (math.floor(o), math.floor(o) + 1):
                        w = (1 - abs(v - rb)) * (1 - abs(u - cb)) * (1 - abs(o - ob))
                        if 0 <= rb < d and 0 <= cb < d:
                            hist[rb, cb, ob % n] += mag * w
    vec = hist.ravel()
    vec /= np.linalg.norm(vec)
    vec = np.minimum(vec, 0.2)
    return vec / np.linalg.norm(vec)


# ----------------------------------------------------------------------------- kernels vs twins
def test_gaussian_kernel_follows_opencv_size_rule():
    assert S.gaussian_kernel(1.0).shape == (9,)        # round(8 * 1.0 + 1) | 1 = 9
    assert S.gaussian_kernel(1.6).shape == (15,)       # round(13.8) = 14 -> 15
    k = S.gaussian_kernel(1.2)
    assert abs(k.sum() - 1) < 1e-6 and np.allclose(k, k[::-1])


def test_gaussian_kernel_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    for sigma in (0.8, 1.249, 2.45):
        k = S.gaussian_kernel(sigma)
        ref = cv2.getGaussianKernel(len(k), sigma, cv2.CV_64F).ravel()
        np.testing.assert_allclose(k, ref, atol=1e-7)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4), (17, 23)])
def test_blur_matches_reference(rng, shape):
    image = rng.random(shape).astype(np.float32)
    k = S.gaussian_kernel(1.7)                          # 15 taps: wider than the small images
    out = np.empty_like(image)
    S._blur_into(image, None, np.empty_like(image), out, k)
    np.testing.assert_allclose(out, blur_reference(image, k), atol=1e-5)


def test_blur_matches_opencv(rng):
    cv2 = pytest.importorskip("cv2")
    image = rng.random((40, 57)).astype(np.float32)
    for sigma in (1.226, 3.09):
        np.testing.assert_allclose(S.gaussian_blur(image, sigma),
                                   cv2.GaussianBlur(image, (0, 0), sigma), atol=2e-6)


def test_upsample_matches_reference_and_opencv(rng):
    image = rng.random((7, 10)).astype(np.float32)
    out = np.empty((14, 20), np.float32)
    ks.upsample2x_linear(image, out, 0, out.shape[0])
    np.testing.assert_allclose(out, upsample_reference(image), atol=1e-6)
    cv2 = pytest.importorskip("cv2")
    np.testing.assert_allclose(out, cv2.resize(image, (20, 14), interpolation=cv2.INTER_LINEAR),
                               atol=1e-6)


def test_extrema_match_reference(rng):
    dog = (rng.standard_normal((5, 20, 24)) * 0.02).astype(np.float32)
    dog[2, 10, 12] = 0.5                                 # one sure maximum
    dog[1, 6, 7] = -0.5                                  # one sure minimum
    found = scale_space_extrema(dog, 0.01, border=2)
    np.testing.assert_array_equal(found, extrema_reference(dog, 0.01, 2))
    assert {(2, 10, 12), (1, 6, 7)} <= set(map(tuple, found.tolist()))


def test_descriptor_matches_reference(rng):
    from scipy.ndimage import gaussian_filter
    image = gaussian_filter(rng.random((64, 64)), 1.5).astype(np.float32)
    gauss = np.stack([image] * 3)
    cases = [(31.0, 30.0, 0.0, 2.0), (29.4, 33.2, 37.0, 1.7), (33.0, 31.0, 250.0, 2.6)]
    out = np.zeros((len(cases), 128), np.float32)
    px, py, ang, sc = (np.array(c, np.float64) for c in zip(*cases))
    ks.sift_descriptors(gauss, px, py, np.ones(len(cases), np.int64), ang, sc, 3.0, 0.2, False,
                        out, 0, len(cases))
    for k, (x, y, a, s) in enumerate(cases):
        np.testing.assert_allclose(out[k], descriptor_reference(image, x, y, a, s), atol=2e-4)


def test_fast_atan2_accuracy(rng):
    y, x = rng.standard_normal((2, 2000))
    ref = np.degrees(np.arctan2(y, x)) % 360
    for fn, dtype in ((ks.fast_atan2_degrees, np.float64), (ks.fast_atan2_degrees_f32, np.float32)):
        got = np.array([fn(dtype(a), dtype(b)) for a, b in zip(y, x)], np.float64)
        assert got.min() >= 0 and got.max() <= 360
        err = np.abs((got - ref + 180) % 360 - 180)
        assert err.max() < 0.012                        # about 0.01 degree, as documented



def test_exact_quotient_stays_ieee_division_in_fast_math_loops(rng):
    """The atan's division is exact IEEE float32 division even in a vectorised fast-math loop
    (where an unguarded one becomes a reciprocal estimate): the descriptors and orientations
    depend on it bit for bit."""
    from numba import njit

    @njit(fastmath=True)
    def divide_all(a, b, out):
        for k in range(a.size):
            out[k] = ks.exact_quotient(a[k], b[k])

    a = rng.standard_normal(4099).astype(np.float32)
    b = (rng.standard_normal(4099) + np.float32(1e-30)).astype(np.float32)
    a[:7] = [0.0, 1.0, 3.0, 1e-30, 7.0, 1.0, 5.0]
    b[:7] = [1.0, 3.0, 7.0, 3.0, 1e-30, 1e30, 9.0]
    out = np.empty_like(a)
    divide_all(a, b, out)
    np.testing.assert_array_equal(out, a / b)


# ----------------------------------------------------------------------------- hand-worked cases
def test_orientation_histogram_of_ramps():
    """A ramp rising to the right has every gradient along +x (bin 0); rising downwards, along
    +y, which is 90 degrees clockwise on screen (bin 9)."""
    ramp = np.tile(np.arange(40, dtype=np.float32) / 40, (40, 1))
    h = orientation_histogram(ramp, 20, 20, 2.0)
    assert h.argmax() == 0 and h[0] > 0 and np.count_nonzero(h > 1e-9) == 5   # [1 4 6 4 1] spread
    h = orientation_histogram(np.ascontiguousarray(ramp.T), 20, 20, 2.0)
    assert h.argmax() == 9


def test_bright_blob_is_found_at_its_centre_and_scale():
    """A Gaussian blob of sigma s is a DoG minimum (bright spot: D < 0) at its centre with
    keypoint scale close to s (Lindeberg's scale selection, size = 2 sigma)."""
    yy, xx = np.mgrid[0:96, 0:96]
    s = 4.0
    blob = np.exp(-((xx - 47.0) ** 2 + (yy - 40.0) ** 2) / (2 * s * s)).astype(np.float32)
    kp, desc = sift(blob)
    assert len(kp) >= 1
    k = np.argmin(np.hypot(kp.xy[:, 0] - 47, kp.xy[:, 1] - 40))
    assert np.hypot(kp.xy[k, 0] - 47, kp.xy[k, 1] - 40) < 0.5
    assert 0.7 * s < kp.size[k] / 2 < 1.5 * s


def test_one_colour_image_gives_no_keypoints():
    for value in (0.0, 0.5, 1.0):
        kp, desc = sift(np.full((64, 80), value, np.float32))
        assert len(kp) == 0 and desc.shape == (0, 128) and not np.isnan(desc).any()
    kp, desc = sift(np.full((30, 30), 200, np.uint8))
    assert len(kp) == 0


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 7), (12, 12)])
def test_tiny_images_do_not_fail(shape, rng):
    kp, desc = sift(rng.random(shape).astype(np.float32))
    assert desc.shape == (len(kp), 128) and np.isfinite(desc).all()


def test_bad_input_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        sift(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        sift(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="empty"):
        sift(np.zeros((0, 10)))
    with pytest.raises(TypeError):
        sift(np.zeros((10, 10), complex))
    with pytest.raises(ValueError, match="n_features"):
        sift(np.zeros((10, 10)), n_features=0)
    with pytest.raises(ValueError, match="RGB"):
        sift(np.zeros((10, 10, 5)))
    with pytest.raises(TypeError, match="Keypoints"):
        sift(np.zeros((10, 10)), keypoints=np.zeros((3, 2)))


# ----------------------------------------------------------------------------- properties
@pytest.fixture(scope="module")
def box():
    return load_test_image("box.pgm")


def test_descriptors_unit_length_and_deterministic(box):
    kp, desc = sift(box)
    assert len(kp) > 100 and desc.dtype == np.float32 and kp.xy.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    kp2, desc2 = sift(box)
    np.testing.assert_array_equal(kp.xy, kp2.xy)
    np.testing.assert_array_equal(desc, desc2)
    assert np.all(np.diff(kp.response) <= 0)             # highest response first
    top, dtop = sift(box, n_features=50)
    np.testing.assert_array_equal(top.xy, kp.xy[:50])
    np.testing.assert_array_equal(dtop, desc[:50])


def test_reused_buffers_and_thread_count_change_nothing(box, rng):
    """sift() keeps its scale space, DoG and masks between calls on a thread (S._Workspace) and
    runs its kernels in bands on as many threads as cores are free: neither may change a result. The stage functions,
    which allocate afresh, are the reference; a smaller image in between leaves stale data in the
    front of the buffers, a larger one makes them grow."""
    import numba

    def stages(img):
        space = gaussian_scale_space(img)
        kp = detect_keypoints(space)
        return kp, describe_keypoints(space, kp)

    small = rng.random((90, 70)).astype(np.float32)
    large = np.pad(box, 40, mode="reflect")
    want = {id(img): stages(img) for img in (box, small, large)}
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            for img in (box, small, box, large, box):
                kp, desc = sift(img)
                kp_want, desc_want = want[id(img)]
                for name in ("xy", "size", "angle", "response", "octave", "layer"):
                    np.testing.assert_array_equal(getattr(kp, name), getattr(kp_want, name))
                np.testing.assert_array_equal(desc, desc_want)
    finally:
        numba.set_num_threads(before)
    assert S._workspace().buffers            # the buffers were kept, so reuse was exercised


def test_extrema_mask_rows_are_written_whole(rng):
    """The extremum kernel writes every row it searches (1 at an extremum, 0 elsewhere): the mask
    may come uninitialised, from a buffer holding an earlier octave's marks."""
    dog = (rng.standard_normal((5, 20, 24)) * 0.02).astype(np.float32)
    mask = np.ones(dog.shape, np.uint8)
    counts = np.zeros(dog.shape[:2], np.int64)
    ks.dog_extrema_mask(dog, np.float32(0.01), 2, mask, counts, 0, 3 * 16)
    want = extrema_reference(dog, 0.01, 2)
    searched = mask[1:-1, 2:-2]
    assert searched.sum() == len(want) == counts.sum()
    assert all(mask[i, y, x] == 1 for i, y, x in want)


def test_rootsift_and_upright(box):
    kp, desc = sift(box, root_sift=True)
    assert desc.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    kpu, _ = sift(box, upright=True)
    assert len(kpu) > 0 and np.all(kpu.angle == 0)


def test_descriptors_for_given_keypoints(box):
    kp, desc = sift(box)
    _, again = sift(box, keypoints=kp[:40])
    np.testing.assert_array_equal(again, desc[:40])
    # the same keypoints without their level: the level is picked from the size
    given = Keypoints.from_xy(kp.xy[:40], kp.size[:40], kp.angle[:40])
    _, d2 = sift(box, keypoints=given)
    cos = np.sum(d2 * desc[:40], axis=1)
    assert np.median(cos) > 0.95
    space = gaussian_scale_space(box)
    d3 = describe_keypoints(space, Keypoints.from_xy([[100.0, 80.0]], 12.0, 30.0))
    assert d3.shape == (1, 128) and abs(np.linalg.norm(d3) - 1) < 1e-5


def test_rotation_by_90_degrees_rotates_keypoints(box):
    """Doubling with half-pixel centres and the symmetric blur commute with a 90-degree turn, so
    the first octave's keypoints reappear exactly, turned by -90 degrees (the image turns
    anticlockwise on screen); coarser octaves subsample on a grid that does not turn with the
    image, so most (not all) of theirs reappear within a pixel."""
    H, W = box.shape
    kp, desc = sift(box)
    kr, dr = sift(np.ascontiguousarray(np.rot90(box)))
    expected = np.stack([kp.xy[:, 1], W - 1 - kp.xy[:, 0]], axis=1)
    dist = np.linalg.norm(expected[:, None, :] - kr.xy[None, :, :], axis=2)
    dangle = np.abs((kr.angle[None, :] - (kp.angle[:, None] - 90.0) + 180.0) % 360.0 - 180.0)
    same = (dist < 0.05) & (dangle < 0.5)
    first = kp.octave == -1
    assert first.sum() > 100
    assert same[first].any(axis=1).mean() > 0.99
    assert (dist[~first].min(axis=1) < 1.0).mean() > 0.7
    i, j = np.nonzero(same)
    assert np.median(np.sum(desc[i] * dr[j], axis=1)) > 0.99


def test_half_size_image_finds_keypoints_one_octave_up(box):
    """Averaging 2x2 blocks halves the image; a keypoint at (x, y) there sits at (2x + 0.5,
    2y + 0.5) in the full image, with twice the size, one octave up."""
    H, W = (s // 2 * 2 for s in box.shape)
    full = box[:H, :W]
    half = full.reshape(H // 2, 2, W // 2, 2).mean(axis=(1, 3))
    kf, _ = sift(full)
    kh, _ = sift(half)
    pos = 2 * kh.xy + 0.5
    dist = np.linalg.norm(pos[:, None, :] - kf.xy[None, :, :], axis=2)
    near = dist.argmin(axis=1)
    found = dist.min(axis=1) < 2.0
    assert found.mean() > 0.6
    assert np.mean(kf.octave[near[found]] == kh.octave[found] + 1) > 0.9
    ratio = kf.size[near[found]] / kh.size[found]
    assert abs(np.median(ratio) - 2.0) < 0.1


def test_scale_space_levels_have_the_stated_blur():
    """Level i of an octave has blur sigma 2^(i/S): its DoG stack has n_scales + 2 levels and the
    blur of a delta grows as stated (checked through the variance of the blurred delta)."""
    img = np.zeros((64, 64), np.float32)
    img[32, 32] = 1.0
    space = gaussian_scale_space(img, double_image=False)
    dogs = dog_scale_space(space)
    assert space.gauss[0].shape[0] == 6 and dogs[0].shape[0] == 5
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(1, 6):
        g = space.gauss[0][i].astype(np.float64)
        var = (g * ((xx - 32) ** 2)).sum() / g.sum()
        # level 0 starts from a 'camera blur' of 0.5 assumed present: total^2 = 1.6^2 k^2i - 0.25
        want = (1.6 * 2 ** (i / 3)) ** 2 - 0.25
        assert abs(var - want) / want < 0.02


# ----------------------------------------------------------------------------- vs OpenCV
def test_agrees_with_opencv_on_a_real_image(box):
    cv2 = pytest.importorskip("cv2")
    img8 = np.round(box * 255).astype(np.uint8)
    kp, desc = sift(img8)
    ref = cv2.SIFT_create()
    kps, dref = ref.detectAndCompute(img8, None)
    assert abs(len(kp) - len(kps)) <= 0.02 * len(kps)
    theirs = np.array([k.pt for k in kps]) - 0.25                 # OpenCV's quarter-pixel shift
    dist = np.linalg.norm(kp.xy[:, None, :] - theirs[None, :, :], axis=2)
    assert np.mean(dist.min(axis=1) < 0.01) > 0.95
    # our descriptors of OpenCV's own keypoints vs OpenCV's (which are scaled to 512, rounded)
    given = Keypoints.from_cv2(kps)
    given = Keypoints(given.xy - 0.25, given.size, given.angle, given.response, given.octave,
                      given.layer)
    _, ours = sift(img8, keypoints=given)
    dref = dref / np.linalg.norm(dref, axis=1, keepdims=True)
    cos = np.sum(ours * dref, axis=1)
    assert np.median(cos) > 0.995 and np.mean(cos > 0.98) > 0.95


def test_matching_accuracy_on_boat_pair_is_at_least_opencvs():
    cv2 = pytest.importorskip("cv2")
    from PIL import Image

    from cvcore.match import apply_homography, match_descriptors
    folder = dataset_path("oxford-affine", "boat")
    a = np.asarray(Image.open(folder / "img1.pgm").convert("L"))[::2, ::2].copy()
    b = np.asarray(Image.open(folder / "img2.pgm").convert("L"))[::2, ::2].copy()
    H = np.loadtxt(folder / "H1to2p")
    H = np.diag([0.5, 0.5, 1]) @ (H / H[2, 2]) @ np.diag([2.0, 2.0, 1])  # the half-size images

    def mma(xy1, d1, xy2, d2):
        m = match_descriptors(d1, d2)
        err = np.linalg.norm(apply_homography(H, xy1[m[:, 0]]) - xy2[m[:, 1]], axis=1)
        return np.mean(err <= 3.0)

    k1, d1 = sift(a)
    k2, d2 = sift(b)
    ours = mma(k1.xy, d1, k2.xy, d2)
    ref = cv2.SIFT_create()
    c1, e1 = ref.detectAndCompute(a, None)
    c2, e2 = ref.detectAndCompute(b, None)
    theirs = mma(np.array([k.pt for k in c1]), e1, np.array([k.pt for k in c2]), e2)
    assert ours >= theirs - 0.02, (ours, theirs)


def test_documented_defaults_are_the_defaults():
    """The docstring's '(default ...)' values, the signature and the named constants agree."""
    import inspect
    params = inspect.signature(sift).parameters
    doc = sift.__doc__
    for name, const, text in [("n_scales", S.N_SCALES, "(default 3)"),
                              ("sigma", S.SIGMA, "(default 1.6)"),
                              ("contrast_threshold", S.CONTRAST_THRESHOLD, "(default 0.04)"),
                              ("edge_threshold", S.EDGE_THRESHOLD, "(default 10)")]:
        assert params[name].default == const and text in doc
    assert params["double_image"].default is True and "(default True" in doc
    assert (S.SIGMA, S.N_SCALES, S.CONTRAST_THRESHOLD, S.EDGE_THRESHOLD) == (1.6, 3, 0.04, 10.0)
    assert S.DESC_CLIP == 0.2 and ks.DESC_LENGTH == 128


def test_keypoints_round_trip_through_opencv(box):
    pytest.importorskip("cv2")
    kp, _ = sift(box, n_features=30)
    back = Keypoints.from_cv2(kp.to_cv2())
    for field in ("xy", "size", "angle", "response", "octave", "layer"):
        np.testing.assert_allclose(getattr(back, field), getattr(kp, field), rtol=1e-6)


def test_stage_functions_check_their_inputs(rng):
    from cvcore.features import localize_keypoints
    dog = rng.random((5, 20, 20)).astype(np.float32)
    gauss = rng.random((6, 20, 20)).astype(np.float32)
    ok = np.array([[1, 6, 6]], np.int32)
    assert len(localize_keypoints(dog, gauss, ok).x) <= 1
    with pytest.raises(ValueError, match="gauss must have shape"):
        localize_keypoints(dog, gauss[:5], ok)
    with pytest.raises(ValueError, match="inside"):
        localize_keypoints(dog, gauss, np.array([[1, 19, 6]]))
    with pytest.raises(ValueError, match="levels 1..3"):
        localize_keypoints(dog, gauss, np.array([[4, 6, 6]]))
    space = gaussian_scale_space(rng.random((40, 40)).astype(np.float32))
    bad = Keypoints.from_xy([[5.0, 5.0]], 4.0)
    bad.xy[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        describe_keypoints(space, bad)
    far = describe_keypoints(space, Keypoints.from_xy([[1e4, -1e4]], 4.0))
    assert np.all(far == 0)                                  # no pixel under it: zero vector


def test_drawing_functions_draw(box):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvcore.features import draw_keypoints, draw_matches, draw_outline
    kp, desc = sift(box, n_features=40)
    ax = draw_keypoints(box, kp, max_keypoints=25)
    assert len(ax.patches) == 25 and len(ax.collections) == 1
    ax = draw_matches(box, box, kp.xy, kp.xy, np.stack([np.arange(10)] * 2, axis=1),
                      inliers=np.arange(10) % 2 == 0)
    assert len(ax.collections[0].get_segments()) == 10
    draw_outline(np.eye(3), box.shape, ax, offset=(box.shape[1], 0))
    x, y = ax.lines[-1].get_data()
    np.testing.assert_allclose(x[:2], [box.shape[1], 2 * box.shape[1] - 1])
    plt.close("all")
    assert len(kp[0]) == 1                                    # an int index keeps a Keypoints
