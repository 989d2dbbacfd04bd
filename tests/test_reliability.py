"""Regression tests for the unchecked paths into the kernels (issue 11).

Each test names the bug it pins down. Before the fix, the crashing cases killed the interpreter
(a segmentation fault in a Numba kernel, which does no bounds checks), so the ones that crashed
run in a child process here: a regression shows as a dead child, not as a dead test run.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root; return the finished process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused_in_child(code: str, exc: str, fragment: str):
    """``code`` must end with ``exc`` (ValueError/TypeError) whose message holds ``fragment``:
    not a signal (negative return code), not a silent result."""
    r = run_child(code)
    assert r.returncode == 1, f"child exited {r.returncode} (negative: killed by a signal)\n" \
                              f"{r.stdout}\n{r.stderr}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(exc + ":") and fragment in last, last


# -- segmentation faults ----------------------------------------------------------------------

def test_nan_image_into_orientation_histogram_is_refused_not_a_segfault():
    # NaN gradients have no direction: atan2(NaN, NaN) cast to int is an arbitrary bin index,
    # and the vote was written far outside the 36-bin histogram.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.features import orientation_histogram
        im = np.random.default_rng(0).random((40, 40)).astype(np.float32)
        im[20, 20] = np.nan
        orientation_histogram(im, 20, 20, 2.0)
    """, "ValueError", "NaN")


def test_gradient_longer_than_cached_forward_into_relu_backward_is_refused():
    # The kernel loops over dy and reads the cached output at the same index: a dy of 10^7
    # values against a cache of 10 read (and wrote dx) 10^7 elements past the end.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.nn import relu_forward, relu_backward
        y, cache = relu_forward(np.ones(10, np.float32))
        relu_backward(np.ones(10_000_000, np.float32), cache)
    """, "ValueError", "forward output had (10,)")


def test_linear_weight_not_matching_input_is_refused():
    # The dot-product kernel takes the inner length from one operand and reads the other as
    # if it were as long: out-of-bounds reads, then a SystemError from the dispatcher.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.nn import linear_forward
        linear_forward(np.ones((4, 100), np.float32), np.ones((10, 3000), np.float32))
    """, "ValueError", "w.shape[1] = 3000")


def test_maxpool_backward_with_a_foreign_gradient_is_refused():
    from cvcore.nn import maxpool2d_backward, maxpool2d_forward
    _, cache = maxpool2d_forward(np.ones((1, 1, 4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="forward output had"):
        maxpool2d_backward(np.ones((1, 1, 40, 40), np.float32), cache)
    bad = cache._replace(argmax=np.full_like(cache.argmax, 10_000))
    with pytest.raises(ValueError, match="outside the 4x4 input plane"):
        maxpool2d_backward(np.ones((1, 1, 2, 2), np.float32), bad)


def test_backward_refuses_a_cache_of_another_layer():
    from cvcore.nn import linear_backward, relu_forward
    _, cache = relu_forward(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="LinearCache"):
        linear_backward(np.ones((2, 3), np.float32), cache)


def test_every_functional_backward_checks_dy_against_its_cache():
    from cvcore import nn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    pairs = [
        (nn.batchnorm2d_train_forward(x, g, b), nn.batchnorm2d_train_backward),
        (nn.batchnorm2d_eval_forward(x, g, b, np.zeros(3), np.ones(3)),
         nn.batchnorm2d_eval_backward),
        (nn.avgpool2d_forward(x, 2), nn.avgpool2d_backward),
        (nn.adaptive_avgpool2d_forward(x, 2), nn.adaptive_avgpool2d_backward),
        (nn.linear_forward(x, np.ones((4, 6), np.float32)), nn.linear_backward),
        (nn.dropout_forward(x, 0.5, np.random.default_rng(1)), nn.dropout_backward),
        (nn.flatten_forward(x), nn.flatten_backward),
        (nn.conv2d_forward(x, np.ones((4, 3, 3, 3), np.float32)), nn.conv2d_backward),
    ]
    for (y, cache), backward in pairs:
        wrong = np.ones((y.shape[0] + 1,) + y.shape[1:], np.float32)
        with pytest.raises(ValueError):
            backward(wrong, cache)
        out = backward(np.ones_like(y), cache)           # the right shape still works
        dx = out[0] if isinstance(out, tuple) else out
        assert dx.shape == x.shape and np.isfinite(dx).all()


# -- silent garbage ---------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1e-200, 5e-324])
def test_tiny_positive_sigma_is_the_identity_not_all_nan(sigma):
    # exp(-x^2 / (2 sigma^2)) with sigma^2 underflowing to 0 gave 0/0 = NaN at the centre tap,
    # and the normalised kernel was NaN everywhere. The limit sigma -> 0 is the identity.
    from cvcore.features._sift import gaussian_blur
    from cvcore.preprocess import gaussian
    image = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    np.testing.assert_array_equal(gaussian(image, sigma), image)
    np.testing.assert_array_equal(gaussian_blur(image, sigma), image)


def test_finite_float64_beyond_float32_is_refused_not_inf():
    # 1e300 is finite in float64 and becomes inf in float32, cvcore's working precision.
    from cvcore.preprocess import gaussian, sobel
    with pytest.raises(ValueError, match="float32's range"):
        sobel(np.full((8, 8), 1e300))
    with pytest.raises(ValueError, match="float32's range"):
        gaussian(np.zeros((8, 8), np.float32), 1.0, mode="constant", cval=1e300)


def test_median_window_that_never_returned_is_refused_with_a_limit():
    # A 2000x2000 window built a sorting network of ~4e6 slots in Python: it never returned.
    from cvcore.preprocess import median
    with pytest.raises(ValueError, match="above the limit"):
        median(np.zeros((8, 8), np.float32), size=2000)
    assert median(np.zeros((8, 8), np.float32), size=33).shape == (8, 8)   # at the limit


def test_huge_sigma_is_refused_with_a_limit_not_a_memory_error():
    from cvcore.features._sift import gaussian_kernel
    from cvcore.preprocess import gaussian
    with pytest.raises(ValueError, match="above the limit"):
        gaussian(np.zeros((4, 4), np.float32), 1e12)
    with pytest.raises(ValueError, match="above the limit"):
        gaussian_kernel(1e12)


def test_hand_built_scale_space_and_keypoints_are_checked():
    from cvcore.features import Keypoints, ScaleSpace, describe_keypoints, detect_keypoints
    from cvcore.features import gaussian_scale_space
    space = gaussian_scale_space(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    broken = space._replace(gauss=[space.gauss[0][:2]])
    with pytest.raises(ValueError, match="n_scales"):
        detect_keypoints(broken)
    kp = Keypoints.from_xy([[5.0, 5.0]], size=[4.0])
    with pytest.raises(ValueError, match="entries for 1 keypoints"):
        describe_keypoints(space, dataclasses.replace(kp, size=np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="beyond"):
        describe_keypoints(space, dataclasses.replace(kp, xy=np.array([[1e30, 5.0]], np.float32)))
    assert describe_keypoints(space, kp).shape == (1, 128)
