"""Why a model chose a class: a map over the input image, one value per pixel.

``resnet*`` (Grad-CAM, Selvaraju et al. 2017, sec. 3)
    With ``A^k`` the ``k``-th activation map of the network's last stage (the input of the global
    average pool, :meth:`cvcore.nn.ResNet.features`) and ``y^c`` the score (logit) of class ``c``,

    .. math:: \\alpha_k^c = \\frac{1}{Z} \\sum_{i,j} \\frac{\\partial y^c}{\\partial A^k_{ij}},
              \\qquad L^c = \\mathrm{ReLU}\\Big(\\sum_k \\alpha_k^c A^k\\Big)   (eq. 1, 2)

    The gradient comes from cvcore's own backward pass through the head (``fc`` then
    ``avgpool``); ``L^c`` (h x w, 8 x 8 for a 32 x 32 input) is upsampled bilinearly to the
    input size. Positive values only: where the evidence *for* the class lies.
``hog-svm``, ``hog-linear`` (per-cell contributions)
    The linear score is ``s_c = w_c . z + b_c`` with ``z`` the standardised HOG vector. Each
    dimension ``d`` contributes ``w_{c,d} z_d``; a dimension belongs to one cell of one block
    (layout ``(block_row, block_col, cell_row, cell_col, bin)``), so summing over bins and over
    every block a cell appears in gives the cell's contribution. Each cell spreads its sum evenly
    over its pixels, and the maps of the HOG levels (cell sizes) add up, so the whole map sums to
    ``s_c - b_c`` exactly. Signed: red supports the class, blue speaks against it.
``hog-knn``
    k-NN has no weights. The map is the negated squared distance between the image's
    standardised HOG vector and its nearest training example of class ``c``, split per cell the
    same way (it sums to ``-||z - x_nearest||^2``): the least negative cells are where the image
    looks most like its closest example of that class.

Every function runs the model itself, so it belongs on the serving worker thread, never on the
event loop; :func:`explain` is the entry point.
"""
from __future__ import annotations

import numpy as np

__all__ = ["explain", "grad_cam", "grad_cam_network", "hog_contributions", "cell_map"]


def explain(model, image: np.ndarray, class_index: int | None = None) -> dict:
    """An explanation map of one uint8 image for one class (default: the most probable).

    Parameters
    ----------
    model : cvcore.train.pipeline.TrainedModel
    image : ndarray, uint8, (H, W) or (H, W, 3)
        Brought to the model's size and colour mode by
        :func:`cvcore.train.pipeline.prepare_images`.
    class_index : int, optional

    Returns
    -------
    dict with ``method`` (str), ``class_index`` (int), ``heatmap`` ((H, W) float32, the model's
    input size), ``signed`` (whether negative values mean evidence against), ``proba``
    ((n_classes,) float64).
    """
    from cvcore.train.pipeline import CNN_MODELS, prepare_images
    image = prepare_images([image], model.size, model.mode)[0]
    proba = model.predict_proba(image[None])[0]
    n_classes = len(model.class_names)
    if class_index is None:
        class_index = int(np.argmax(proba))
    if not 0 <= int(class_index) < n_classes:
        raise ValueError(f"class index {class_index} is outside 0..{n_classes - 1}")
    class_index = int(class_index)
    if model.kind in CNN_MODELS:
        heat, method, signed = grad_cam(model, image, class_index), "grad-cam", False
    else:
        heat, method = hog_contributions(model, image, class_index), \
            "knn-nearest-cells" if model.kind == "hog-knn" else "hog-linear-cells"
        signed = model.kind != "hog-knn"
    return {"method": method, "class_index": class_index, "heatmap": heat, "signed": signed,
            "proba": proba}


def grad_cam(model, image: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM of one uint8 image for ``class_index``: (H, W) float32 >= 0 at the input size."""
    return grad_cam_network(model._network(), model.network_input(image[None]), class_index)


def grad_cam_network(net, x: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) of a ResNet or EfficientNet for one input.

    Parameters
    ----------
    net : cvcore.nn.ResNet or cvcore.nn.EfficientNet
        Any depth and width (``features`` and the head, ``avgpool`` and ``fc``, are used); run in eval
        mode for the call and left in the mode it was in.
    x : ndarray (1, C, H, W) float32
        The network's input, normalised as it was trained.
    class_index : int
        The class ``c`` whose score ``y^c`` is explained.

    Returns
    -------
    ndarray (H, W) float32 >= 0
        ``ReLU(sum_k alpha_k^c A^k)`` with ``alpha_k^c`` the mean over the map of
        ``d y^c / d A^k`` (the module docstring), upsampled bilinearly from the last stage's
        (h, w) to the input's (H, W).
    """
    from cvcore import nn
    from cvcore.preprocess import resize
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one input (1, C, H, W), got shape {x.shape}")
    class_index = int(class_index)
    if not 0 <= class_index < net.num_classes:
        raise ValueError(f"class index {class_index} is outside 0..{net.num_classes - 1}")
    was_training = net.training
    net.eval()
    try:
        with nn.no_grad():
            A = net.features(x)                               # (1, K, h, w)
        # the head after the maps: torchvision's names (ResNet), EfficientNet-PyTorch's
        avgpool, fc = (net.avgpool, net.fc) if hasattr(net, "fc") else (net._avg_pooling, net._fc)
        pooled = avgpool(A)                                   # grad mode: the head keeps caches
        logits = fc(pooled.reshape(1, -1))
        dlogits = np.zeros_like(logits)
        dlogits[0, class_index] = 1.0                          # d y^c / d logits
        dpooled = fc.backward(dlogits).reshape(pooled.shape)
        dA = avgpool.backward(dpooled)                        # d y^c / d A, (1, K, h, w)
    finally:
        net.train(was_training)
    alpha = dA[0].mean(axis=(1, 2))                           # eq. 1
    cam = np.maximum(np.tensordot(alpha, A[0], axes=1), 0.0)  # eq. 2
    cam = resize(cam.astype(np.float32), tuple(x.shape[2:]), interpolation="bilinear")
    return np.maximum(cam, 0.0).astype(np.float32)


def cell_map(values: np.ndarray, size, cell, block) -> np.ndarray:
    """Spread per-dimension values of one HOG level onto the pixels, summed per cell.

    Parameters
    ----------
    values : (D,) float, in the HOG layout ``(block_row, block_col, cell_row, cell_col, bin)``
    size : (H, W) the image size
    cell : (cell_rows, cell_cols) pixels per cell
    block : (b_rows, b_cols) cells per block

    Returns
    -------
    (H, W) float64 whose sum equals ``values.sum()`` (pixels past the last whole cell get 0).

    Examples
    --------
    One block of 2 x 2 cells of 2 x 2 pixels, one orientation bin: each cell's value is spread
    over its 4 pixels.

    >>> m = cell_map(np.ones(4), (4, 4), (2, 2), (2, 2))
    >>> float(m.sum()), float(m[0, 0])
    (4.0, 0.25)
    """
    H, W = size
    n_rows, n_cols = H // cell[0], W // cell[1]
    nb_rows, nb_cols = n_rows - block[0] + 1, n_cols - block[1] + 1
    values = np.asarray(values, dtype=np.float64)
    per_block = nb_rows * nb_cols * block[0] * block[1]
    if nb_rows < 1 or nb_cols < 1 or values.ndim != 1 or values.size % per_block:
        raise ValueError(f"{values.size} values do not fit {max(nb_rows, 0)} x {max(nb_cols, 0)} "
                         f"blocks of {block[0]} x {block[1]} cells of {cell} pixels in {size}")
    v = values.reshape(nb_rows, nb_cols, block[0], block[1], -1)
    per_cell = np.zeros((n_rows, n_cols))
    per_block_cell = v.sum(axis=4)                           # over orientation bins
    for i in range(block[0]):
        for j in range(block[1]):
            per_cell[i:i + nb_rows, j:j + nb_cols] += per_block_cell[:, :, i, j]
    out = np.zeros((H, W))
    area = cell[0] * cell[1]
    out[:n_rows * cell[0], :n_cols * cell[1]] = np.repeat(
        np.repeat(per_cell / area, cell[0], axis=0), cell[1], axis=1)
    return out


def hog_contributions(model, image: np.ndarray, class_index: int) -> np.ndarray:
    """Per-cell contributions (see the module notes) of one uint8 image: (H, W) float32."""
    z = model.features(image[None])[0].astype(np.float64)    # standardised HOG vector (D,)
    clf = model._classifier()
    if model.kind == "hog-knn":
        members = clf.X_[clf.y_ == class_index]
        nearest = members[np.argmin(((members - z) ** 2).sum(axis=1))]
        per_dim = -(z - nearest) ** 2
    else:
        coef = np.asarray(clf.coef_, dtype=np.float64)
        if coef.shape[0] == 1:                               # binary SVM: scores [-s, s]
            w = coef[0] if class_index == 1 else -coef[0]
        else:
            w = coef[class_index]
        per_dim = w * z
    hp = model.params["hog"]
    block = tuple(hp["cells_per_block"])
    out = np.zeros(tuple(model.size))
    start = 0
    for cell in hp["cell_sizes"]:
        n_rows, n_cols = model.size[0] // cell[0], model.size[1] // cell[1]
        D = (n_rows - block[0] + 1) * (n_cols - block[1] + 1) * block[0] * block[1] \
            * hp["orientations"]
        out += cell_map(per_dim[start:start + D], model.size, tuple(cell), block)
        start += D
    if start != len(per_dim):
        raise ValueError(f"the model's HOG parameters give {start} features but its vector has "
                         f"{len(per_dim)}")
    return out.astype(np.float32)
