"""Attacks: FGSM and PGD against PyTorch and torchattacks on the same weights, toy cases,
properties (budget, clipping, seeding, batch independence), argument checks, and the published
robust networks."""
import numpy as np
import pytest

from cvcore import nn
from cvcore.adversarial import (NetworkModel, fgsm, pgd, robust_accuracy, torch_uniform_start,
                                transfer_accuracy)
from cvcore.adversarial.models import softmax_cross_entropy

# A pixel whose input gradient is within this share of the image's largest gradient is "within
# float32 rounding of zero": a float32 backward pass of a few layers carries relative errors of
# about 1e-6 of the largest terms, so the sign of such a gradient is not determined by the math.
SIGN_TIE = 1e-4


def _small_net(rng):
    """conv -> BN (eval, random statistics) -> ReLU -> max-pool -> flatten -> linear."""
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, rng=rng), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 5, rng=rng))
    state = net.state_dict()
    state["1.running_mean"] = rng.normal(0, 0.1, 6).astype(np.float32)
    state["1.running_var"] = rng.uniform(0.5, 2, 6).astype(np.float32)
    state["1.weight"] = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    state["1.bias"] = rng.normal(0, 0.1, 6).astype(np.float32)
    net.load_state_dict(state)
    return net.eval()


def _torch_small_net(torch, net):
    t = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.BatchNorm2d(6),
                            torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                            torch.nn.Linear(96, 5))
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    return t.eval()


def _data(rng, n=32):
    x = rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, n)
    return x, y


def _torch_grad(torch, tnet, x, y):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(tnet(xt), torch.from_numpy(y))
    (g,) = torch.autograd.grad(loss, xt)
    return g.numpy()


def _assert_equal_up_to_sign_ties(ours, ref, grad, what):
    """``ours == ref`` except where the reference gradient is within float32 rounding of 0."""
    differ = ours != ref
    scale = np.abs(grad).reshape(len(grad), -1).max(axis=1).reshape((-1,) + (1,) * (grad.ndim - 1))
    ties = np.abs(grad) <= SIGN_TIE * scale
    assert not np.any(differ & ~ties), (
        f"{what}: {int(np.sum(differ & ~ties))} pixels differ where the gradient is clearly "
        f"nonzero")
    return int(differ.sum())


# -- the interface --------------------------------------------------------------------------------
def test_cross_entropy_gradient_by_hand():
    z = np.array([[0.0, np.log(3.0)]])        # softmax = [1/4, 3/4]
    loss, dz = softmax_cross_entropy(z, np.array([1]))
    np.testing.assert_allclose(loss, [-np.log(0.75)])
    np.testing.assert_allclose(dz, [[0.25, -0.25]])


def test_network_model_gradient_is_per_sample_and_matches_central_differences(rng):
    net = _small_net(rng)
    model = NetworkModel(net, mean=0.5, std=0.25)
    x, y = _data(rng, 4)
    loss, g = model.loss_gradient(x, y)
    # per sample: the first image's gradient does not depend on the rest of the batch
    loss1, g1 = model.loss_gradient(x[:1], y[:1])
    np.testing.assert_allclose(g1[0], g[0], rtol=1e-5, atol=1e-7)
    # against central differences of the per-sample loss (float32 model: loose tolerance)
    h = 1e-2
    for idx in [(0, 0, 3, 4), (2, 0, 7, 0), (3, 0, 1, 6)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num = (model.loss_gradient(xp, y)[0] - model.loss_gradient(xm, y)[0])[idx[0]] / (2 * h)
        assert abs(num - g[idx]) <= 2e-2 * max(1.0, abs(num)), idx
    assert net.training is False and all(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_training_mode_is_restored_and_attack_runs_in_eval_mode(rng):
    net = _small_net(rng).train()
    x, y = _data(rng, 8)
    model = NetworkModel(net)
    a = fgsm(model, x, y, 0.05)
    net.eval()
    b = fgsm(model, x, y, 0.05)
    np.testing.assert_array_equal(a, b)          # BN used its running statistics both times
    net.train()
    state = net.state_dict()
    fgsm(model, x, y, 0.05)
    assert net.training
    np.testing.assert_array_equal(state["1.running_mean"], net.state_dict()["1.running_mean"])


# -- toy cases ----------------------------------------------------------------------------------
def _linear_model(w):
    """Two classes, logits (0, w . x): the loss gradient of class 0 is +w * p1."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(w.size, 2, rng=np.random.default_rng(0)))
    state = net.state_dict()
    state["1.weight"] = np.stack([np.zeros(w.size), w.ravel()]).astype(np.float32)
    state["1.bias"] = np.zeros(2, np.float32)
    net.load_state_dict(state)
    return net


def test_fgsm_by_hand_steps_along_the_sign_and_clips():
    w = np.array([[1.0, -2.0], [0.5, -0.1]])
    net = _linear_model(w)
    x = np.array([[[[0.5, 0.5], [0.98, 0.03]]]], np.float32)
    out = fgsm(net, x, np.array([0]), eps=0.05)
    # d loss_0 / dx = p1 * w: signs (+, -, +, -); 0.98 + 0.05 clips to 1, 0.03 - 0.05 to 0
    np.testing.assert_array_equal(out, np.array([[[[0.55, 0.45], [1.0, 0.0]]]], np.float32))
    # targeted at class 1: down the loss of class 1, i.e. the same direction here
    np.testing.assert_array_equal(fgsm(net, x, np.array([1]), eps=0.05, targeted=True), out)


def test_pgd_linf_by_hand_projects_onto_the_ball():
    w = np.array([[1.0, -1.0]])
    net = _linear_model(w)
    x = np.array([[[[0.5, 0.5]]]], np.float32)
    # three steps of 0.04 along (+, -) but the ball has radius 0.1
    out = pgd(net, x, np.array([0]), eps=0.1, steps=3, step_size=0.04, random_start=False)
    np.testing.assert_allclose(out, [[[[0.6, 0.4]]]], atol=1e-7)


def test_pgd_l2_by_hand_projects_onto_the_ball():
    w = np.array([[3.0, 4.0]])
    net = _linear_model(w)
    x = np.array([[[[0.5, 0.5]]]], np.float32)
    out = pgd(net, x, np.array([0]), eps=0.1, norm="l2", steps=4, step_size=0.05,
              random_start=False)
    np.testing.assert_allclose(out, [[[[0.56, 0.58]]]], atol=1e-6)   # 0.1 * (3, 4) / 5


# -- properties ---------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_budget_and_range_and_is_seeded_and_batch_independent(rng, norm):
    net = _small_net(rng)
    x, y = _data(rng, 12)
    eps = 0.1 if norm == "linf" else 0.5
    a = pgd(net, x, y, eps, norm=norm, steps=4, seed=3, batch_size=5)
    b = pgd(net, x, y, eps, norm=norm, steps=4, seed=3, batch_size=12)
    c = pgd(net, x, y, eps, norm=norm, steps=4, seed=4, batch_size=12)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.array_equal(b, c)
    d = (a - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(d).max() <= np.float32(eps) + 1e-7
    else:
        assert np.linalg.norm(d, axis=1).max() <= eps * (1 + 1e-5)
    assert a.min() >= 0 and a.max() <= 1


def test_restarts_keep_the_strongest_result(rng):
    net = _small_net(rng)
    x, y = _data(rng, 16)
    model = NetworkModel(net)
    single = [model.predict(pgd(model, x, y, 0.03, steps=3, seed=s)) != y for s in range(3)]
    multi = model.predict(pgd(model, x, y, 0.03, steps=3, seed=0, restarts=3)) != y
    # restart r of the multi-restart run is the single run with seed 0, restart r: the union
    # of those successes is at least as large as any one run's
    assert multi.sum() >= single[0].sum()


def test_targeted_pgd_reaches_the_target(rng):
    net = _small_net(rng)
    x, y = _data(rng, 16)
    target = (y + 1) % 5
    adv = pgd(net, x, target, 0.5, steps=20, targeted=True)
    assert np.mean(NetworkModel(net).predict(adv) == target) >= 0.9


# -- reference agreement: PyTorch and torchattacks ---------------------------------------------------
def _references(rng):
    """torch, torchattacks, and a random network in cvcore and in PyTorch (same weights)."""
    torch = pytest.importorskip("torch")
    torchattacks = pytest.importorskip("torchattacks", reason="pip install --no-deps "
                                                              "torchattacks==3.5.1")
    net = _small_net(rng)
    return torch, torchattacks, net, _torch_small_net(torch, net)


def test_fgsm_equals_pytorch_fgsm_and_torchattacks(rng):
    torch, torchattacks, net, tnet = _references(rng)
    x, y = _data(rng, 64)
    for targeted in (False, True):
        ours = fgsm(net, x, y, 0.07, targeted=targeted)
        atk = torchattacks.FGSM(tnet, eps=0.07)
        if targeted:
            atk.set_mode_targeted_by_label(quiet=True)
        ref = atk(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        grad = _torch_grad(torch, tnet, x, y)
        _assert_equal_up_to_sign_ties(ours, ref, grad, f"FGSM targeted={targeted}")


def _torch_pgd_step(torch, tnet, adv, x0, y, eps, alpha):
    g = _torch_grad(torch, tnet, adv, y)
    a = torch.from_numpy(adv) + alpha * torch.from_numpy(g).sign()
    delta = torch.clamp(a - torch.from_numpy(x0), min=-eps, max=eps)
    return torch.clamp(torch.from_numpy(x0) + delta, min=0, max=1).numpy(), g


def test_pgd_equals_pytorch_pgd_step_by_step_and_torchattacks_from_the_same_start(rng):
    torch, torchattacks, net, tnet = _references(rng)
    x, y = _data(rng, 64)
    eps, alpha, steps = 0.1, 0.02, 8
    # torchattacks' random start, replayed: the same torch generator state, the same draw
    torch.manual_seed(7)
    noise = torch.empty_like(torch.from_numpy(x)).uniform_(-eps, eps).numpy()
    torch.manual_seed(7)
    atk = torchattacks.PGD(tnet, eps=eps, alpha=alpha, steps=steps, random_start=True)
    ref = atk(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    iterates = []
    ours = pgd(net, x, y, eps, steps=steps, step_size=alpha, start=noise, batch_size=64,
               callback=lambda k, a: iterates.append(a.copy()))
    # step by step: from each of our iterates, PyTorch's step gives our next iterate
    previous = np.clip(x + noise, 0, 1)
    ties = 0
    for k, current in enumerate(iterates):
        step, grad = _torch_pgd_step(torch, tnet, previous, x, y, eps, alpha)
        ties += _assert_equal_up_to_sign_ties(current, step, grad, f"PGD step {k + 1}")
        previous = current
    # the whole run: identical to torchattacks unless a sign tie occurred on the way
    if ties == 0:
        np.testing.assert_array_equal(ours, ref)
    else:
        assert np.mean(ours != ref) < 1e-2


def test_pgd_l2_equals_torchattacks_from_the_same_start(rng):
    torch, torchattacks, net, tnet = _references(rng)
    x, y = _data(rng, 32)
    eps, alpha, steps = 0.5, 0.1, 6
    torch.manual_seed(3)
    d = torch.empty_like(torch.from_numpy(x)).normal_()
    n = d.view(len(x), -1).norm(p=2, dim=1).view(len(x), 1, 1, 1)
    r = torch.zeros_like(n).uniform_(0, 1)
    start = (d * (r / n * eps)).numpy()
    torch.manual_seed(3)
    ref = torchattacks.PGDL2(tnet, eps=eps, alpha=alpha, steps=steps)(
        torch.from_numpy(x), torch.from_numpy(y)).numpy()
    ours = pgd(net, x, y, eps, norm="l2", steps=steps, step_size=alpha, start=start)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


# -- PyTorch's random start without PyTorch -------------------------------------------------------
#: The first output of the Mersenne Twister MT19937 seeded with 0 (init_genrand(0)): 0x8C7F0AAC.
MT19937_SEED0_FIRST = 2357136044


def test_torch_uniform_start_by_hand_and_serial():
    # first value by hand: the low 24 bits of MT19937's first output, scaled to [-eps, eps)
    lo, hi = float(np.float32(-0.3)), float(np.float32(0.3))
    u = (MT19937_SEED0_FIRST & 0xFFFFFF) / 2 ** 24
    assert torch_uniform_start((1,), 0.3)[0] == np.float32(u * (hi - lo) + lo)
    # one generator filled serially: skipping k outputs shifts the stream by k, and the shape
    # only reshapes it (so the batch size of a batch-after-batch draw does not matter)
    flat = torch_uniform_start((24,), 0.1, seed=5)
    np.testing.assert_array_equal(torch_uniform_start((2, 3, 2, 2), 0.1, seed=5).ravel(), flat)
    np.testing.assert_array_equal(torch_uniform_start((20,), 0.1, seed=5, skip=4), flat[4:])
    assert flat.dtype == np.float32 and np.abs(flat).max() <= np.float32(0.1)
    assert not np.array_equal(torch_uniform_start((24,), 0.1, seed=6), flat)
    assert not torch_uniform_start((0, 3), 0.1).size


def test_torch_uniform_start_equals_torch_and_replays_torchattacks_batch_after_batch(rng):
    torch, torchattacks, net, tnet = _references(rng)
    for seed, skip, eps, shape in [(0, 0, 0.3, (40, 1, 28, 28)), (1, 2, 8 / 255, (3, 3, 8, 8)),
                                   (123, 1001, 0.1, (7,))]:
        torch.manual_seed(seed)
        torch.empty(skip).uniform_()
        ref = torch.empty(shape).uniform_(-eps, eps).numpy()
        np.testing.assert_array_equal(torch_uniform_start(shape, eps, seed, skip), ref)
    # torchattacks' PGD called batch after batch (20, then 20, then 24) after one manual_seed
    # equals cvcore's PGD from one draw for the whole set
    x, y = _data(rng, 64)
    eps, alpha, steps = 0.1, 0.02, 3
    torch.manual_seed(0)
    atk = torchattacks.PGD(tnet, eps=eps, alpha=alpha, steps=steps, random_start=True)
    ref = np.concatenate([atk(torch.from_numpy(x[i:j]), torch.from_numpy(y[i:j])).numpy()
                          for i, j in [(0, 20), (20, 40), (40, 64)]])
    ours = pgd(net, x, y, eps, steps=steps, step_size=alpha,
               start=torch_uniform_start(x.shape, eps, seed=0))
    assert np.mean(ours != ref) < 1e-2         # identical but for float32 sign ties
    assert np.mean(ours == ref) > 0.99


@pytest.mark.parametrize("kwargs, err, text", [
    (dict(eps=-1.0), ValueError, ">= 0"), (dict(eps=float("nan")), ValueError, "NaN"),
    (dict(seed=2 ** 32), ValueError, "below 2\\*\\*32"), (dict(seed=-1), ValueError, "seed"),
    (dict(skip=-2), ValueError, "skip"), (dict(shape=(2, -1)), ValueError, "shape"),
])
def test_torch_uniform_start_refuses_bad_arguments(kwargs, err, text):
    args = dict(shape=(2, 3), eps=0.1) | kwargs
    with pytest.raises(err, match=text):
        torch_uniform_start(args.pop("shape"), args.pop("eps"), **args)


# -- bad arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("eps, err, text", [
    (-0.1, ValueError, ">= 0"), (float("nan"), ValueError, "NaN"),
    (float("inf"), ValueError, "finite"), ("0.1", TypeError, "number"), (True, TypeError, "number"),
])
def test_bad_eps_is_refused(rng, eps, err, text):
    net = _small_net(rng)
    x, y = _data(rng, 2)
    with pytest.raises(err, match=text):
        fgsm(net, x, y, eps)
    with pytest.raises(err, match=text):
        pgd(net, x, y, eps)


def test_bad_images_labels_and_models_are_refused(rng):
    net = _small_net(rng)
    x, y = _data(rng, 2)
    with pytest.raises(ValueError, match="outside the valid range"):
        fgsm(net, x * 255, y, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        fgsm(net, np.full_like(x, np.nan), y, 0.1)
    with pytest.raises(ValueError, match="2 images but y has 3"):
        pgd(net, x, np.array([0, 1, 2]), 0.1)
    with pytest.raises(ValueError, match="class 7"):
        NetworkModel(net, num_classes=5) and fgsm(NetworkModel(net, num_classes=5), x,
                                                  np.array([0, 7]), 0.1)
    with pytest.raises(TypeError, match="no backward pass"):
        NetworkModel(_NoBackward())
    with pytest.raises(TypeError, match="lacks logits, loss_gradient"):
        fgsm(object(), x, y, 0.1)
    with pytest.raises(ValueError, match="norm"):
        pgd(net, x, y, 0.1, norm="l1")
    with pytest.raises(ValueError, match="steps"):
        pgd(net, x, y, 0.1, steps=0)


class _NoBackward(nn.Module):
    def forward(self, x):
        return x.reshape(len(x), -1)


# -- gradient-masking sanity checks (Carlini et al. 2019) --------------------------------------------
def test_accuracy_falls_with_eps_and_steps_reaches_zero_and_white_box_beats_transfer(rng):
    net = _small_net(rng)
    other = _small_net(np.random.default_rng(99))
    x, y = _data(rng, 48)
    model = NetworkModel(net)
    curve = robust_accuracy(model, x, y, [0.0, 0.02, 0.05, 0.1, 1.0], attack="pgd", steps=10)
    acc = curve["robust_accuracy"]
    assert acc[0] == curve["accuracy"]
    assert all(a >= b for a, b in zip(acc, acc[1:]))
    assert acc[-1] == 0.0
    by_steps = [robust_accuracy(model, x, y, [0.03], steps=s, random_start=False)
                ["robust_accuracy"][0] for s in (1, 5, 20)]
    assert by_steps[0] >= by_steps[1] >= by_steps[2]
    white = robust_accuracy(model, x, y, [0.05], steps=10)["robust_accuracy"][0]
    transfer = transfer_accuracy(other, model, x, y, 0.05, steps=10)
    assert white <= transfer
