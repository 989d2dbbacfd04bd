"""Grad-CAM of any residual network (:func:`cvcore.serve.explain.grad_cam_network`), without a
model file: the gallery's ResNet example uses it on a small network it trains itself."""
import numpy as np
import pytest

from cvcore import nn
from cvcore.preprocess import resize
from cvcore.serve.explain import grad_cam_network


def small_resnet(seed=0):
    return nn.ResNet(nn.BasicBlock, [1, 1], num_classes=4, in_channels=1, stem="cifar",
                     widths=(4, 8), rng=seed)


def test_grad_cam_network_is_the_class_activation_map():
    # With a global average pool and a linear head, d y_c / d A_k(i,j) = W[c, k] / (h w), so
    # Grad-CAM is relu(sum_k W[c, k] A_k) / (h w) (CAM, Zhou et al. 2016), upsampled.
    net = small_resnet()
    x = np.random.default_rng(1).standard_normal((1, 1, 12, 16)).astype(np.float32)
    with nn.no_grad():
        A = net.eval().features(x)[0]                         # (8, 6, 8): one stride-2 stage
    net.train()
    for c in range(4):
        heat = grad_cam_network(net, x, c)
        cam = np.maximum(np.tensordot(net.fc.weight.data[c], A, axes=1) / A[0].size, 0)
        expected = np.maximum(resize(cam.astype(np.float32), (12, 16)), 0)
        assert heat.shape == (12, 16) and heat.dtype == np.float32
        np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-7)
    assert net.training, "the network is left in the mode it was in"


def test_grad_cam_network_rejects_bad_input():
    net = small_resnet()
    with pytest.raises(ValueError, match="one input"):
        grad_cam_network(net, np.zeros((2, 1, 8, 8), np.float32), 0)
    with pytest.raises(ValueError, match="class index 4"):
        grad_cam_network(net, np.zeros((1, 1, 8, 8), np.float32), 4)
