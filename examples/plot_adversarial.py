"""
Adversarial examples: FGSM, PGD and a robustness curve
======================================================

A change to an image too small for a person to notice can make a trained network see another
class (Szegedy et al. 2014). This script trains a small convolutional network on the embedded
Fashion-MNIST subset, attacks it with the fast gradient sign method and with projected gradient
descent (:func:`cvcore.adversarial.fgsm`, :func:`cvcore.adversarial.pgd`), shows the
perturbations, and draws its accuracy as the attacker's budget grows.
"""
import matplotlib.pyplot as plt
import numpy as np

from cvcore import adversarial as adv
from cvcore import nn
from cvcore.io import load_embedded, to_nchw
from cvcore.train.loop import TrainConfig, Trainer

# %%
# The model
# ---------
# Two convolution + ReLU + 2 x 2 max-pool stages and a linear layer, trained for three epochs
# on 2000 images with pixels in [0, 1] (no normalisation, so that the attack budget is in
# pixel units). :class:`cvcore.adversarial.NetworkModel` wraps any :mod:`cvcore.nn` module
# with a backward pass: an attack needs only the logits and the gradient of the loss with
# respect to the input, which cvcore's own backward pass gives.
data = load_embedded()
x_train, y_train = to_nchw(data.x_train[:2000]), data.y_train[:2000]
x_test, y_test = to_nchw(data.x_test[:200]), data.y_test[:200]
rng = np.random.default_rng(0)
net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(16, 32, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(32 * 7 * 7, 10, rng=rng))
Trainer(net, TrainConfig(epochs=3, batch_size=128, lr=0.1, seed=0),
        progress=False).fit(x_train, y_train)
model = adv.NetworkModel(net)
print(f"clean test accuracy {np.mean(model.predict(x_test) == y_test):.3f}")

# %%
# FGSM and PGD
# ------------
# FGSM (Goodfellow et al. 2015) takes one step of size ``eps`` in the direction that increases
# the loss fastest under an L-infinity budget: ``x' = clip(x + eps sign(grad_x L(x, y)))``.
# PGD (Madry et al. 2018) takes several smaller steps from a random start in the ``eps``-ball,
# projecting back onto the ball after each, and finds stronger examples: it is the standard
# test of robustness. ``eps = 0.1`` allows each pixel to change by a tenth of the grey range.
eps = 0.1
x_fgsm = adv.fgsm(model, x_test, y_test, eps)
x_pgd = adv.pgd(model, x_test, y_test, eps, steps=10, seed=0)
clean, p_fgsm, p_pgd = (model.predict(x) for x in (x_test, x_fgsm, x_pgd))
print(f"eps {eps}: accuracy clean {np.mean(clean == y_test):.3f}, "
      f"FGSM {np.mean(p_fgsm == y_test):.3f}, PGD {np.mean(p_pgd == y_test):.3f}; "
      f"largest pixel change {np.abs(x_pgd - x_test).max():.3f}")

fooled = np.flatnonzero((clean == y_test) & (p_pgd != y_test))[:6]
fig, axes = plt.subplots(3, len(fooled), figsize=(1.9 * len(fooled), 6.2), squeeze=False)
names = data.class_names
for c, i in enumerate(fooled):
    axes[0, c].imshow(x_test[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, c].set_title(f"clean: {names[clean[i]]}", fontsize=8)
    axes[1, c].imshow(x_pgd[i, 0] - x_test[i, 0], cmap="coolwarm", vmin=-eps, vmax=eps)
    axes[1, c].set_title("perturbation (PGD)", fontsize=8)
    axes[2, c].imshow(x_pgd[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[2, c].set_title(f"adversarial: {names[p_pgd[i]]}", fontsize=8)
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle(f"PGD, eps = {eps} (L-inf, 10 steps): each pixel moves by at most {eps}",
             fontsize=9)
fig.tight_layout()

# %%
# The robustness curve
# --------------------
# Accuracy under attack as the budget grows (:func:`cvcore.adversarial.robust_accuracy`); PGD's
# curve lies below FGSM's, and a network trained without adversarial examples falls to near zero
# at budgets a person would barely see. ``cvcore train --adversarial pgd`` trains on PGD
# examples instead (Madry et al. 2018), which lifts this curve at the cost of clean accuracy.
budgets = [0.0, 0.02, 0.05, 0.1, 0.15]
curves = {attack: adv.robust_accuracy(model, x_test, y_test, budgets, attack=attack,
                                      **({"steps": 10} if attack == "pgd" else {}))
          for attack in ("fgsm", "pgd")}
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for attack, result in curves.items():
    ax.plot(budgets, result["robust_accuracy"], "o-", label=attack.upper())
    print(f"{attack}: " + ", ".join(f"eps {e}: {a:.3f}" for e, a in
                                    zip(budgets, result["robust_accuracy"])))
ax.set_xlabel("eps (L-inf budget, pixels in [0, 1])")
ax.set_ylabel("accuracy under attack")
ax.set_ylim(0, 1)
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %%
# cvcore and torchattacks, same input
# -----------------------------------
# With PyTorch and ``torchattacks`` installed, the same weights in a PyTorch network (the
# parameter names are the same) and torchattacks' FGSM: the accuracy under attack should agree
# (FGSM has no randomness; pixels whose gradient is exactly zero may move differently).
try:
    import torch
    import torchattacks
except ImportError:
    print("PyTorch or torchattacks is not installed: cvcore alone")
else:
    tnet = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 32, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(32 * 7 * 7, 10))
    tnet.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                          net.state_dict().items()})
    tnet.eval()
    x_ta = torchattacks.FGSM(tnet, eps=eps)(torch.from_numpy(x_test),
                                           torch.from_numpy(y_test.astype(np.int64))).numpy()
    acc_ta = float(np.mean(model.predict(x_ta) == y_test))
    acc_mine = float(np.mean(p_fgsm == y_test))
    print(f"FGSM accuracy: cvcore {acc_mine:.3f}, torchattacks {acc_ta:.3f}; "
          f"max |cvcore - torchattacks| = {abs(acc_mine - acc_ta):.2e}")

plt.show()
