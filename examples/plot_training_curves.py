"""
Training curves and the confusion matrix
========================================

How do you know a network is learning, and what it still gets wrong? This script trains a small
residual network on the embedded Fashion-MNIST subset with :class:`cvcore.train.loop.Trainer`
(SGD with Nesterov momentum and a one-cycle learning rate), plots the loss and accuracy per epoch
on the training and the held-out images, and draws the confusion matrix of the test predictions,
computed with :func:`cvcore.train.confusion_matrix` and checked against scikit-learn's.
"""
import matplotlib.pyplot as plt
import numpy as np

from cvcore import nn
from cvcore.io import load_embedded, to_nchw
from cvcore.train import confusion_matrix, evaluate
from cvcore.train.loop import TrainConfig, Trainer, predict_batches

# %%
# The run
# -------
# Each epoch visits the 1500 training images once in a seeded random order, in batches of 128:
# forward, cross-entropy loss, backward, one SGD step. The learning rate follows the one-cycle
# policy (Smith & Topin 2019): a warm-up to ``lr`` for 30 % of the steps, then a cosine decay
# to almost zero. After each epoch the trainer evaluates the held-out images (here 500 test
# images; ``cvcore train`` holds out part of the training set instead) and logs
# ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` -- the rows ``metrics.jsonl`` holds.
data = load_embedded()
x_train, y_train = to_nchw(data.x_train[:1500]), data.y_train[:1500]
x_test, y_test = to_nchw(data.x_test[:500]), data.y_test[:500]
mean, std = float(x_train.mean()), float(x_train.std())
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
net = nn.ResNet(nn.BasicBlock, [1, 1, 1], num_classes=10, in_channels=1, stem="cifar",
                widths=(8, 16, 32), rng=0)
history = Trainer(net, TrainConfig(epochs=5, batch_size=128, lr=0.2, seed=0),
                  progress=False).fit(x_train, y_train, x_test, y_test)
for row in history:
    print(f"epoch {row['epoch']}: lr {row['lr']:.4f}  train loss {row['train_loss']:.3f} "
          f"acc {row['train_acc']:.3f}  held-out loss {row['val_loss']:.3f} "
          f"acc {row['val_acc']:.3f}")

# %%
# Reading the curves: both losses falling means the network is still learning; a training loss
# that keeps falling while the held-out loss rises means it has started to memorise the
# training images (over-fitting), and more data, augmentation or weight decay are the remedies.
epochs = [r["epoch"] for r in history]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
for ax, metric, label in [(axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")]:
    ax.plot(epochs, [r[f"train_{metric}"] for r in history], "o-", label="training images")
    ax.plot(epochs, [r[f"val_{metric}"] for r in history], "o-", label="held-out images")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("a small ResNet on 1500 Fashion-MNIST images")
fig.tight_layout()

# %%
# The confusion matrix
# --------------------
# Entry ``(i, j)`` counts the test images of true class ``i`` predicted as class ``j``; the
# diagonal holds the correct ones. Normalising each row gives the recall of each class and
# shows which classes the network confuses: on Fashion-MNIST, shirts, T-shirts, pullovers and
# coats (all upper-body garments of similar outline). :func:`cvcore.train.evaluate` gives the
# per-class precision, recall and F1 computed from it.
logits = predict_batches(net, x_test)
pred = logits.argmax(axis=1)
cm = confusion_matrix(y_test, pred, n_classes=10)
metrics = evaluate(y_test, logits, class_names=data.class_names)
print(f"test accuracy {metrics['accuracy']:.3f}; worst recall: "
      f"{data.class_names[int(np.argmin(np.diag(cm) / cm.sum(axis=1)))]}")
rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
fig, ax = plt.subplots(figsize=(6.5, 6))
ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
for i in range(10):
    for j in range(10):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black")
ax.set_xticks(range(10), data.class_names, rotation=60, ha="right", fontsize=8)
ax.set_yticks(range(10), data.class_names, fontsize=8)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title("confusion matrix (counts; colour: share of the row)")
fig.tight_layout()

# %%
# cvcore and scikit-learn, same input
# -----------------------------------
try:
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix
except ImportError:
    print("scikit-learn is not installed: cvcore alone")
else:
    theirs = sk_confusion_matrix(y_test, pred, labels=range(10))
    print(f"confusion matrix: max |cvcore - scikit-learn| = {np.abs(cm - theirs).max():.2e}")

plt.show()
