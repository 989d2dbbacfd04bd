"""Optimisers and learning-rate schedules: hand-worked steps, agreement with torch.optim, resuming."""
import math

import numpy as np
import pytest

from cvcore.nn.module import Module, Parameter
from cvcore.nn.optim import SGD, Adam, AdamW
from cvcore.nn.schedules import (ChainedScheduler, CosineAnnealingLR, LinearLR, OneCycleLR,
                                 StepLR)

SHAPES = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "fc.weight": (2, 5), "frozen": (3,)}


class Tiny(Module):
    """Parameters only: enough for an optimiser, which never calls forward."""

    def __init__(self, rng):
        super().__init__()
        self.conv = Module()
        self.conv.weight = Parameter(rng.standard_normal(SHAPES["conv.weight"]))
        self.conv.bias = Parameter(rng.standard_normal(SHAPES["conv.bias"]))
        self.fc = Module()
        self.fc.weight = Parameter(rng.standard_normal(SHAPES["fc.weight"]))
        self.frozen = Parameter(rng.standard_normal(SHAPES["frozen"]), requires_grad=False)


def _weights(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


# -- hand-worked steps ------------------------------------------------------------------------
def test_sgd_plain_step_by_hand():
    p = Parameter(np.array([1.0, 2.0]))
    p.grad = np.array([1.0, -2.0], dtype=np.float32)
    SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.9, 2.2], rtol=1e-6)


def test_sgd_momentum_and_weight_decay_by_hand():
    # g' = g + 0.5 * theta; first step b = g'; second step b = 0.9 b + g'.
    p = Parameter(np.array([2.0]))
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    p.grad = np.array([1.0], dtype=np.float32)
    opt.step()                        # g' = 1 + 1 = 2, b = 2, theta = 2 - 0.2 = 1.8
    np.testing.assert_allclose(p.data, [1.8], rtol=1e-6)
    opt.step()                        # g' = 1 + 0.9 = 1.9, b = 1.8 + 1.9 = 3.7, theta = 1.43
    np.testing.assert_allclose(p.data, [1.43], rtol=1e-6)
    np.testing.assert_allclose(opt.state[id(p)]["momentum_buffer"], [3.7], rtol=1e-6)


def test_adam_first_step_moves_by_lr_times_sign():
    # After one step m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g).
    p = Parameter(np.array([0.0, 0.0, 0.0]))
    p.grad = np.array([3.0, -0.02, 1e3], dtype=np.float32)
    Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, [-0.01, 0.01, -0.01], rtol=1e-5)


def test_adamw_decays_weights_even_with_zero_gradient():
    p = Parameter(np.array([1.0, -2.0]))
    p.grad = np.zeros(2, dtype=np.float32)
    AdamW([p], lr=0.1, weight_decay=0.5).step()   # theta (1 - 0.05); Adam part is 0 / eps = 0
    np.testing.assert_allclose(p.data, [0.95, -1.9], rtol=1e-6)


def test_skips_frozen_and_gradless_parameters(rng):
    model = Tiny(rng)
    before = _weights(model)
    model.frozen.grad = np.ones(3, dtype=np.float32)   # frozen: ignored even with a grad
    model.conv.bias.grad = np.ones(4, dtype=np.float32)
    opt = SGD(model.named_parameters(), lr=0.5, momentum=0.9)
    opt.step()
    after = _weights(model)
    np.testing.assert_array_equal(after["frozen"], before["frozen"])
    np.testing.assert_array_equal(after["conv.weight"], before["conv.weight"])
    np.testing.assert_allclose(after["conv.bias"], before["conv.bias"] - 0.5, rtol=1e-6)
    assert set(opt.state_dict()["state"]) == {"conv.bias"}


def test_step_updates_in_place_and_zero_grad_clears(rng):
    model = Tiny(rng)
    arrays = [p.data for p in model.parameters()]
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt = Adam(model.parameters())
    opt.step()
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# -- agreement with torch.optim -----------------------------------------------------------------
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]


def _run_both(name, kwargs, steps=10, seed=0, groups=False):
    """Run cvcore's and torch's optimiser side by side on identical params and grads."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    model = Tiny(rng)
    torch_params = {n: torch.nn.Parameter(torch.tensor(p.data), requires_grad=p.requires_grad)
                    for n, p in model.named_parameters()}
    ours_cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name]
    theirs_cls = getattr(torch.optim, name)
    if groups:
        named = list(model.named_parameters())
        ours = ours_cls([{"params": named[:2], "lr": 0.02}, {"params": named[2:]}], **kwargs)
        theirs = theirs_cls([{"params": [torch_params[n] for n, _ in named[:2]], "lr": 0.02},
                             {"params": [torch_params[n] for n, _ in named[2:]]}], **kwargs)
    else:
        ours = ours_cls(model.named_parameters(), **kwargs)
        theirs = theirs_cls(list(torch_params.values()), **kwargs)
    for step in range(steps):
        for i, (n, p) in enumerate(model.named_parameters()):
            grad = rng.standard_normal(p.shape).astype(np.float32)
            # every third step one parameter has no gradient: both optimisers must skip it
            has_grad = p.requires_grad and not (step % 3 == 2 and i == 1)
            p.grad = grad if has_grad else None
            torch_params[n].grad = torch.tensor(grad) if has_grad else None
        ours.step()
        theirs.step()
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.data, torch_params[n].detach().numpy(), rtol=0, atol=1e-5,
                                   err_msg=f"{name} {kwargs}: {n}")
    return model, ours


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_ten_steps_match_torch(name, kwargs):
    _run_both(name, kwargs)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_param_groups_with_own_lr_match_torch(name):
    _run_both(name, dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=0.01), groups=True)


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_training_a_small_real_network_matches_torch(name, kwargs):
    """Ten training steps of conv-BN-ReLU-pool-linear with label-smoothed cross-entropy, cvcore
    against the same network in torch: the gradients come from real backward passes, so the
    optimiser, the layers' ``.grad`` contract and the running statistics are all exercised.
    Weights and buffers stay within 1e-5 (measured: ~1.2e-7)."""
    torch = pytest.importorskip("torch")
    from cvcore import nn
    threads = torch.get_num_threads()
    torch.set_num_threads(1)               # tiny tensors: threads only add contention
    try:
        _train_small_network_in_lockstep(torch, nn, name, kwargs)
    finally:
        torch.set_num_threads(threads)


def _train_small_network_in_lockstep(torch, nn, name, kwargs):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False, rng=1), nn.BatchNorm2d(8),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5, rng=2))
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                 torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                 torch.nn.Linear(8, 5))
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v))
                            for k, v in model.state_dict().items()})
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    tcriterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    opt = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name](model.named_parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    for _ in range(10):
        x = rng.standard_normal((8, 3, 6, 6)).astype(np.float32)
        y = rng.integers(0, 5, 8)
        criterion(model(x), y)
        model.backward(criterion.backward())
        opt.step()
        topt.zero_grad()
        tcriterion(tmodel(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    theirs = tmodel.state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(value, theirs[key].numpy(), atol=1e-5, rtol=0, err_msg=key)


# -- resuming ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kwargs", [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                        (Adam, dict(lr=0.01, amsgrad=True)),
                                        (AdamW, dict(lr=0.01))])
def test_state_dict_resume_equals_uninterrupted_run(cls, kwargs):
    grads = [{n: np.random.default_rng(100 + s).standard_normal(shape).astype(np.float32)
              for n, shape in SHAPES.items()} for s in range(8)]

    def run(model, opt, steps):
        for g in steps:
            for n, p in model.named_parameters():
                p.grad = g[n] if p.requires_grad else None
            opt.step()

    straight = Tiny(np.random.default_rng(1))
    run(straight, cls(straight.named_parameters(), **kwargs), grads)

    first = Tiny(np.random.default_rng(1))
    opt = cls(first.named_parameters(), **kwargs)
    run(first, opt, grads[:4])
    saved_model, saved_opt = first.state_dict(), opt.state_dict()
    run(first, opt, grads[4:5])            # keep stepping: the saved copy must not change
    resumed = Tiny(np.random.default_rng(99))
    resumed.load_state_dict(saved_model)
    opt2 = cls(resumed.named_parameters(), **kwargs)
    opt2.load_state_dict(saved_opt)
    run(resumed, opt2, grads[4:])
    for n, p in resumed.named_parameters():
        np.testing.assert_array_equal(p.data, straight.state_dict()[n], err_msg=n)
    entry = saved_opt["state"]["conv.weight"]
    assert all(isinstance(v, (int, np.ndarray)) for v in entry.values())


def test_load_state_dict_refuses_other_model(rng):
    model = Tiny(rng)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    opt = Adam(model.named_parameters())
    opt.step()
    state = opt.state_dict()
    other = Module()
    other.w = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match=r"missing \['w'\].*unexpected \['frozen', 'conv.weight'"):
        Adam(other.named_parameters()).load_state_dict(state)
    state["state"]["conv.bias"]["exp_avg"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"conv.bias.exp_avg has shape \(7,\)"):
        Adam(Tiny(rng).named_parameters()).load_state_dict(state)


# -- bad input ---------------------------------------------------------------------------------
def test_bad_arguments_are_named():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="Nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr must be non-negative"):
        SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="cvcore Parameters"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="more than one place"):
        SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    with pytest.raises(TypeError, match="single Parameter"):
        Adam(p)


def test_bad_gradient_is_named_and_no_step_taken():
    m = Module()
    m.w = Parameter(np.ones(3))
    opt = SGD(m.named_parameters(), lr=0.1)
    m.w.grad = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"gradient of w has shape \(4,\)"):
        opt.step()
    m.w.grad = np.array([1.0, np.nan, 1.0], dtype=np.float32)
    with pytest.raises(ValueError, match="gradient of w contains NaN"):
        opt.step()
    np.testing.assert_array_equal(m.w.data, np.ones(3))


# -- properties --------------------------------------------------------------------------------
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.95, 0.99)])
def test_adam_step_is_bounded(betas):
    """Kingma & Ba 2015, sec. 2.1: |step| <= lr (1 - b1) / sqrt(1 - b2) when (1 - b1) >
    sqrt(1 - b2), and <= lr otherwise, whatever the gradients (here scaled over 8 decades)."""
    rng = np.random.default_rng(7)
    b1, b2 = betas
    lr = 0.01
    bound = lr * (1 - b1) / math.sqrt(1 - b2) if (1 - b1) > math.sqrt(1 - b2) else lr
    p = Parameter(np.zeros(200))
    opt = Adam([p], lr=lr, betas=betas)
    for _ in range(20):
        before = p.data.copy()
        p.grad = (rng.standard_normal(200) * 10.0 ** rng.integers(-4, 4, 200)).astype(np.float32)
        opt.step()
        assert np.abs(p.data - before).max() <= bound * (1 + 1e-4)


# -- schedules ---------------------------------------------------------------------------------
def _schedule_pair(make_ours, make_theirs, opt="SGD", steps=25, groups=2):
    torch = pytest.importorskip("torch")
    params = [Parameter(np.zeros(2)) for _ in range(groups)]
    tparams = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    lrs = [0.1 * (i + 1) for i in range(groups)]
    if opt == "SGD":
        ours = SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=0.1, momentum=0.9)
        theirs = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tparams, lrs)],
                                 lr=0.1, momentum=0.9)
    else:
        ours = Adam([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
        theirs = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(tparams, lrs)])
    s_ours, s_theirs = make_ours(ours), make_theirs(theirs, torch.optim.lr_scheduler)
    seq_ours, seq_theirs = [s_ours.get_last_lr()], [s_theirs.get_last_lr()]
    mom_key = "momentum" if opt == "SGD" else "betas"
    mom_ours = [[g[mom_key] for g in ours.param_groups]]
    mom_theirs = [[g[mom_key] for g in theirs.param_groups]]
    for _ in range(steps):
        theirs.step()            # no grads: a no-op, but torch wants optimizer.step() first
        s_ours.step()
        s_theirs.step()
        seq_ours.append(s_ours.get_last_lr())
        seq_theirs.append(s_theirs.get_last_lr())
        mom_ours.append([g[mom_key] for g in ours.param_groups])
        mom_theirs.append([g[mom_key] for g in theirs.param_groups])
    np.testing.assert_allclose(seq_ours, seq_theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.array(mom_ours, dtype=float), np.array(mom_theirs, dtype=float),
                               rtol=1e-12)
    return seq_ours


def test_step_lr_matches_torch():
    seq = _schedule_pair(lambda o: StepLR(o, step_size=4, gamma=0.5),
                         lambda o, S: S.StepLR(o, step_size=4, gamma=0.5))
    assert seq[0][0] == 0.1 and seq[4][0] == 0.05 and seq[8][0] == 0.025   # by hand


def test_cosine_matches_torch_and_closed_form():
    seq = _schedule_pair(lambda o: CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
                         lambda o, S: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-3), steps=30)
    closed = [1e-3 + (0.1 - 1e-3) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(31)]
    np.testing.assert_allclose([s[0] for s in seq], closed, rtol=1e-10)


def test_linear_warmup_matches_torch_and_closed_form():
    seq = _schedule_pair(lambda o: LinearLR(o, start_factor=0.1, total_iters=6),
                         lambda o, S: S.LinearLR(o, start_factor=0.1, total_iters=6))
    closed = [0.1 * (0.1 + 0.9 * min(t, 6) / 6) for t in range(26)]
    np.testing.assert_allclose([s[0] for s in seq], closed, rtol=1e-12)


def test_warmup_then_cosine_chained_matches_torch():
    _schedule_pair(lambda o: ChainedScheduler([LinearLR(o, start_factor=0.25, total_iters=4),
                                               CosineAnnealingLR(o, T_max=20)]),
                   lambda o, S: S.ChainedScheduler([S.LinearLR(o, start_factor=0.25,
                                                               total_iters=4),
                                                    S.CosineAnnealingLR(o, T_max=20)]),
                   steps=20)


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
@pytest.mark.parametrize("kwargs", [dict(), dict(anneal_strategy="linear", three_phase=True),
                                    dict(pct_start=0.25, div_factor=10.0, final_div_factor=100.0)])
def test_one_cycle_matches_torch(opt, kwargs):
    seq = _schedule_pair(lambda o: OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=30, **kwargs),
                         lambda o, S: S.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=30, **kwargs),
                         opt=opt, steps=30)
    if not kwargs:   # torch's defaults, checked by hand: start at max_lr/25, end at that/1e4
        assert math.isclose(seq[0][0], 0.5 / 25) and math.isclose(seq[29][0], 0.5 / 25 / 1e4)
        assert max(s[0] for s in seq) == pytest.approx(0.5)


def test_one_cycle_refuses_to_step_past_the_end():
    o = SGD([Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    s = OneCycleLR(o, max_lr=1.0, total_steps=3)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="total_steps is 3"):
        s.step()


@pytest.mark.parametrize("make", [lambda o: ChainedScheduler([LinearLR(o, 0.1, total_iters=3),
                                                                StepLR(o, 4, 0.5)]),
                                  lambda o: StepLR(o, 3, 0.5),
                                  lambda o: CosineAnnealingLR(o, 7),
                                  lambda o: LinearLR(o, 0.2, total_iters=5),
                                  lambda o: OneCycleLR(o, max_lr=0.3, total_steps=15)])
def test_schedule_resume_continues_the_sequence(make):
    def fresh():
        o = SGD([("w", Parameter(np.zeros(1)))], lr=0.1, momentum=0.9)
        return o, make(o)

    o1, s1 = fresh()
    full = [s1.get_last_lr()[0]]
    for _ in range(12):
        s1.step()
        full.append(s1.get_last_lr()[0])
    o2, s2 = fresh()
    for _ in range(5):
        s2.step()
    saved_o, saved_s = o2.state_dict(), s2.state_dict()
    o3, s3 = fresh()
    o3.load_state_dict(saved_o)
    s3.load_state_dict(saved_s)
    resumed = [s3.get_last_lr()[0]]
    for _ in range(7):
        s3.step()
        resumed.append(s3.get_last_lr()[0])
    assert resumed == full[5:]


def test_schedule_bad_arguments():
    o = SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        StepLR(o, 0)
    with pytest.raises(ValueError, match="start_factor"):
        LinearLR(o, start_factor=1.5)
    with pytest.raises(ValueError, match="total_steps, or both"):
        OneCycleLR(o, max_lr=1.0)
    with pytest.raises(ValueError, match="cycle_momentum"):
        OneCycleLR(_NoMomentum(), max_lr=1.0, total_steps=5)
    with pytest.raises(TypeError, match="not a cvcore optimizer"):
        StepLR(object(), 2)


def _NoMomentum():
    """An optimiser whose groups have neither momentum nor betas."""
    o = SGD([Parameter(np.zeros(1))], lr=0.1)
    for g in o.param_groups:
        del g["momentum"]
    return o


def test_infinite_gradient_is_named_and_huge_finite_gradient_is_not():
    # Regression guard for the fast finiteness check (a float32 sum): a sum that overflows from
    # finite values must not be mistaken for an infinite gradient.
    m = Module()
    m.w = Parameter(np.zeros(4))
    opt = SGD(m.named_parameters(), lr=1e-40)
    m.w.grad = np.full(4, 3e38, dtype=np.float32)          # finite, but the sum overflows
    opt.step()
    assert np.isfinite(m.w.data).all()
    m.w.grad = np.array([0, -np.inf, 0, 0], dtype=np.float32)
    with pytest.raises(ValueError, match="gradient of w contains infinity"):
        opt.step()


# -- docs --------------------------------------------------------------------------------------
def test_docstring_examples_run():
    import doctest

    import cvcore.nn.optim
    import cvcore.nn.schedules
    for module in (cvcore.nn.optim, cvcore.nn.schedules):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("ours,theirs", [
    (SGD, "SGD"), (Adam, "Adam"), (AdamW, "AdamW"), (StepLR, "lr_scheduler.StepLR"),
    (CosineAnnealingLR, "lr_scheduler.CosineAnnealingLR"), (LinearLR, "lr_scheduler.LinearLR"),
    (OneCycleLR, "lr_scheduler.OneCycleLR")])
def test_defaults_are_torchs(ours, theirs):
    """The documented defaults (OneCycleLR's pct_start 0.3, div_factor 25, ...) are PyTorch's."""
    import inspect
    torch = pytest.importorskip("torch")
    ref = torch.optim
    for part in theirs.split("."):
        ref = getattr(ref, part)
    mine = inspect.signature(ours).parameters
    for name, param in inspect.signature(ref).parameters.items():
        if name in mine and param.default is not inspect.Parameter.empty:
            assert mine[name].default == param.default, (theirs, name)
    assert [n for n in mine if n not in inspect.signature(ref).parameters] == []
