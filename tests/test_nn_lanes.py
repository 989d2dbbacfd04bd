"""cvcore.nn._lanes / cvcore._team / kernels.team: serial network kernels run in lanes of one OpenMP loop,
called by address. Every split of the work must give the same bits as one call."""
import numpy as np
import pytest
from numba import njit

from cvcore.nn import _lanes
from cvcore.nn.conv import _run_forward
from cvcore.nn.layers import _ACT_CHUNK, elementwise
from kernels import nn_act


@pytest.fixture
def rng():
    return np.random.default_rng(17)


@pytest.mark.parametrize("lanes", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_lanes_equals_one_call_for_any_split(lanes, dtype, rng):
    # relu over 5 chunks and a bit: lane l computes chunks [l*n//lanes, (l+1)*n//lanes); the
    # shares cover every chunk once, so the result is the one-call result, bit for bit; both
    # dtypes (two compiled kernels, two addresses) in one process
    size = 5 * nn_act.CHUNK + 123
    x = rng.standard_normal(size).astype(dtype)
    n = -(-size // nn_act.CHUNK)
    expected = np.full(size, np.nan, dtype)
    nn_act.relu_forward(x, expected, 0, n)
    np.testing.assert_array_equal(expected, np.maximum(x, 0))
    y = np.full(size, np.nan, dtype)
    _lanes.run_lanes(nn_act.relu_forward, n, x, y, lanes=lanes)
    np.testing.assert_array_equal(y.view(np.uint8), expected.view(np.uint8))


def test_small_work_runs_in_one_call_with_the_same_result(rng):
    # ns below MIN_LANE_NS per lane: one direct call (no parallel loop), same bits
    x = rng.standard_normal(3 * nn_act.CHUNK).astype(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    _lanes.run_lanes(nn_act.relu_forward, 3, x, a, lanes=2, ns=0.0)
    _lanes.run_lanes(nn_act.relu_forward, 3, x, b, lanes=2)
    np.testing.assert_array_equal(a, np.maximum(x, 0))
    np.testing.assert_array_equal(a, b)


def test_a_kernel_that_returns_a_value_is_refused():
    @njit(nogil=True)
    def returns(a, i0, i1):
        return i1 - i0

    with pytest.raises(TypeError, match="must return nothing"):
        _lanes.run_lanes(returns, 4, np.zeros(4), lanes=2)


def test_the_layers_chunk_is_the_kernels():
    # cvcore.nn.layers keeps its own copy of kernels.nn_act.CHUNK (no import per call)
    assert _ACT_CHUNK == nn_act.CHUNK
    x = np.linspace(-3, 3, 2 * nn_act.CHUNK + 7, dtype=np.float32)
    y = np.empty_like(x)
    elementwise(nn_act.relu_forward, x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.parametrize("N, C, K, H, k, narrow_plane", [
    (1, 5, 11, 9, 1, False),        # EfficientNet's 1x1 convolutions
    (2, 3, 9, 7, 3, False),         # a 3x3 with padding (the strip's gaps and margin)
    (1, 256, 512, 7, 1, True),      # a 7x7 plane at batch 1 with enough work: the narrow tile
])
def test_fused_forward_is_bit_equal_to_the_calls_by_address(N, C, K, H, k, narrow_plane, rng):
    # conv2d_forward_fused (fill and product compiled into one parallel kernel, for batch-1
    # inference) computes the same sums in the same order as the two kernels called by address
    from cvcore.nn.conv import narrow_tile
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    w = (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    p = (k // 2, k // 2)
    affine = (rng.uniform(0.5, 1.5, K).astype(np.float32), rng.normal(0, 1, K).astype(np.float32),
              rng.normal(0, 1, K).astype(np.float32), rng.uniform(0.5, 2, K).astype(np.float32))
    if narrow_plane:
        assert narrow_tile(N, H, H, H, H, k, k, (1, 1), p, (1, 1), C * k * k * K)
    out = []
    for fused in (False, True):
        out.append(_run_forward(x, w, np.zeros(K, np.float32), (1, 1), p, (1, 1), affine, 1e-5,
                                (0.0, 6.0), fused=fused))
    np.testing.assert_array_equal(out[0].view(np.uint32), out[1].view(np.uint32))
    bad = (affine[0], affine[1], affine[2], -np.ones(K, np.float32))      # not a variance
    with pytest.raises(ValueError, match="running_var"):
        _run_forward(x, w, np.zeros(K, np.float32), (1, 1), p, (1, 1), bad, 1e-5, (0.0, 6.0),
                     fused=True)


@njit(cache=True, nogil=True)
def _checked_copy(pair, limit, i0, i1):
    """``pair[1][i] = pair[0][i]`` for units i0:i1 (a tuple argument, as a batch norm's); raises
    on a value above ``limit``."""
    src, dst = pair
    for i in range(i0, i1):
        if src[i] > limit:
            raise ValueError("value above the limit")
        dst[i] = src[i]


@pytest.mark.parametrize("bad", [None, 0, 6, 12])
def test_lanes_take_tuples_and_raise_a_lanes_exception(bad, rng):
    # arguments holding a tuple of arrays go through the parallel loop (kernels.team.pack);
    # an exception in any lane, dropped by the loop, is raised to the caller all the same
    x = rng.random(13)
    if bad is not None:
        x[bad] = 5.0
    y = np.zeros_like(x)
    if bad is None:
        _lanes.run_lanes(_checked_copy, 13, (x, y), 1.0, lanes=3)
        np.testing.assert_array_equal(y, x)
    else:
        with pytest.raises(ValueError, match="above the limit"):
            _lanes.run_lanes(_checked_copy, 13, (x, y), 1.0, lanes=3)


@pytest.mark.parametrize("bad", [None, 0, 6, 12])
def test_lane_steps_run_in_order_and_raise_a_lanes_exception(bad, rng):
    # LaneSteps: calls prepared once, run by one call from Python (kernels.team.run_steps), each
    # step after the one before it (the second copies what the first wrote), as often as wanted
    # on the same arrays (their contents changed between runs); a step that raised is run
    # again in the caller, which raises its exception
    x = rng.random(13)
    mid, y = np.zeros_like(x), np.zeros_like(x)
    steps = _lanes.LaneSteps()
    steps.add(_checked_copy, 13, (x, mid), 1.0, lanes=3)
    steps.add(_checked_copy, 13, (mid, y), 1.0, lanes=2)
    steps.add(nn_act.relu_forward, 1, y, y, lanes=1)           # one part: no parallel region
    assert len(steps) == 3
    for _ in range(2):
        steps.run()
        np.testing.assert_array_equal(y, x)
        x[:] = rng.random(13)
    y[:] = 0
    steps.run(1, 2)                                  # a range of the steps: the second alone
    np.testing.assert_array_equal(y, mid)
    if bad is not None:
        x[bad] = 5.0
        with pytest.raises(ValueError, match="above the limit"):
            steps.run()


def test_lane_steps_refuse_a_kernel_that_returns_a_value():
    @njit(nogil=True)
    def returns(a, i0, i1):
        return i1 - i0

    with pytest.raises(TypeError, match="must return nothing"):
        _lanes.LaneSteps().add(returns, 4, np.zeros(4), lanes=2)


@pytest.mark.parametrize("stride", [1, 2])
def test_forward_steps_equal_the_forward_and_refuse_a_short_workspace(stride, rng):
    # cvcore.nn.conv.forward_steps: a convolution's two lane calls prepared once (strip fill or
    # phase-strip fill, product with the epilogue), run twice on new input values: the
    # forward's bits each time; a workspace shorter than the strip is refused (the steps would
    # write a temporary array)
    from cvcore.nn.conv import forward_steps, strip_length
    N, C, K, H = 2, 5, 9, 11
    w = rng.standard_normal((K, C, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    Ho = (H + 2 - 3) // stride + 1
    empty = np.empty(0, np.float32)
    geometry = (3, 3, stride, stride, 1, 1, 1, 1)
    ws = np.empty(strip_length((N, C, H, H), Ho, Ho, *geometry), np.float32)
    x = np.empty((N, C, H, H), np.float32)
    y = np.empty((N, K, Ho, Ho), np.float32)
    status = np.zeros(1, np.int64)
    steps = _lanes.LaneSteps()
    args = (x, w.reshape(K, -1), *geometry, 1, bias)
    epilogue = (y, (empty,) * 4, 0.0, 0.0, np.inf, np.empty((0, 0, 0, 0), np.float32), status)
    forward_steps(steps, *args, ws, *epilogue, lanes=2)
    assert len(steps) == 2
    for _ in range(2):
        x[:] = rng.standard_normal(x.shape)
        steps.run()
        expected = _run_forward(x, w, bias, (stride, stride), (1, 1), (1, 1), clamp=(0.0, np.inf))
        np.testing.assert_array_equal(y.view(np.uint32), expected.view(np.uint32))
    with pytest.raises(ValueError, match="workspace"):
        forward_steps(_lanes.LaneSteps(), *args, ws[:-1], *epilogue)
