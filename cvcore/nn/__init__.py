"""Neural networks from scratch: layers as forward/backward pairs, residual blocks, ResNets,
losses, optimisers, learning-rate schedules and a float64 gradient check.

The module contract (:mod:`cvcore.nn.module`)::

    model = nn.resnet20(num_classes=10)
    criterion = nn.CrossEntropyLoss()
    optimizer = nn.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    logits = model(x)                        # x: (N, C, H, W) float32
    loss = criterion(logits, y)
    model.backward(criterion.backward())     # fills p.grad of every parameter
    optimizer.step()
"""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "module": ["Module", "Parameter", "no_grad", "is_grad_enabled", "takes_input_grad"],
        "conv": ["Conv2d", "conv2d_forward", "conv2d_backward"],
        "layers": ["ReLU", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear",
                   "Dropout", "Flatten", "Identity", "Sequential",
                   "relu_forward", "relu_backward",
                   "batchnorm2d_train_forward", "batchnorm2d_train_backward",
                   "batchnorm2d_eval_forward", "batchnorm2d_eval_backward",
                   "maxpool2d_forward", "maxpool2d_backward",
                   "avgpool2d_forward", "avgpool2d_backward",
                   "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward",
                   "linear_forward", "linear_backward", "dropout_forward", "dropout_backward",
                   "flatten_forward", "flatten_backward"],
        "losses": ["CrossEntropyLoss", "cross_entropy_forward", "cross_entropy_backward"],
        "blocks": ["BasicBlock", "Bottleneck"],
        "dwconv": ["ReLU6", "grouped_conv2d_forward", "grouped_conv2d_backward", "same_padding",
                   "relu6_forward", "relu6_backward"],
        "efficientnet": ["Conv2dSame", "MBConvBlock", "EfficientNet", "efficientnet_lite0"],
        "models": ["ResNet", "resnet20", "resnet32", "resnet56", "resnet18", "resnet50"],
        "gradcheck": ["gradcheck", "GradcheckResult", "GradcheckError"],
        "optim": ["Optimizer", "SGD", "Adam", "AdamW"],
        "schedules": ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
                      "ChainedScheduler"],
    },
)

# ``gradcheck`` is both a submodule and its main function. Importing the submodule binds the
# package attribute ``gradcheck`` to the module, so bind the function explicitly (the module
# imports only NumPy and the Module contract: no Numba, nothing slow).
from cvcore.nn.gradcheck import GradcheckError, GradcheckResult, gradcheck  # noqa: E402
