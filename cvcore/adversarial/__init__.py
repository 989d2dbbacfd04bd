"""Adversarial examples: FGSM and PGD attacks, robustness measurements, published robust networks.

Every attack works on any model through one small interface (:class:`AttackModel`): logits of a
batch of images in the valid pixel range, and the gradient of the per-sample cross-entropy with
respect to the input. :class:`NetworkModel` wraps a :mod:`cvcore.nn` network (with its input
normalisation), :class:`HOGLinearModel` a HOG + linear classifier (through the HOG backward of
:func:`cvcore.features.hog_backward`)::

    from cvcore import adversarial as adv
    model = adv.NetworkModel(net)                      # net: a cvcore.nn.Module, inputs in [0, 1]
    x_adv = adv.pgd(model, x, y, eps=0.1, steps=20)    # L-inf PGD, random start, seeded
    report = adv.robust_accuracy(model, x, y, [0.05, 0.1], attack="pgd")
"""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "models": ["AttackModel", "NetworkModel", "HOGLinearModel", "check_attack_model"],
        "attacks": ["fgsm", "pgd", "robust_accuracy", "transfer_accuracy", "NORMS",
                    "torch_uniform_start"],
        "zoo": ["trades_smallcnn", "wong_kolter_net", "load_published", "PUBLISHED"],
    },
)
