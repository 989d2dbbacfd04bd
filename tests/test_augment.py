"""Tests of cvcore.augment and kernels.augment: toy cases, readable twins, references, properties."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cvcore import augment as A
from cvcore.augment import AffineParams, CropParams, FlipParams, JitterParams

# ------------------------------------------------------------------ readable twins (plain NumPy)

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def ref_pad_crop(x, top, left, pad, size, fill):
    n, c, h, w = x.shape
    (py, px), (ho, wo) = pad, size
    padded = np.full((n, c, h + 2 * py, w + 2 * px), fill, dtype=np.float32)
    padded[:, :, py:py + h, px:px + w] = x
    return np.stack([padded[k, :, top[k]:top[k] + ho, left[k]:left[k] + wo] for k in range(n)])


def ref_flip(x, flags):
    return np.stack([img[..., ::-1] if f else img for img, f in zip(x, flags)])


def ref_grey(img):  # img (3, H, W) or (1, H, W)
    return np.tensordot(LUMA, img, axes=1) if len(img) == 3 else img[0]


def ref_jitter(x, p):
    out = []
    for img, b, c, s, h in zip(x.astype(np.float64), *p):
        img = np.clip(b * img, 0, 1)
        img = np.clip(c * img + (1 - c) * ref_grey(img).mean(), 0, 1)
        if len(img) == 3:
            img = np.clip(s * img + (1 - s) * ref_grey(img), 0, 1)
            img = ref_hue(img, h)
        out.append(img)
    return np.array(out, dtype=np.float32)


def ref_hue(img, shift):
    """HSV hue rotation through matplotlib's rgb_to_hsv (a second implementation of the model)."""
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
    hsv = rgb_to_hsv(img.transpose(1, 2, 0))
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return hsv_to_rgb(hsv).transpose(2, 0, 1)


def ref_affine(x, mats, fill):
    """Bilinear sampling written pixel by pixel from the kernel's docstring."""
    n, c, h, w = x.shape
    out = np.empty_like(x)

    def at(k, ch, r, q):
        return x[k, ch, r, q] if 0 <= r < h and 0 <= q < w else fill

    for k in range(n):
        m = mats[k]
        for i in range(h):
            for j in range(w):
                sx, sy = m[0] * j + m[1] * i + m[2], m[3] * j + m[4] * i + m[5]
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                fx, fy = sx - x0, sy - y0
                for ch in range(c):
                    out[k, ch, i, j] = ((1 - fy) * ((1 - fx) * at(k, ch, y0, x0) + fx * at(k, ch, y0, x0 + 1))
                                        + fy * ((1 - fx) * at(k, ch, y0 + 1, x0) + fx * at(k, ch, y0 + 1, x0 + 1)))
    return out


def batch(rng, shape):
    return rng.random(shape, dtype=np.float32)


# ------------------------------------------------------------------ toy cases worked by hand

def test_flip_toy():
    x = np.array([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [0, 1, 2]]], np.float32)  # (N=2, H=2, W=3)
    y = A.RandomHorizontalFlip().apply(x, FlipParams(np.array([1, 0], np.uint8)))
    np.testing.assert_array_equal(y, [[[3, 2, 1], [6, 5, 4]], [[7, 8, 9], [0, 1, 2]]])


def test_crop_with_padding_toy():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)   # 1..9
    crop = A.RandomCrop(3, padding=1, fill=-1)
    # offset (0, 0) in the padded 5x5 image: shifted one pixel down-right, filled at the top-left
    y = crop.apply(x, CropParams(np.array([0]), np.array([0])))
    np.testing.assert_array_equal(y[0], [[-1, -1, -1], [-1, 1, 2], [-1, 4, 5]])
    # offset (1, 1) is the original; (2, 0) shifts up and right
    np.testing.assert_array_equal(crop.apply(x, CropParams(np.array([1]), np.array([1]))), x)
    y = crop.apply(x, CropParams(np.array([2]), np.array([0])))
    np.testing.assert_array_equal(y[0], [[-1, 4, 5], [-1, 7, 8], [-1, -1, -1]])


def test_brightness_contrast_toy():
    x = np.array([[[0.2, 0.4], [0.6, 0.8]]], np.float32)   # grey, mean 0.5
    p = JitterParams(np.array([1.5], np.float32), np.array([0.5], np.float32),
                     np.ones(1, np.float32), np.zeros(1, np.float32))
    y = A.ColorJitter(brightness=1).apply(x, p)            # contrast step skipped (range 1..1)
    np.testing.assert_allclose(y, [[[0.3, 0.6], [0.9, 1.0]]], atol=1e-6)  # 1.2 clipped to 1
    y = A.ColorJitter(contrast=1).apply(x, p)              # halfway to the mean 0.5
    np.testing.assert_allclose(y, [[[0.35, 0.45], [0.55, 0.65]]], atol=1e-6)


def test_hue_toy():
    red = np.zeros((1, 3, 1, 1), np.float32)
    red[0, 0] = 1.0
    x = np.concatenate([red, red, red])
    shift = np.array([1 / 3, -1 / 3, 0.5], np.float32)     # red -> green, red -> blue, red -> cyan
    p = JitterParams(np.ones(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float32), shift)
    y = A.ColorJitter(hue=0.5).apply(x, p)[:, :, 0, 0]
    np.testing.assert_allclose(y, [[0, 1, 0], [0, 0, 1], [0, 1, 1]], atol=1e-6)


def test_affine_toy_translate_and_rotate():
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 3] = 1.0                                   # one pixel right of the centre
    aff = A.RandomAffine()
    moved = aff.apply(x, AffineParams(*map(np.array, ([0.0], [1.0], [0.0], [1.0], [-2.0]))))
    assert moved[0, 0, 0, 4] == 1.0 and moved.sum() == 1.0  # 1 right, 2 up
    turned = aff.apply(x, AffineParams(*map(np.array, ([90.0], [1.0], [0.0], [0.0], [0.0]))))
    np.testing.assert_allclose(turned[0, 0, 1, 2], 1.0, atol=1e-6)  # counter-clockwise: now above
    assert abs(turned.sum() - 1.0) < 1e-6
    half = aff.apply(x, AffineParams(*map(np.array, ([0.0], [1.0], [0.0], [0.5], [0.0]))))
    np.testing.assert_allclose(half[0, 0, 2, 3:5], [0.5, 0.5], atol=1e-7)  # bilinear half-step


# ------------------------------------------------------------------ agreement with the twins / references

def test_crop_flip_match_twins(rng):
    x = batch(rng, (6, 3, 7, 9))
    crop = A.RandomCrop((5, 8), padding=(2, 3), fill=0.25)
    p = crop.sample(x.shape, rng)
    np.testing.assert_array_equal(crop.apply(x, p), ref_pad_crop(x, p.top, p.left, (2, 3), (5, 8), 0.25))
    flip = A.RandomHorizontalFlip()
    p = flip.sample(x.shape, rng)
    np.testing.assert_array_equal(flip.apply(x, p), ref_flip(x, p.flip))


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_matches_twin(rng, channels):
    x = batch(rng, (5, channels, 6, 7))
    jit = A.ColorJitter(0.5, 0.6, 0.7 if channels == 3 else 0, 0.4 if channels == 3 else 0)
    p = jit.sample(x.shape, rng)
    np.testing.assert_allclose(jit.apply(x, p), ref_jitter(x, p), atol=2e-6)


def test_hue_matches_scikit_image(rng):
    skc = pytest.importorskip("skimage.color")
    x = batch(rng, (3, 3, 8, 8))
    shift = np.array([0.1, -0.27, 0.5], np.float32)
    p = JitterParams(np.ones(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float32), shift)
    y = A.ColorJitter(hue=0.5).apply(x, p)
    for img, s, out in zip(x, shift, y):
        hsv = skc.rgb2hsv(img.transpose(1, 2, 0).astype(np.float64))
        hsv[..., 0] = (hsv[..., 0] + s) % 1.0
        np.testing.assert_allclose(out, skc.hsv2rgb(hsv).transpose(2, 0, 1), atol=1e-5)


def test_colour_matches_pillow_image_enhance(rng):
    """Brightness, contrast and saturation against Pillow's ImageEnhance on uint8 images (Pillow
    rounds to 8 bits and uses an integer mean for contrast, hence the tolerance of 1.5/255)."""
    from PIL import Image, ImageEnhance
    img = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    x = (img.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    pil = Image.fromarray(img)
    one = np.ones(1, np.float32)
    cases = [(ImageEnhance.Brightness, A.ColorJitter(brightness=1), 0),
             (ImageEnhance.Contrast, A.ColorJitter(contrast=1), 1),
             (ImageEnhance.Color, A.ColorJitter(saturation=1), 2)]
    for enhancer, jit, slot in cases:
        for factor in (0.3, 1.6):
            values = [one, one, one, np.zeros(1, np.float32)]
            values[slot] = np.array([factor], np.float32)
            ours = jit.apply(x, JitterParams(*values))[0].transpose(1, 2, 0)
            theirs = np.asarray(enhancer(pil).enhance(factor)) / 255.0
            np.testing.assert_allclose(ours, theirs, atol=1.5 / 255, err_msg=enhancer.__name__)


def test_affine_matches_twin_and_scipy(rng):
    ndi = pytest.importorskip("scipy.ndimage")
    x = batch(rng, (4, 2, 9, 11))
    aff = A.RandomAffine(degrees=30, translate=(0.2, 0.1), scale=(0.7, 1.3), shear=15, fill=0.5)
    p = aff.sample(x.shape, rng)
    y = aff.apply(x, p)
    mats = A.affine_inverse_maps(p, 9, 11)
    np.testing.assert_allclose(y, ref_affine(x, mats, 0.5), atol=1e-5)
    for k in range(len(x)):
        m = mats[k]  # (row, col) order for SciPy: input = matrix @ (i, j) + offset
        for ch in range(2):
            want = ndi.affine_transform(x[k, ch].astype(np.float64), [[m[4], m[3]], [m[1], m[0]]],
                                        offset=[m[5], m[2]], order=1, mode="grid-constant", cval=0.5)
            np.testing.assert_allclose(y[k, ch], want, atol=1e-5)


def test_affine_maps_round_trip():
    """Forward map of the docstring composed with the inverse map is the identity."""
    p = AffineParams(np.array([33.0]), np.array([1.7]), np.array([-12.0]), np.array([2.5]),
                     np.array([-1.0]))
    m = A.affine_inverse_maps(p, 9, 13)[0]
    c = np.array([6.0, 4.0])
    a, f = np.deg2rad(33.0), np.deg2rad(-12.0)
    fwd = 1.7 * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ np.array([[1, np.tan(f)], [0, 1]])
    for pt in ([0.0, 0.0], [3.0, 7.0], [12.0, 8.0]):
        out = c + np.array([2.5, -1.0]) + fwd @ (np.array(pt) - c)
        back = [m[0] * out[0] + m[1] * out[1] + m[2], m[3] * out[0] + m[4] * out[1] + m[5]]
        np.testing.assert_allclose(back, pt, atol=1e-9)


# ------------------------------------------------------------------ properties

def full_pipeline(seed=None):
    return A.Compose([A.RandomCrop(12, padding=2), A.RandomHorizontalFlip(),
                      A.ColorJitter(0.3, 0.3, 0.3, 0.05), A.RandomRotation(10),
                      A.RandomScale((0.9, 1.1)), A.RandomTranslate((0.1, 0.1))], seed=seed)


def test_reproducible_from_seed(rng):
    x = batch(rng, (16, 3, 12, 12))
    a, b = full_pipeline(seed=3), full_pipeline(seed=3)
    first, second = a(x), a(x)
    np.testing.assert_array_equal(first, b(x))
    np.testing.assert_array_equal(second, b(x))
    assert not np.array_equal(first, second)                 # the generator moves on
    np.testing.assert_array_equal(a(x, rng=[1, 2, 3]), b(x, rng=[1, 2, 3]))
    np.testing.assert_array_equal(a(x, seed=(1, 2, 3)), b(x, rng=np.random.default_rng([1, 2, 3])))
    assert not np.array_equal(a(x, seed=(1, 2, 3)), a(x, seed=(1, 2, 4)))
    state = a.get_state()
    third = a(x)
    a.set_state(state)
    np.testing.assert_array_equal(a(x), third)
    # sample-then-apply is the same as a call with the same seed
    np.testing.assert_array_equal(a.apply(x, a.sample(x.shape, rng=9)), a(x, rng=9))


def test_shapes_dtypes_and_layouts(rng):
    aug = A.Compose([A.RandomCrop((10, 8), padding=1), A.RandomHorizontalFlip(),
                     A.ColorJitter(0.2, 0.2), A.RandomAffine(5)], seed=0)
    grey = (rng.random((4, 12, 9)) * 255).astype(np.uint8)    # (N, H, W) uint8 -> float32 (N, h, w)
    y = aug(grey)
    assert y.shape == (4, 10, 8) and y.dtype == np.float32
    y = aug(batch(rng, (4, 1, 12, 9)))
    assert y.shape == (4, 1, 10, 8)
    rgb = batch(rng, (2, 3, 12, 9))
    assert full_pipeline(0)(rgb[:, :, :12, :12]).shape == (2, 3, 12, 12)
    assert 0.0 <= full_pipeline(0)(rgb[:, :, :12, :12]).min() and full_pipeline(0)(rgb[:, :, :12, :12]).max() <= 1.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.sampled_from([1, 3]), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 2**32 - 1))
def test_identity_parameters_give_identity(n, c, h, w, seed):
    x = np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)
    ones, zeros = np.ones(n), np.zeros(n)
    np.testing.assert_array_equal(A.RandomCrop((h, w), padding=2).apply(
        x, CropParams(np.full(n, 2), np.full(n, 2))), x)
    np.testing.assert_array_equal(A.RandomHorizontalFlip().apply(x, FlipParams(zeros.astype(np.uint8))), x)
    np.testing.assert_array_equal(A.RandomAffine(10).apply(x, AffineParams(zeros, ones, zeros, zeros, zeros)), x)
    jit = A.ColorJitter(0.5, 0.5, 0.5 if c == 3 else 0, 0.2 if c == 3 else 0)
    f1 = ones.astype(np.float32)
    np.testing.assert_allclose(jit.apply(x, JitterParams(f1, f1, f1, zeros.astype(np.float32))), x, atol=1e-6)
    # default transforms (zero ranges) are the identity too
    np.testing.assert_array_equal(A.Compose([A.RandomCrop((h, w)), A.RandomHorizontalFlip(p=0),
                                             A.ColorJitter(), A.RandomAffine()])(x, rng=seed), x)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_flip_twice_and_crop_preserve_values(seed):
    rng = np.random.default_rng(seed)
    x = rng.random((3, 2, 5, 6), dtype=np.float32)
    flip = A.RandomHorizontalFlip()
    p = flip.sample(x.shape, rng)
    np.testing.assert_array_equal(flip.apply(flip.apply(x, p), p), x)
    # every cropped pixel is either the fill or a pixel of its own image
    y = A.RandomCrop(5, padding=3, fill=-7)(x, rng)
    for k in range(3):
        assert set(np.unique(y[k])) <= set(np.unique(x[k])) | {-7.0}


def test_errors():
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="larger than the padded image"):
        A.RandomCrop(12, padding=1)(x)
    with pytest.raises(ValueError, match="saturation and hue jitter need RGB"):
        A.ColorJitter(saturation=0.5)(x)
    with pytest.raises(ValueError, match="dimensions"):
        A.RandomHorizontalFlip()(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        A.RandomHorizontalFlip()(np.full((1, 2, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="empty"):
        A.RandomHorizontalFlip()(np.zeros((0, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="numeric"):
        A.RandomHorizontalFlip()(np.array([[["a"]]]))
    with pytest.raises(ValueError, match="probability"):
        A.RandomHorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="hue range"):
        A.ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="scale"):
        A.RandomScale((1.2, 0.8))
    with pytest.raises(ValueError, match="translate"):
        A.RandomTranslate((1.5, 0))
    with pytest.raises(TypeError, match="fill"):
        A.RandomCrop(4, fill=float("nan"))
    with pytest.raises(TypeError, match="Compose takes"):
        A.Compose([lambda b: b])
    with pytest.raises(TypeError, match="rng"):
        A.RandomHorizontalFlip()(x, rng="seed")
    with pytest.raises(TypeError, match="not both"):
        A.Compose([])(x, rng=1, seed=1)
    with pytest.raises(ValueError, match="offsets"):
        A.RandomCrop(8, padding=1).apply(x, CropParams(np.array([0, 3]), np.array([0, 0])))
    with pytest.raises(ValueError, match="entries for a batch of 2"):
        A.RandomHorizontalFlip().apply(x, FlipParams(np.array([1], np.uint8)))
    with pytest.raises(ValueError, match="positive scale"):
        A.RandomAffine().apply(x, AffineParams(*(np.zeros(2),) * 5))
