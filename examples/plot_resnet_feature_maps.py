"""
Inside a ResNet: feature maps and Grad-CAM
==========================================

A convolutional network turns an image into stacks of *feature maps*: each channel of a layer is
the response of one learned filter, and deeper layers respond to larger, more abstract patterns
on coarser grids. This script trains a small residual network (He et al. 2016) on the embedded
Fashion-MNIST subset for a few seconds with cvcore's own forward and backward passes, draws what
its layers see, and asks it *where* it looked with Grad-CAM (Selvaraju et al. 2017).
"""
import time

import matplotlib.pyplot as plt
import numpy as np

from cvcore import nn
from cvcore.io import load_embedded, to_nchw
from cvcore.serve.explain import grad_cam_network
from cvcore.train.loop import TrainConfig, Trainer

# %%
# A small ResNet, trained in seconds
# ----------------------------------
# :class:`cvcore.nn.ResNet` builds the CIFAR-style network of He et al. (2016, sec. 4.2): a 3 x 3
# convolution, then stages of residual blocks ``y = relu(x + F(x))`` (``F``: conv, batch norm,
# ReLU, conv, batch norm), each stage halving the grid and doubling the channels, then a global
# average pool and a linear classifier. ResNet-20 has 3 blocks of 16/32/64 channels per stage;
# this one has 1 block of 8/16/32, so that it trains on 1500 images in a few seconds. Inputs are
# standardised with the training set's mean and standard deviation.
data = load_embedded()
x_train, y_train = to_nchw(data.x_train[:1500]), data.y_train[:1500]
x_test, y_test = to_nchw(data.x_test[:300]), data.y_test[:300]
mean, std = float(x_train.mean()), float(x_train.std())
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

net = nn.ResNet(nn.BasicBlock, [1, 1, 1], num_classes=10, in_channels=1, stem="cifar",
                widths=(8, 16, 32), rng=0)
t0 = time.perf_counter()
history = Trainer(net, TrainConfig(epochs=4, batch_size=128, lr=0.2, seed=0),
                  progress=False).fit(x_train, y_train, x_test, y_test)
print(f"{sum(p.data.size for p in net.parameters())} parameters, trained in "
      f"{time.perf_counter() - t0:.1f} s: test accuracy {history[-1]['val_acc']:.3f}")

# %%
# Feature maps
# ------------
# The forward pass of each child module, in evaluation mode (batch norm uses its running
# statistics) and under :func:`cvcore.nn.no_grad` (no layer keeps what a backward pass would
# need). The stem's filters respond to edges and bright regions at full resolution; each later
# stage works on a grid half as fine (28, 14, 7) and its channels respond to parts of the
# garment rather than to edges.
net.eval()
image = x_test[:1]
with nn.no_grad():
    stem = net.relu(net.bn1(net.conv1(image)))
    stages = [("stem (conv1, bn1, relu)", stem)]
    out = stem
    for name in ("layer1", "layer2", "layer3"):
        out = getattr(net, name)(out)
        stages.append((name, out))
fig, axes = plt.subplots(len(stages), 9, figsize=(11, 1.35 * len(stages) + 0.4))
for r, (name, maps) in enumerate(stages):
    axes[r, 0].imshow(data.x_test[0], cmap="gray")
    axes[r, 0].set_ylabel(f"{name}\n{maps.shape[1]} x {maps.shape[2]} x {maps.shape[3]}",
                          rotation=0, ha="right", va="center", fontsize=8)
    for c in range(8):
        axes[r, c + 1].imshow(maps[0, c], cmap="viridis")
    for ax in axes[r]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle(f"the first 8 channels of each stage for a test image "
             f"({data.class_names[y_test[0]]})", fontsize=9)
fig.tight_layout()

# %%
# Grad-CAM: where the evidence for a class lies
# ---------------------------------------------
# With ``A^k`` the maps of the last stage and ``y^c`` the score of class ``c``, Grad-CAM weighs
# each map by its average gradient, ``alpha_k = mean_ij dy^c / dA^k_ij`` (eq. 1), and keeps the
# positive part of the weighted sum, ``L^c = relu(sum_k alpha_k A^k)`` (eq. 2), a 7 x 7 map
# upsampled to the image. The gradient comes from cvcore's own backward pass through the head
# (:func:`cvcore.serve.explain.grad_cam_network`; ``cvcore serve`` draws the same map on its
# page). With a global average pool and one linear layer this is exactly the class activation
# map of Zhou et al. (2016).
with nn.no_grad():
    proba = np.exp(net(x_test[:8]))
proba /= proba.sum(axis=1, keepdims=True)
fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
for i in range(8):
    pred = int(np.argmax(proba[i]))
    heat = grad_cam_network(net, x_test[i:i + 1], pred)
    axes[0, i].imshow(data.x_test[i], cmap="gray")
    axes[0, i].set_title(f"true: {data.class_names[y_test[i]]}", fontsize=7)
    axes[1, i].imshow(data.x_test[i], cmap="gray")
    axes[1, i].imshow(heat, cmap="jet", alpha=0.45)
    axes[1, i].set_title(f"{data.class_names[pred]} {proba[i, pred]:.2f}", fontsize=7)
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle("Grad-CAM for the predicted class (bottom: prediction and its probability)",
             fontsize=9)
fig.tight_layout()

# %%
# cvcore and PyTorch, same input
# ------------------------------
# The layers are tested against PyTorch's; here the first convolution and the whole network's
# logits, recomputed with ``torch.nn.functional`` from cvcore's weights (its parameter names are
# torchvision's).
try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("PyTorch is not installed: cvcore alone")
else:
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()}

    def bn(t, prefix):
        return F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0, 1e-5)

    def torch_forward(t):
        t = F.relu(bn(F.conv2d(t, state["conv1.weight"], padding=1), "bn1"))
        for s in (1, 2, 3):
            p, stride = f"layer{s}.0", 1 if s == 1 else 2
            out = F.relu(bn(F.conv2d(t, state[f"{p}.conv1.weight"], stride=stride, padding=1),
                            f"{p}.bn1"))
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                t = bn(F.conv2d(t, state[f"{p}.downsample.0.weight"], stride=stride),
                       f"{p}.downsample.1")
            t = F.relu(out + t)
        return F.linear(t.mean(dim=(2, 3)), state["fc.weight"], state["fc.bias"])

    with torch.no_grad(), nn.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(x_test[:8]))
        conv1_torch = F.conv2d(x, state["conv1.weight"], padding=1).numpy()
        logits_torch = torch_forward(x).numpy()
        conv1_mine, logits_mine = net.conv1(x_test[:8]), net(x_test[:8])
    print(f"conv1 maps: max |cvcore - PyTorch| = {np.abs(conv1_mine - conv1_torch).max():.2e}")
    print(f"logits:     max |cvcore - PyTorch| = {np.abs(logits_mine - logits_torch).max():.2e}")

plt.show()
