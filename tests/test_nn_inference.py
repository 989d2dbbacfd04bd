"""The fused inference plan of the ResNets (cvcore/nn/inference.py): bit-equal to the
layer-by-layer forward at every batch size and thread count, sees every change of the weights,
falls back (and reports the usual errors) where it does not apply."""
import copy
import pickle
import threading

import numba
import numpy as np
import pytest

from cvcore import nn
from cvcore.nn.blocks import Bottleneck
from cvcore.nn.inference import ResNetPlan
from cvcore.nn.models import resnet20
from tests.test_nn_models import _randomise_bn


def _layer_by_layer(model, x):
    """The forward without the plan."""
    saved = model.__dict__.get("_plan")
    object.__setattr__(model, "_plan", False)
    try:
        with nn.no_grad():
            return model(x)
    finally:
        object.__setattr__(model, "_plan", saved)


def _planned(model, x):
    with nn.no_grad():
        out = model(x)
    assert isinstance(model.__dict__.get("_plan"), ResNetPlan)
    return out


def _bottleneck_net(rng):
    # ImageNet stem (7x7/2 conv, 3x3/2 max pool), bottlenecks with and without projections
    net = nn.ResNet(Bottleneck, [2, 1], num_classes=5, widths=(4, 6), rng=0)
    _randomise_bn(net, rng)
    return net.eval()


def _resnet20(rng):
    model = resnet20(rng=0)
    _randomise_bn(model, rng)
    return model.eval()


# (network maker, input size): a CIFAR ResNet-20, and bottlenecks behind an ImageNet stem
NETWORKS = [(_resnet20, 12), (_bottleneck_net, 29)]


@pytest.mark.parametrize("make, size", NETWORKS)
def test_plan_equals_the_layer_by_layer_forward_at_every_batch_size(make, size, rng):
    model = make(rng)
    x = rng.standard_normal((5, 3, size, size)).astype(np.float32)
    whole = _planned(model, x)
    np.testing.assert_array_equal(whole, _layer_by_layer(model, x))
    for n in (1, 2):                                   # a smaller batch: the same bits
        np.testing.assert_array_equal(_planned(model, x[:n]), whole[:n])
    np.testing.assert_array_equal(_planned(model, x), whole)     # the buffers are reused


def test_plan_is_the_same_on_one_and_two_threads(rng):
    model = _resnet20(rng)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _planned(model, x)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _planned(model, x)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_plan_sees_changed_weights_and_statistics(rng):
    model = _resnet20(rng)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    first = _planned(model, x)
    model.layer2[0].conv1.weight.data *= 1.5                       # in place
    model.layer3[1].bn2.running_var[...] *= 2.0                     # in place
    second = _planned(model, x)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, _layer_by_layer(model, x))
    state = model.state_dict()                                      # new buffer arrays
    state["layer1.0.bn1.running_mean"] = state["layer1.0.bn1.running_mean"] + 0.5
    model.load_state_dict(state)
    model.fc.weight.data = model.fc.weight.data * 2                 # a new parameter array
    third = _planned(model, x)
    assert not np.array_equal(third, second)
    np.testing.assert_array_equal(third, _layer_by_layer(model, x))


def test_plan_steps_aside_where_it_does_not_apply(rng):
    model = _resnet20(rng)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    model.layer2[0].bn1.train()                   # one batch norm on batch statistics
    with nn.no_grad():
        out = model(x)
    plan = model.__dict__["_plan"]
    assert plan.run(x) is None
    np.testing.assert_array_equal(out, _layer_by_layer(model, x))
    model.eval()
    with nn.no_grad():                            # float64 input: computed in float32 as before
        np.testing.assert_array_equal(model(x.astype(np.float64)), model(x))
    model.layer1[0].conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=True, rng=0)  # surgery: a bias
    with nn.no_grad():
        out = model(x)
    np.testing.assert_array_equal(out, _layer_by_layer(model, x))


def test_errors_are_those_of_the_layers(rng):
    model = resnet20(rng=0).eval()
    with nn.no_grad():
        with pytest.raises(ValueError, match=r"^conv1: .*expected 3 input channels, got 1"):
            model(np.zeros((2, 1, 8, 8), dtype=np.float32))
        x = np.zeros((1, 3, 8, 8), dtype=np.float32)
        x[0, 1, 2, 3] = np.nan
        with pytest.raises(ValueError, match=r"^conv1: .*NaN"):
            model(x)
        model(np.zeros((1, 3, 8, 8), dtype=np.float32))
        model.layer2[1].bn2.running_var[3] = -1.0                  # not a variance
        with pytest.raises(ValueError, match=r"^layer2\.1\.bn2: .*running_var \+ eps positive"):
            model(np.zeros((1, 3, 8, 8), dtype=np.float32))
        with pytest.raises(ValueError, match="ResNet input must have 4 dimensions"):
            model(np.zeros((3, 8, 8), dtype=np.float32))


def test_copies_and_threads_have_their_own_buffers(rng):
    model = _resnet20(rng)
    xs = [rng.standard_normal((n, 3, 16, 16)).astype(np.float32) for n in (1, 3, 2, 4)]
    expected = [_layer_by_layer(model, x) for x in xs]
    _planned(model, xs[0])
    twin = copy.deepcopy(model)
    assert twin.__dict__["_plan"] is None                          # makes its own
    np.testing.assert_array_equal(_planned(twin, xs[2]), expected[2])
    assert twin.__dict__["_plan"].net is twin
    np.testing.assert_array_equal(_planned(pickle.loads(pickle.dumps(model)), xs[1]),
                                  expected[1])
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                for j, x in enumerate(xs):
                    np.testing.assert_array_equal(_planned(model, x), expected[j])
            results[i] = True
        except Exception as exc:             # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3


@pytest.mark.parametrize("make, size", NETWORKS)
def test_embed_and_features_through_the_plan(make, size, rng):
    model = make(rng)
    x = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    with nn.no_grad():
        emb, maps = model.embed(x), model.features(x)
        model(x)                                 # the next call reuses the buffers ...
    assert isinstance(model.__dict__.get("_plan"), ResNetPlan)
    object.__setattr__(model, "_plan", False)
    with nn.no_grad():                           # ... so the results above are copies
        np.testing.assert_array_equal(emb, model.embed(x))
        np.testing.assert_array_equal(maps, model.features(x))
    assert emb.shape == (3, model.fc.in_features) and maps.ndim == 4


@pytest.mark.parametrize("make, size", NETWORKS)
def test_step_calls_are_the_plans_kernel_calls(make, size, rng):
    # what `python -m benchmarks.cnn --layers` times: one call per step, named by its
    # convolution, in order, with the block's ReLU and residual flags
    model = make(rng)
    x = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    feats = model.features(x)
    with nn.no_grad():
        model(x)
    steps = model.__dict__["_plan"].step_calls(x)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    paths = [p for p, _, _, _ in steps if p != "maxpool"]
    assert sorted(p.removesuffix(".0") for p in convs) == sorted(paths)
    assert len(paths) == len(convs) and paths[0] == "conv1"
    block_last = "conv2" if make is _resnet20 else "conv3"
    for path, relu, res, fn in steps:
        last = path.rsplit(".", 1)[-1]
        assert relu == (last not in ("downsample", "maxpool"))
        assert res == (last == block_last and path.startswith("layer"))   # the residual sum
        out = fn()
        assert out is None or out >= 0
    np.testing.assert_array_equal(model.features(x), feats)
    model.train()
    assert model.__dict__["_plan"].step_calls(x) == []


def test_large_batches_run_pixel_major_bit_equal(rng):
    # from a couple of blocks of simd.TBP images the plan stores its activations pixel-major
    # (kernels.nn_conv.conv2d_forward_pm): the same bits as the layer-by-layer forward, on one
    # and two threads, beside the strip programs of smaller batches; a statistic that is not a
    # variance still gets the layer's error
    from kernels import simd
    model = _resnet20(rng)
    x = rng.standard_normal((2 * simd.TBP + 7, 3, 8, 8)).astype(np.float32)
    expected = _layer_by_layer(model, x)
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            np.testing.assert_array_equal(_planned(model, x), expected)
            np.testing.assert_array_equal(_planned(model, x[:3]), expected[:3])
    finally:
        numba.set_num_threads(before)
    names = [name for name, _, _, _ in model.__dict__["_plan"].step_calls(x)]
    assert names[0] == "to_pixel_major" and names[-1] == "from_pixel_major"
    assert "to_pixel_major" not in [name for name, _, _, _ in
                                    model.__dict__["_plan"].step_calls(x[:3])]
    if simd.AVX512:                            # a batch of 16: one block of 16 (the half tile)
        np.testing.assert_array_equal(_planned(model, x[:simd.TBH]), expected[:simd.TBH])
        programs = model.__dict__["_plan"]._local.programs
        calls = [p[1] for key, p in programs.items() if key[0] == simd.TBH][0]
        assert calls[0][1].__name__ == "_to_pixel_major" and calls[0][-1] == simd.TBH
    with nn.no_grad():
        embed, features = model.embed(x), model.features(x)
    saved = model.__dict__["_plan"]
    object.__setattr__(model, "_plan", False)
    with nn.no_grad():
        np.testing.assert_array_equal(embed, model.embed(x))
        np.testing.assert_array_equal(features, model.features(x))
    object.__setattr__(model, "_plan", saved)
    model.layer3[0].bn2.running_var[1] = -1.0
    with nn.no_grad(), pytest.raises(ValueError, match=r"^layer3\.0\.bn2: .*running_var"):
        model(x)


def test_train_and_eval_reach_every_module_after_the_structure_changes():
    # Module.train()/eval() walk the descendants once and keep the list until the structure
    # changes: a replaced or added layer is reached, a copy walks its own modules
    import copy
    model = resnet20(rng=0)
    model.eval()
    assert not any(m.training for m in model.modules())
    model.layer1[0].conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)   # a new layer, training
    assert model.layer1[0].conv1.training
    model.eval()
    assert not any(m.training for m in model.modules())
    model.layer2[0].extra = nn.ReLU()
    model.train()
    assert all(m.training for m in model.modules())
    twin = copy.deepcopy(model)
    twin.eval()
    assert not any(m.training for m in twin.modules())
    assert all(m.training for m in model.modules())
    shallow = copy.copy(model.layer3)
    shallow.eval()
    assert not shallow.training and model.layer3.training


def test_step_calls_as_the_first_call_of_a_shape(rng):
    # step_calls on a fresh plan: the first run grows the strip workspace (dropping the
    # programs made for the old one); step_calls still returns the calls of this shape
    model = _resnet20(rng)
    x = rng.standard_normal((3, 3, 12, 12)).astype(np.float32)
    with nn.no_grad():
        steps = ResNetPlan(model).step_calls(x)
    assert [name for name, _, _, _ in steps][:2] == ["conv1", "layer1.0.conv1"]


def test_strip_program_runs_its_steps_in_one_call(rng, monkeypatch):
    # a strip program (batches under PIXEL_MAJOR_MIN_BATCH) runs its convolutions' lane calls
    # through one kernels.team.run_steps call from Python (two steps per convolution: the
    # strip fill, then the product; then the global average pool), not a run_team call each;
    # the same bits
    from kernels import team
    model = _resnet20(rng)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    expected = _layer_by_layer(model, x)
    _planned(model, x)
    calls, parts = [], []
    real_steps, real_team = team.run_steps, team.run_team
    monkeypatch.setattr(team, "run_steps", lambda steps, serial, failed: calls.append(
        steps.shape[0]) or real_steps(steps, serial, failed))
    monkeypatch.setattr(team, "run_team", lambda *a: parts.append(a) or real_team(*a))
    np.testing.assert_array_equal(_planned(model, x), expected)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert calls == [2 * len(convs) + 1] and parts == []


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_strip_program_in_a_forked_child(rng, monkeypatch):
    # GNU OpenMP terminates a forked child that starts a parallel region after its parent used
    # one: a child runs the program's steps serially (kernels.team.run_steps' serial flag),
    # with the parent's result
    import os

    from cvcore import _threads
    if numba.get_num_threads() < 2:
        pytest.skip("needs two Numba threads for a parallel region in the parent")
    monkeypatch.setattr(_threads, "usable_threads", lambda cap: cap)   # not the free cores
    model = _resnet20(rng)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    want = _planned(model, x)
    (program,) = model.__dict__["_plan"]._local.programs.values()
    steps = [call[1] for call in program[1] if call[0] == -3]
    assert max(steps[0]._table[:, 4]) >= 2             # the parent ran parallel regions
    pid = os.fork()
    if pid == 0:                                       # the child: exit status 0 if all is well
        from kernels import team
        flags, real = [], team.run_steps
        team.run_steps = lambda steps, serial, failed: flags.append(serial) or real(
            steps, serial, failed)
        try:
            os._exit(0 if np.array_equal(_planned(model, x), want) and flags == [True] else 1)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
