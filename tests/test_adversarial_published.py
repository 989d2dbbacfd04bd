"""The published robust networks (../shared/models) rebuilt with cvcore's layers: logits equal
to PyTorch's on the same weights, attack accuracies equal to the same attacks in PyTorch on a few
hundred test images, and (slow) the README's full-test-set figures within 0.1 point."""
import numpy as np
import pytest

from cvcore.adversarial import NetworkModel, fgsm, load_published, pgd
from cvcore.io.datasets import load_mnist
from benchmarks.robust_models import SETTINGS
from tests.conftest import dataset_path, shared_model_path

README = SETTINGS   # name -> (file, data set, eps, steps, step, random start, README %)


def _setup(name, n):
    file, data, *_ = README[name]
    net, info = load_published(shared_model_path(file))
    x, y = load_mnist(dataset_path(data), "test")
    return net, info, (x[:n, None].astype(np.float32) / 255), y[:n].astype(np.int64)


@pytest.mark.parametrize("name", ["trades", "wk-fashion"])
def test_published_network_matches_pytorch_logits_fgsm_and_pgd_on_a_subset(name):
    torch = pytest.importorskip("torch")
    from benchmarks.robust_models import torch_attacks, torch_net
    _, _, eps, _, alpha, _, _ = README[name]
    net, info, x, y = _setup(name, 100 if name == "trades" else 200)
    tnet = torch_net(torch, info["builder"], net.state_dict())
    model = NetworkModel(net)
    with torch.no_grad():
        ref_logits = tnet(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.logits(x), ref_logits, rtol=1e-4, atol=1e-4)
    steps = 10                                  # the full step counts run in the slow test
    alpha = 2.5 * eps / steps
    ref = torch_attacks(torch, tnet, x, y, eps, steps, alpha, None)
    ours = 100 * np.array([np.mean(model.predict(x) == y),
                           np.mean(model.predict(fgsm(model, x, y, eps)) == y),
                           np.mean(model.predict(pgd(model, x, y, eps, steps=steps,
                                                     step_size=alpha,
                                                     random_start=False)) == y)])
    np.testing.assert_allclose(ours, ref, atol=100 / len(x) + 1e-9)   # at most one image
    assert ours[0] > 90 if name == "trades" else ours[0] > 70
    assert ours[1] < ours[0]


def test_published_network_refuses_unknown_files(tmp_path):
    with pytest.raises(ValueError, match="not one of the published models"):
        load_published(tmp_path / "other.pth")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(README))
def test_published_network_reproduces_the_readme_on_the_full_test_set(name):
    """Minutes per network: ``python -m pytest -m slow tests/test_adversarial_published.py``
    (on a busy machine with ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1``).

    TRADES' PGD starts from the README's own noise: ``torch.manual_seed(0)`` and torchattacks'
    uniform draw over the test set in order, replayed without torch by
    ``torch_uniform_start`` (``benchmarks.robust_models.random_start``)."""
    from benchmarks.robust_models import random_start
    _, _, eps, steps, alpha, random, readme = README[name]
    net, info, x, y = _setup(name, 10000)
    model = NetworkModel(net)
    start = random_start(x, eps, "torch") if random else None
    acc = 100 * np.array([
        np.mean(model.predict(x) == y),
        np.mean(model.predict(fgsm(model, x, y, eps, batch_size=500)) == y),
        np.mean(model.predict(pgd(model, x, y, eps, steps=steps, step_size=alpha,
                                  random_start=False, start=start, batch_size=500)) == y)])
    np.testing.assert_allclose(acc, readme, atol=0.1)
    if not random:
        return
    try:
        import torch
    except ImportError:
        return
    from benchmarks.robust_models import torch_attacks, torch_net
    ref = torch_attacks(torch, torch_net(torch, info["builder"], net.state_dict()), x, y, eps,
                        steps, alpha, start)
    np.testing.assert_allclose(acc, ref, atol=0.02)     # the same noise: at most 2 images
