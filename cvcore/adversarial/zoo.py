"""Published adversarially robust networks, rebuilt with cvcore's layers.

The weights are the authors' ``torch.save`` files (PyTorch's legacy format, saved from CUDA
tensors), read without torch by :func:`cvcore.io.load_torch`; inputs are 28x28 grey images in
``[0, 1]`` with no normalisation.

``trades_smallcnn``
    TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
    accuracy"), MNIST "SmallCNN" (repository yaodongyu/TRADES, ``models/small_cnn.py``):
    conv 1->32 3x3, ReLU, conv 32->32 3x3, ReLU, max-pool 2, conv 32->64 3x3, ReLU,
    conv 64->64 3x3, ReLU, max-pool 2; fc 1024->200, ReLU, dropout 0.5, fc 200->200, ReLU,
    fc 200->10. Parameter names ``feature_extractor.conv1.weight``, ``classifier.fc1.weight``...
``wong_kolter_net``
    Wong & Kolter 2018 ("Provable defenses against adversarial examples via the convex outer
    adversarial polytope"), the MNIST / Fashion-MNIST network of repository
    locuslab/convex_adversarial (``examples/problems.py``, ``mnist_model``): conv 1->16 4x4
    stride 2 pad 1, ReLU, conv 16->32 4x4 stride 2 pad 1, ReLU, flatten, linear 1568->100, ReLU,
    linear 100->10 (a ``Sequential``: keys ``0.weight``, ``2.weight``, ``5.weight``,
    ``7.weight``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["trades_smallcnn", "wong_kolter_net", "load_published", "PUBLISHED"]

#: file name -> (builder name, data set, eps the model was trained for)
PUBLISHED = {
    "trades_model_mnist_smallcnn.pt": ("trades_smallcnn", "mnist", 0.3),
    "wongkolter_mnist.pth": ("wong_kolter_net", "mnist", 0.1),
    "wongkolter_fashion_mnist.pth": ("wong_kolter_net", "fashion-mnist", 0.1),
}
#: TRADES SmallCNN's dropout probability (models/small_cnn.py, ``drop=0.5``).
TRADES_DROPOUT = 0.5


def trades_smallcnn(num_classes: int = 10, rng=None):
    """TRADES' MNIST SmallCNN (see the module notes) with TRADES' parameter names."""
    from cvcore import nn
    rng = np.random.default_rng(0) if rng is None else rng
    features = nn.Sequential()
    features.conv1 = nn.Conv2d(1, 32, 3, rng=rng)
    features.relu1 = nn.ReLU()
    features.conv2 = nn.Conv2d(32, 32, 3, rng=rng)
    features.relu2 = nn.ReLU()
    features.maxpool1 = nn.MaxPool2d(2, 2)
    features.conv3 = nn.Conv2d(32, 64, 3, rng=rng)
    features.relu3 = nn.ReLU()
    features.conv4 = nn.Conv2d(64, 64, 3, rng=rng)
    features.relu4 = nn.ReLU()
    features.maxpool2 = nn.MaxPool2d(2, 2)
    classifier = nn.Sequential()
    classifier.flatten = nn.Flatten()
    classifier.fc1 = nn.Linear(64 * 4 * 4, 200, rng=rng)
    classifier.relu1 = nn.ReLU()
    classifier.drop = nn.Dropout(TRADES_DROPOUT)
    classifier.fc2 = nn.Linear(200, 200, rng=rng)
    classifier.relu2 = nn.ReLU()
    classifier.fc3 = nn.Linear(200, num_classes, rng=rng)
    net = nn.Sequential()
    net.feature_extractor = features
    net.classifier = classifier
    return net


def wong_kolter_net(num_classes: int = 10, rng=None):
    """Wong & Kolter's MNIST / Fashion-MNIST network (see the module notes)."""
    from cvcore import nn
    rng = np.random.default_rng(0) if rng is None else rng
    return nn.Sequential(
        nn.Conv2d(1, 16, 4, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 100, rng=rng), nn.ReLU(),
        nn.Linear(100, num_classes, rng=rng))


def load_published(path):
    """Build the network a published file holds (chosen by its file name, see
    :data:`PUBLISHED`), load its weights without torch, and put it in eval mode.

    Returns
    -------
    net : cvcore.nn.Module
    info : dict with ``data`` (the data set name) and ``eps`` (the training budget)
    """
    from cvcore.io.weights import load_torch
    path = Path(path)
    if path.name not in PUBLISHED:
        raise ValueError(f"{path.name} is not one of the published models cvcore knows: "
                         f"{', '.join(PUBLISHED)}")
    builder, data, eps = PUBLISHED[path.name]
    net = globals()[builder]()
    net.load_state_dict(load_torch(path))
    net.eval()
    return net, {"data": data, "eps": eps, "builder": builder}
