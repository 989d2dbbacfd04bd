"""Grad-CAM of an EfficientNet-Lite0 model (regression: ``cvcore serve`` warms every model up by
explaining an image, and Lite0 had no ``features`` and names its head ``_avg_pooling`` / ``_fc``,
so a Lite0 model never became ready; found by the documentation's tutorial)."""
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="cvcore serve needs the serve extra (fastapi)")

from cvcore.serve.explain import explain, grad_cam  # noqa: E402
from cvcore.train.pipeline import TrainedModel  # noqa: E402


def test_grad_cam_of_efficientnet_lite0_equals_the_class_activation_map():
    # global average pool + linear head: d y_c / d A_k(i,j) = W[c, k] / (h w), so Grad-CAM is
    # relu(sum_k W[c, k] A_k) / (h w) (CAM, Zhou et al. 2016), upsampled to the input
    from cvcore import nn
    from cvcore.preprocess import resize
    net = nn.efficientnet_lite0(num_classes=2, rng=1)
    model = TrainedModel("efficientnet-lite0", ["ants", "bees"], (64, 64), "rgb", {},
                         {"mean": np.array([0.485, 0.456, 0.406], np.float32),
                          "std": np.array([0.229, 0.224, 0.225], np.float32),
                          "state_dict": dict(net.state_dict())})
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    network = model._network()
    with nn.no_grad():
        A = network.features(model.network_input(image[None]))[0]
    assert A.shape == (1280, 2, 2)
    heats = []
    for c in (0, 1):
        heat = grad_cam(model, image, c)
        cam = np.maximum(np.tensordot(network._fc.weight.data[c], A, axes=1) / A[0].size, 0)
        expected = np.maximum(resize(cam.astype(np.float32), (64, 64), interpolation="bilinear"),
                              0)
        assert heat.shape == (64, 64)
        np.testing.assert_allclose(heat, expected, rtol=1e-4, atol=1e-6)
        heats.append(heat)
    assert max(h.max() for h in heats) > 0           # not two empty maps
    assert explain(model, image)["method"] == "grad-cam"
