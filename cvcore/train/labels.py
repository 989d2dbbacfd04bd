"""Finding mislabelled images by confident learning (Northcutt, Jiang & Chuang 2021, JAIR 70).

The stages, in order:

1. **Out-of-fold probabilities** (:func:`out_of_fold_proba`): the images are split into ``k``
   class-stratified folds; a model trained on the other ``k - 1`` folds gives the probabilities
   ``P[i, j]`` of each image ``i`` of the held-out fold. No image is scored by a model that saw
   its label.
2. **Per-class thresholds** (:func:`confident_thresholds`, sec. 3.1 of the paper): ``t_j`` is the
   mean of ``P[i, j]`` over the images *labelled* ``j``, the model's average self-confidence for
   that class.
3. **The confident joint** (:func:`confident_joint`, eq. 1): ``C[i][j]`` counts the images with
   given label ``i`` whose probability of class ``j`` reaches ``t_j``; an image over several
   thresholds counts once, for its most probable class among them. It is then calibrated
   (eq. 2) so that row ``i`` sums to the number of images labelled ``i`` and the whole to ``n``:
   ``C[i][j]`` estimates how many images labelled ``i`` are truly ``j``.
4. **Prune by noise rate** (:func:`label_issue_mask`, sec. 3.2, "Method: C_confusion + prune by
   noise rate"): for every off-diagonal ``(i, j)``, the ``C[i][j]`` images labelled ``i`` with the
   largest margin ``P[:, j] - P[:, i]`` are flagged; an image whose most probable class is its
   given label is never flagged.
5. **Ranking** (:func:`find_label_issues`): flagged images by increasing self-confidence
   ``P[i, given label]`` (the paper's and cleanlab's default label-quality score), with the
   likely label ``argmax P[i]`` and its probability.

Conventions: rows of the confident joint are given labels, columns likely true labels (the
paper's ``C_{\\tilde y, y^*}``). The same method is ``cleanlab.filter.find_label_issues`` with its
defaults (``filter_by="prune_by_noise_rate"``); the tests compare the two on the same
probabilities. cleanlab differs in one detail: for an image over several thresholds it takes the
most probable class over *all* classes, the paper (and this module) over the classes whose
threshold it reached.
"""
from __future__ import annotations

import time

import numpy as np

from cvcore._validate import check_array, check_finite, check_int

__all__ = ["MIN_THRESHOLD", "confident_thresholds", "confident_joint", "label_issue_mask",
           "find_label_issues", "stratified_folds", "out_of_fold_proba", "check_labels"]

#: Thresholds are kept at least this high, so that a class no image is confidently given still
#: needs a non-zero probability (cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND).
MIN_THRESHOLD = 2e-6
#: A probability within this of its class threshold counts as reaching it (float32 outputs).
THRESHOLD_SLACK = 1e-6


def _check_inputs(labels, pred_probs):
    pred_probs = check_finite(check_array(pred_probs, "pred_probs", ndim=2, dtypes="f"),
                              "pred_probs").astype(np.float64)
    labels = check_array(labels, "labels", ndim=1, dtypes="iu").astype(np.int64)
    n, k = pred_probs.shape
    if len(labels) != n:
        raise ValueError(f"labels has {n and len(labels)} entries for {n} rows of pred_probs")
    if k < 2:
        raise ValueError(f"pred_probs needs at least two classes, got {k}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be class indices in 0..{k - 1}")
    if pred_probs.min() < 0 or pred_probs.max() > 1:
        raise ValueError("pred_probs must hold probabilities in [0, 1]")
    return labels, pred_probs


def confident_thresholds(labels, pred_probs) -> np.ndarray:
    """Per-class thresholds ``t_j`` (n_classes,) float64: the mean probability of class ``j``
    over the images labelled ``j`` (Northcutt et al. 2021, eq. 2's ``t_j``). A class with no
    image keeps a threshold of 2, which no probability reaches."""
    labels, pred_probs = _check_inputs(labels, pred_probs)
    k = pred_probs.shape[1]
    t = np.full(k, 2.0)
    for j in range(k):
        mine = labels == j
        if mine.any():
            t[j] = pred_probs[mine, j].mean()
    return np.maximum(t, MIN_THRESHOLD)


def _round_keeping_row_sums(x: np.ndarray) -> np.ndarray:
    """Round each row to integers whose sum is the row's rounded sum: round every entry, then
    move by one the entries whose rounding moved them furthest, until the total is right."""
    out = np.rint(x)
    for row, target in zip(range(len(x)), np.rint(x.sum(axis=1))):
        diff = int(target - out[row].sum())
        if diff:
            step = 1 if diff > 0 else -1
            residual = (x[row] - out[row]) * step       # largest first: most owed in that way
            for idx in np.argsort(-residual, kind="stable")[:abs(diff)]:
                out[row, idx] += step
    return out.astype(np.int64)


def confident_joint(labels, pred_probs, calibrate: bool = True) -> np.ndarray:
    """The confident joint ``C`` (n_classes, n_classes) int64: rows given labels, columns the
    classes the images confidently belong to (Northcutt et al. 2021, eq. 1), calibrated (eq. 2)
    unless ``calibrate=False``.

    Examples
    --------
    Three images labelled 0 and three labelled 1; the third image labelled 0 looks like a 1:

    >>> p = np.array([[.9, .1], [.8, .2], [.1, .9], [.2, .8], [.3, .7], [.1, .9]])
    >>> confident_joint([0, 0, 0, 1, 1, 1], p, calibrate=False)
    array([[2, 1],
           [0, 2]])
    """
    labels, pred_probs = _check_inputs(labels, pred_probs)
    n, k = pred_probs.shape
    t = confident_thresholds(labels, pred_probs)
    above = pred_probs >= t - THRESHOLD_SLACK
    confident = above.any(axis=1)
    # the most probable class among those whose threshold the image reaches
    likely = np.where(above, pred_probs, -np.inf).argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[confident], likely[confident]), 1)
    # a class with no confident image of its own would divide by zero below (cleanlab does this)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    if not calibrate:
        return joint
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    rows = joint / joint.sum(axis=1, keepdims=True) * counts[:, None]     # row i sums to n_i
    rows = rows / rows.sum() * counts.sum()                               # the whole to n
    return _round_keeping_row_sums(rows)


def label_issue_mask(labels, pred_probs, min_keep: int = 1) -> np.ndarray:
    """Which labels are likely wrong: (N,) bool, by pruning by noise rate (module docstring,
    stage 4). ``min_keep``: every class keeps at least this many of its images unflagged
    (cleanlab's ``min_examples_per_class``).

    Examples
    --------
    >>> p = np.array([[.9, .1], [.8, .2], [.1, .9], [.2, .8], [.3, .7], [.1, .9]])
    >>> label_issue_mask([0, 0, 0, 1, 1, 1], p)
    array([False, False,  True, False, False, False])
    """
    labels, pred_probs = _check_inputs(labels, pred_probs)
    min_keep = check_int(min_keep, "min_keep", minimum=0)
    joint = confident_joint(labels, pred_probs).astype(np.float64)
    k = len(joint)
    for i in range(k):            # leave every class at least min_keep images
        short = min_keep - joint[i, i]
        others = [j for j in range(k) if j != i and joint[i, j] > 0]
        if short > 0 and others:
            joint[i, others] = np.maximum(joint[i, others] - short / len(others), 0)
            joint[i, i] = min_keep
    joint = np.floor(joint + 1e-9).astype(np.int64)
    mask = np.zeros(len(labels), dtype=bool)
    for i in range(k):
        mine = np.flatnonzero(labels == i)
        if len(mine) <= min_keep:
            continue
        for j in range(k):
            if j != i and joint[i, j] > 0:
                margin = pred_probs[mine, j] - pred_probs[mine, i]
                worst = np.argsort(-margin, kind="stable")[:joint[i, j]]
                mask[mine[worst]] = True
    # never flag an image whose given label is (within float slack) its most probable class
    boosted = pred_probs.copy()
    boosted[np.arange(len(labels)), labels] += THRESHOLD_SLACK
    mask[boosted.argmax(axis=1) == labels] = False
    return mask


def find_label_issues(labels, pred_probs, class_names=None, paths=None, min_keep: int = 1
                      ) -> list[dict]:
    """The likely mislabelled images, most suspicious first.

    Parameters
    ----------
    labels : array of int, shape (N,)
        The given labels.
    pred_probs : array of float, shape (N, n_classes)
        Out-of-fold probabilities (:func:`out_of_fold_proba`), or any model's held-out ones.
    class_names : list of str, optional
        Names of the classes (default ``"0", "1", ...``).
    paths : list, optional
        What to call each image (file paths; default its index).
    min_keep : int
        See :func:`label_issue_mask`.

    Returns
    -------
    list of dict
        ``{"index", "path", "label", "likely_label", "confidence", "label_quality"}`` ranked by
        increasing ``label_quality`` (the probability of the given label); ``confidence`` is the
        probability of ``likely_label``, the most probable class.
    """
    labels, pred_probs = _check_inputs(labels, pred_probs)
    k = pred_probs.shape[1]
    names = [str(c) for c in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} columns of pred_probs")
    if paths is not None and len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths for {len(labels)} labels")
    flagged = np.flatnonzero(label_issue_mask(labels, pred_probs, min_keep))
    quality = pred_probs[flagged, labels[flagged]]
    flagged = flagged[np.argsort(quality, kind="stable")]
    likely = pred_probs.argmax(axis=1)
    return [{"index": int(i), "path": int(i) if paths is None else paths[i],
             "label": names[labels[i]], "likely_label": names[likely[i]],
             "confidence": float(pred_probs[i, likely[i]]),
             "label_quality": float(pred_probs[i, labels[i]])} for i in flagged]


# -- out-of-fold probabilities ------------------------------------------------------------------

def stratified_folds(labels, folds: int, seed: int = 0, class_names=None) -> np.ndarray:
    """Fold number (N,) int64 of each image: each class's images shuffled (seeded) and dealt
    round-robin, so every fold holds ``n_c // folds`` or one more of every class.

    Raises ``ValueError`` for fewer than two folds or a class with fewer images than folds (a
    fold would have none of it to learn from or to score).
    """
    labels = check_array(labels, "labels", ndim=1, dtypes="iu").astype(np.int64)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)):
        raise TypeError(f"folds must be an integer, got {folds!r}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2 (out-of-fold probabilities need a held-out "
                         f"fold and a fold to train on), got {folds}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("the labels hold a single class; label checking needs at least two")
    small = counts < folds
    if small.any():
        c = classes[small][0]
        name = class_names[c] if class_names is not None else str(c)
        raise ValueError(f"class {name!r} has {counts[small][0]} images, fewer than the "
                         f"{folds} folds; use fewer folds (--folds) or add images")
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx] = np.arange(len(idx)) % folds
    return out


def out_of_fold_proba(kind, images, labels, class_names, folds: int = 5, seed: int = 0,
                      log=print, config=None) -> np.ndarray:
    """Out-of-fold probabilities (N, n_classes) float64 of every image, from ``folds`` models of
    ``kind`` (any model of :mod:`cvcore.train.pipeline`), each trained on the other folds.

    For the HOG models the features of all images are computed once and every fold standardises
    and fits on its own training part. The CNNs are trained with ``config``
    (:class:`cvcore.train.loop.TrainConfig`; default: its defaults) and no validation split.
    """
    from cvcore.train.pipeline import CNN_MODELS, HOG_MODELS, HOGParams, TrainedModel
    labels = check_array(labels, "labels", ndim=1, dtypes="iu").astype(np.int64)
    if kind not in HOG_MODELS + CNN_MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of "
                         f"{', '.join(HOG_MODELS + CNN_MODELS)}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images for {len(labels)} labels")
    fold_of = stratified_folds(labels, folds, seed, class_names)
    k = len(class_names)
    proba = np.zeros((len(labels), k))
    if kind in HOG_MODELS:
        from cvcore.train.pipeline import prepare_images, train_hog_classifier
        if images.ndim == 4:
            images = prepare_images(list(images), images.shape[1:3], "gray")
        probe = TrainedModel(kind, list(class_names), images.shape[1:3], "gray",
                             {"hog": HOGParams().as_dict()})
        t0 = time.perf_counter()
        feats = probe.hog_features(images)
        log(f"HOG features {feats.shape} in {time.perf_counter() - t0:.1f} s")
    for f in range(folds):
        train, held = fold_of != f, fold_of == f
        t0 = time.perf_counter()
        if kind in HOG_MODELS:
            clf, mean, std = train_hog_classifier(kind, feats[train], labels[train])
            p = clf.predict_proba(((feats[held] - mean) / std).astype(np.float32))
            cols = clf.classes_
        else:
            from cvcore.train.loop import TrainConfig
            from cvcore.train.pipeline import train_cnn_model
            model, _ = train_cnn_model(kind, images[train], labels[train], None, None,
                                       class_names, config or TrainConfig(seed=seed),
                                       progress=False)
            p, cols = model.predict_proba(images[held]), np.arange(k)
        proba[np.ix_(np.flatnonzero(held), cols)] = p
        acc = np.mean(proba[held].argmax(1) == labels[held])
        log(f"fold {f + 1}/{folds}: {int(train.sum())} images to train, {int(held.sum())} "
            f"scored, accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)")
    return proba


def check_labels(images, labels, class_names, paths=None, kind: str = "hog-svm",
                 folds: int = 5, seed: int = 0, log=print, config=None):
    """Out-of-fold probabilities by ``kind`` in ``folds`` folds, then :func:`find_label_issues`.

    Returns ``(issues, pred_probs)``.
    """
    proba = out_of_fold_proba(kind, images, labels, class_names, folds, seed, log, config)
    return find_label_issues(labels, proba, class_names, paths), proba
