"""Image pyramid (OpenCV's bit-exact resize), window scoring, and the HOG people detector
against cv2.HOGDescriptor.detectMultiScale."""
import numpy as np
import pytest

from cvcore.detect.hog_detector import HOGDetector
from cvcore.detect.pyramid import image_pyramid, pyramid_scales, resize_exact
from cvcore.features import HOGDescriptor
from tests.conftest import dataset_path


def reference_resize_exact(src, out_h, out_w):
    """OpenCV's INTER_LINEAR_EXACT on uint8, written out: 8-bit weights per axis, each output
    pixel the weighted sum of 2x2 source pixels, (sum + 2**15) >> 16."""
    def taps(n_in, n_out):
        out = []
        for i in range(n_out):
            f = (1.0 / (n_out / n_in)) * (i + 0.5) - 0.5
            i0 = int(np.floor(f))
            if f < 0 or n_in == 1:
                out.append((0, 0, 256, 0))
            elif i0 >= n_in - 1:
                out.append((n_in - 1, n_in - 1, 256, 0))
            else:
                w1 = int(np.rint((f - i0) * 256))
                out.append((i0, i0 + 1, 256 - w1, w1))
        return out
    src = src.astype(np.int64)
    out = np.zeros((out_h, out_w) + src.shape[2:], np.uint8)
    for y, (r0, r1, a0, a1) in enumerate(taps(src.shape[0], out_h)):
        for x, (c0, c1, b0, b1) in enumerate(taps(src.shape[1], out_w)):
            top = b0 * src[r0, c0] + b1 * src[r0, c1]
            bottom = b0 * src[r1, c0] + b1 * src[r1, c1]
            out[y, x] = (a0 * top + a1 * bottom + (1 << 15)) >> 16
    return out


def test_resize_exact_equals_twin_and_opencv(rng):
    cv2 = pytest.importorskip("cv2")
    for trial in range(60):
        H, W = (int(v) for v in rng.integers(1, 40, 2))
        Ho, Wo = (int(v) for v in rng.integers(1, 60, 2))
        img = rng.integers(0, 256, (H, W) if trial % 2 else (H, W, 3), dtype=np.uint8)
        got = resize_exact(img, (Ho, Wo))
        if trial < 15:
            np.testing.assert_array_equal(got, reference_resize_exact(img, Ho, Wo))
        np.testing.assert_array_equal(
            got, cv2.resize(img, (Wo, Ho), interpolation=cv2.INTER_LINEAR_EXACT))


def test_pyramid_scales_and_errors():
    # 100x50 image, 20x10 window, step 2: scales 1, 2, 4 (100/8 = 12.5 -> 12 < 20 stops)
    assert pyramid_scales((100, 50), (20, 10), 2.0) == [1.0, 2.0, 4.0]
    levels = list(image_pyramid(np.zeros((50, 100), np.uint8), (20, 10), 2.0))
    assert [lv.shape for _, lv in levels] == [(50, 100), (25, 50), (12, 25)]
    with pytest.raises(ValueError, match="larger than the 30x50 image"):
        pyramid_scales((30, 50), (64, 128), 1.05)
    with pytest.raises(ValueError, match="greater than 1"):
        pyramid_scales((100, 100), (10, 10), 1.0)
    with pytest.raises(ValueError, match="greater than 1"):
        pyramid_scales((100, 100), (10, 10), 0.5)


def test_score_map_equals_per_window_descriptors(rng):
    """The correlation of the block map with the template = the dot product of each window's
    own descriptor (HOGDescriptor.compute) with the weights, plus the bias."""
    d = HOGDescriptor(win_size=(32, 24), block_size=(16, 16), block_stride=(8, 8),
                      cell_size=(8, 8))
    w = rng.normal(size=d.descriptor_size).astype(np.float32)
    det = HOGDetector(d, w, bias=-0.25)
    img = rng.integers(0, 256, (61, 77, 3), dtype=np.uint8)
    # padding is rounded up to the block grid (gcd of window and block strides), as OpenCV's
    for stride, pad, aligned in [((8, 8), (0, 0), (0, 0)), ((4, 8), (8, 4), (8, 8)),
                                 ((16, 8), (0, 8), (0, 8))]:
        scores, origin = det.score_map(img, stride, pad)
        desc = d.compute(img, stride, pad).reshape(-1, d.descriptor_size)
        assert origin == (-aligned[0], -aligned[1])
        np.testing.assert_allclose(scores.ravel(), desc.astype(np.float64) @ w - 0.25,
                                   rtol=1e-5, atol=1e-5)


PHOTOS = [("test-images", "box.pgm"), ("test-images", "scene.pgm"),
          ("test-images", "roofs1.jpg"), ("dlib-faces", "2008_002079.jpg"),
          ("dlib-faces", "2008_004176.jpg")]


@pytest.fixture(scope="module")
def people():
    cv2 = pytest.importorskip("cv2")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return cv2, hog, HOGDetector.opencv_people()


@pytest.mark.parametrize("folder, name", PHOTOS)
def test_people_detector_equals_opencv(people, folder, name):
    cv2, hog, det = people
    img = cv2.imread(str(dataset_path(folder, name)), cv2.IMREAD_UNCHANGED)
    for kw in [dict(hitThreshold=0.0), dict(hitThreshold=-0.5, groupThreshold=0),
               dict(hitThreshold=-0.3, winStride=(4, 4), padding=(8, 8), scale=1.1)]:
        ref, ref_w = hog.detectMultiScale(img, **kw)
        got, got_w = det.detect_multiscale(
            img, hit_threshold=kw["hitThreshold"], win_stride=kw.get("winStride"),
            padding=kw.get("padding"), scale=kw.get("scale", 1.05),
            group_threshold=kw.get("groupThreshold", 2))
        ref = np.asarray(ref).reshape(-1, 4)
        assert sorted(got.tolist()) == sorted(ref.tolist()), kw
        np.testing.assert_allclose(np.sort(got_w), np.sort(np.ravel(ref_w)), atol=1e-5)


def test_detector_no_detection_and_errors(people):
    _, _, det = people
    flat = np.full((200, 150), 128, np.uint8)
    rects, scores = det.detect_multiscale(flat)
    assert rects.shape == (0, 4) and scores.shape == (0,)
    boxes, scores = det.detect(flat)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    with pytest.raises(ValueError, match="larger than the 50x60 image"):
        det.detect_multiscale(np.zeros((60, 50), np.uint8))
    with pytest.raises(ValueError, match="greater than 1"):
        det.detect_multiscale(flat, scale=1.0)
    with pytest.raises(TypeError, match="uint8"):
        det.detect_multiscale(flat.astype(np.float32))
    with pytest.raises(ValueError, match="coefficients"):
        HOGDetector.from_opencv(np.zeros(10, np.float32))


def test_streaming_block_grid_equals_the_two_parallel_kernels(rng):
    """kernels.hog.opencv_block_grid (one thread, rows streamed, sums down the columns first)
    gives the numbers of opencv_gradients + opencv_block_histograms (rows first) up to float32
    summation order."""
    from kernels import hog as k
    for trial, (d, pad, step) in enumerate([
            (HOGDescriptor(), (8, 8), (8, 8)),
            (HOGDescriptor(), (0, 0), (4, 4)),
            (HOGDescriptor(win_size=(32, 24), block_size=(16, 8), block_stride=(8, 4),
                           cell_size=(8, 4), nbins=7, signed_gradient=True), (3, 5), (8, 4)),
            (HOGDescriptor(win_size=(48, 48), block_size=(24, 24), block_stride=(8, 8),
                           cell_size=(8, 8)), (0, 0), (16, 8))]):
        shape = (97, 83, 3) if trial % 2 == 0 else (70, 131, 1)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        H, W = shape[:2]
        ymap, xmap = d._border_maps(H, W, pad)
        Hp, Wp = H + 2 * pad[1], W + 2 * pad[0]
        P = (Hp - d.block_size[1]) // step[1] + 1
        Q = (Wp - d.block_size[0]) // step[0] + 1
        scale = np.float32(d.nbins / ((2 if d.signed_gradient else 1) * np.pi))
        clip = np.float32(d.l2_hys_threshold)
        votes, bins = k.opencv_gradients(img, d._lut, ymap, xmap, Wp - Wp % 4, scale,
                                         np.int32(d.nbins))
        want = np.empty((P, Q, d._votes[0].shape[0] * d._votes[1].shape[0] * d.nbins),
                        np.float32)
        k.opencv_block_histograms(votes, bins, step[1], step[0], *d._votes, clip, want)
        got = np.full_like(want, np.nan)
        k.opencv_block_grid(img, d._lut, ymap, xmap, Wp - Wp % 4, scale, np.int32(d.nbins),
                            step[1], step[0], *d._votes, clip, got)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_pyramid_kernel_equals_level_by_level_scores(rng, threads):
    """candidates() scores every level in one kernel whose threads take whole levels; the
    scores are those of score_map on each level of image_pyramid, bit for bit and in order."""
    import numba
    from cvcore._threads import threads_for
    d = HOGDescriptor(win_size=(32, 64), block_size=(16, 16), block_stride=(8, 8),
                      cell_size=(8, 8))
    det = HOGDetector(d, rng.normal(size=d.descriptor_size).astype(np.float32), 0.1)
    img = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    for stride, pad, scale in [(None, None, 1.05), ((4, 8), (8, 4), 1.2)]:
        with threads_for(threads > 1):
            if threads > numba.config.NUMBA_NUM_THREADS:
                pytest.skip("one Numba thread only")
            _, got = det.candidates(img, -np.inf, stride, pad, scale)
        s, p, c = det._strides(stride, pad)
        want = [det._score_map(level, s, p, c).ravel()
                for _, level in image_pyramid(img, d.win_size, scale)]
        np.testing.assert_array_equal(got, np.concatenate(want))
