"""Robust model fitting: RANSAC (Fischler & Bolles 1981) around the normalised DLT.

- :func:`fit_homography` / :func:`fit_affine`: least-squares fits to all given pairs. Points are
  first moved to centroid 0 and mean distance sqrt(2) (Hartley 1997, "In defense of the
  eight-point algorithm"), which keeps the linear system well conditioned.
- :func:`ransac_homography` / :func:`ransac_affine`: repeatedly fit a minimal sample (4 pairs, 3
  pairs), count the pairs whose reprojection error ``|dst - H(src)|`` is <= ``threshold``, keep
  the model with most such inliers, stop when a better one is unlikely
  (``trials >= log(1 - confidence) / log(1 - w^s)``, w the inlier share, s the sample size;
  Hartley & Zisserman 2004, sec. 4.7.1), then refit on all inliers (a homography: DLT, then
  :func:`refine_homography`, Levenberg-Marquardt on the reprojection error, as OpenCV's
  ``findHomography`` does), re-select the inliers and repeat until they stop changing.

Degenerate input. Fewer pairs than a minimal sample, mismatched shapes, NaN: ``ValueError``.
Samples with three collinear points (in either image) are skipped, and so are models that are
singular (``|det| <= SINGULAR_DET max|H|^3``, what :func:`apply_homography` refuses), from a
sample or from a refit on the inliers; when no usable sample is found or the best model has fewer
inliers than a minimal sample, the functions return ``None``. A returned model is never singular.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cvcore._validate import check_array, check_finite, check_int, check_positive

BLOCK = 256                 # hypotheses scored together ...
SCORE_ELEMENTS = 1 << 21    # ... at most this many (hypothesis, point) pairs at once (memory)
# |det H| below this times max|H|^3 (scale-free) counts as singular: float64 round-off of a
# rank-2 matrix's determinant is about 1e-16 of that scale, so 1e-12 leaves a wide margin.
SINGULAR_DET = 1e-12
COLLINEAR_TOL = 1e-6        # triangle area / (squared spread of the points): below = collinear


class RansacResult(NamedTuple):
    """model: (3, 3) float64 (an affine model has last row [0, 0, 1]); inliers: (N,) bool;
    n_trials: int, hypotheses drawn."""
    model: np.ndarray
    inliers: np.ndarray
    n_trials: int


def _check_pairs(src, dst, minimum):
    src = check_array(src, "src", ndim=2, dtypes="uif", allow_empty=True)
    dst = check_array(dst, "dst", ndim=2, dtypes="uif", allow_empty=True)
    if src.shape[1:] != (2,) or dst.shape[1:] != (2,):
        raise ValueError(f"src and dst must have shape (N, 2), got {src.shape} and {dst.shape}")
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"src and dst must hold the same number of points, got {src.shape[0]} "
                         f"and {dst.shape[0]}")
    check_finite(src, "src")
    check_finite(dst, "dst")
    if src.shape[0] < minimum:
        raise ValueError(f"need at least {minimum} point pairs, got {src.shape[0]}")
    return src.astype(np.float64), dst.astype(np.float64)


def _normaliser(p):
    """Similarity T with T p: centroid 0, mean distance from it sqrt(2) (Hartley 1997)."""
    c = p.mean(axis=0)
    mean_dist = np.sqrt(((p - c) ** 2).sum(axis=1)).mean()
    s = math.sqrt(2.0) / mean_dist if mean_dist > 0 else 1.0
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def _apply(T, p):
    return p @ T[:2, :2].T + T[:2, 2]


def _singular(H):
    """True where the (..., 3, 3) matrices are singular by the SINGULAR_DET test: they map the
    plane onto a line or a point (what :func:`apply_homography` refuses)."""
    scale = np.maximum(np.abs(H).max(axis=(-2, -1)), 1e-300)
    return np.abs(np.linalg.det(H)) <= SINGULAR_DET * scale ** 3


def apply_homography(H, points) -> np.ndarray:
    """Map (N, 2) points by a 3x3 homography: ``(x', y') = (h1.p, h2.p) / h3.p``, p = (x, y, 1).
    Points mapped to infinity (h3.p = 0) come out as inf."""
    H = check_array(H, "H", ndim=2, dtypes="buif")
    if H.shape != (3, 3):
        raise ValueError(f"H must be a 3x3 homography, got shape {H.shape}")
    check_finite(H, "H")
    H = H.astype(np.float64)
    if _singular(H):
        raise ValueError("H is singular (determinant ~0): it maps the plane onto a line or a "
                         "point, not a homography")
    p = check_array(points, "points", ndim=2, dtypes="buif", allow_empty=True)
    if p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {p.shape}")
    check_finite(p, "points")
    p = p.astype(np.float64)
    q = p @ H[:, :2].T + H[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return q[:, :2] / q[:, 2:3]


def _dlt_rows(s, d):
    """The two DLT equations per pair (Hartley & Zisserman 2004, eq. 4.3), (..., 2n, 9)."""
    x, y = s[..., 0], s[..., 1]
    u, v = d[..., 0], d[..., 1]
    o, z = np.ones_like(x), np.zeros_like(x)
    r1 = np.stack([-x, -y, -o, z, z, z, u * x, u * y, u], axis=-1)
    r2 = np.stack([z, z, z, -x, -y, -o, v * x, v * y, v], axis=-1)
    return np.concatenate([r1, r2], axis=-2)


def _denormalise(Hn, T1, T2):
    H = np.linalg.inv(T2) @ Hn @ T1
    scale = H[..., 2:3, 2:3]
    ok = np.abs(scale) > 1e-12
    return np.where(ok, H / np.where(ok, scale, 1.0), H)


def fit_homography(src, dst) -> np.ndarray:
    """Least-squares homography by the normalised DLT (Hartley & Zisserman 2004, alg. 4.2).

    Parameters
    ----------
    src, dst : array_like (N, 2), N >= 4

    Returns
    -------
    ndarray (3, 3) float64, scaled so that ``H[2, 2] = 1`` where possible.
    """
    src, dst = _check_pairs(src, dst, 4)
    T1, T2 = _normaliser(src), _normaliser(dst)
    A = _dlt_rows(_apply(T1, src), _apply(T2, dst))
    # the right singular vector of the smallest singular value; the thin SVD suffices (and keeps
    # memory at O(N)) once A has at least 9 rows
    h = np.linalg.svd(A, full_matrices=A.shape[0] < 9)[2][-1]
    return _denormalise(h.reshape(3, 3), T1, T2)


def refine_homography(H, src, dst, iterations: int = 10) -> np.ndarray:
    """Minimise the reprojection error ``sum |dst - H(src)|^2`` over H (with ``H[2, 2] = 1``) by
    Levenberg-Marquardt from ``H``, in normalised coordinates (Hartley & Zisserman 2004,
    sec. 4.2.2 and A6.2). The DLT minimises an algebraic error instead; this step is what makes
    the fitted homography as accurate as the inliers allow. ``src, dst`` (N, 2), N >= 4."""
    src, dst = _check_pairs(src, dst, 4)
    T1, T2 = _normaliser(src), _normaliser(dst)
    s, d = _apply(T1, src), _apply(T2, dst)
    Hn = T2 @ np.asarray(H, np.float64) @ np.linalg.inv(T1)
    if abs(Hn[2, 2]) < 1e-12:
        return np.asarray(H, np.float64)
    h = (Hn / Hn[2, 2]).ravel()[:8].copy()
    x, y = s[:, 0], s[:, 1]

    def residuals(h):
        u = h[0] * x + h[1] * y + h[2]
        v = h[3] * x + h[4] * y + h[5]
        w = h[6] * x + h[7] * y + 1.0
        return u, v, w, np.concatenate([u / w - d[:, 0], v / w - d[:, 1]])

    u, v, w, r = residuals(h)
    cost = r @ r
    lam = 1e-3
    for _ in range(iterations):
        if not np.isfinite(cost):
            break
        z = np.zeros_like(x)
        ju = np.stack([x / w, y / w, 1 / w, z, z, z, -u * x / w ** 2, -u * y / w ** 2], axis=1)
        jv = np.stack([z, z, z, x / w, y / w, 1 / w, -v * x / w ** 2, -v * y / w ** 2], axis=1)
        J = np.concatenate([ju, jv])
        JtJ = J.T @ J
        g = J.T @ r
        improved = False
        for _ in range(10):
            try:
                step = np.linalg.solve(JtJ + lam * np.diag(np.diag(JtJ) + 1e-12), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            nu, nv, nw, nr = residuals(h + step)
            ncost = nr @ nr
            if np.isfinite(ncost) and ncost < cost:
                h, u, v, w, r, cost = h + step, nu, nv, nw, nr, ncost
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or np.linalg.norm(step) < 1e-12 * (np.linalg.norm(h) + 1e-12):
            break
    Hn = np.append(h, 1.0).reshape(3, 3)
    return _denormalise(Hn, T1, T2)


def _fit_refine_homography(src, dst):
    return refine_homography(fit_homography(src, dst), src, dst)


def fit_affine(src, dst) -> np.ndarray:
    """Least-squares affine map ``dst = A src + t`` on normalised points; (3, 3), last row
    [0, 0, 1]. ``src, dst`` (N, 2), N >= 3."""
    src, dst = _check_pairs(src, dst, 3)
    T1, T2 = _normaliser(src), _normaliser(dst)
    s, d = _apply(T1, src), _apply(T2, dst)
    X = np.concatenate([s, np.ones((len(s), 1))], axis=1)
    M, *_ = np.linalg.lstsq(X, d, rcond=None)           # (3, 2)
    A = np.eye(3)
    A[:2, :] = M.T
    return np.linalg.inv(T2) @ A @ T1


def _collinear(p, idx):
    """(B,) True where any three of the sampled points p[idx] (B, s) are (nearly) collinear."""
    q = p[idx]                                           # (B, s, 2)
    spread = ((q - q.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2)) + 1e-300
    s = idx.shape[1]
    bad = np.zeros(idx.shape[0], bool)
    for a in range(s):
        for b in range(a + 1, s):
            for c in range(b + 1, s):
                u = q[:, b] - q[:, a]
                v = q[:, c] - q[:, a]
                area = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0])
                bad |= area <= COLLINEAR_TOL * spread
    return bad


def _errors(models, src, dst):
    """(B, N) reprojection errors |dst - M(src)| for B models (B, 3, 3)."""
    q = np.einsum("bij,nj->bni", models[:, :, :2], src) + models[:, None, :, 2]
    w = q[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = q[..., :2] / w[..., None]
        err = np.sqrt(((proj - dst[None]) ** 2).sum(axis=-1))
    return np.where(np.isfinite(err), err, np.inf)


def _minimal_homographies(s, d):
    A = _dlt_rows(s, d)                                  # (B, 8, 9)
    return np.linalg.svd(A)[2][:, -1].reshape(-1, 3, 3)


def _minimal_affines(s, d):
    B = s.shape[0]
    X = np.concatenate([s, np.ones((B, 3, 1))], axis=2)  # (B, 3, 3)
    det = np.linalg.det(X)
    X = np.where(np.abs(det)[:, None, None] > 1e-12, X, np.eye(3))
    M = np.linalg.solve(X, d)                            # (B, 3, 2)
    A = np.zeros((B, 3, 3))
    A[:, :2, :] = np.transpose(M, (0, 2, 1))
    A[:, 2, 2] = 1.0
    return A


def _ransac(src, dst, s, minimal, refit, threshold, max_trials, confidence, seed):
    N = src.shape[0]
    T1, T2 = _normaliser(src), _normaliser(dst)
    ns, nd = _apply(T1, src), _apply(T2, dst)
    rng = np.random.default_rng(seed)
    best_count, best_model, best_inl = 0, None, None
    needed = max_trials
    trials = 0
    while trials < min(needed, max_trials):
        B = min(BLOCK, max_trials - trials, max(1, SCORE_ELEMENTS // N))
        idx = rng.integers(0, N, size=(B, s))
        srt = np.sort(idx, axis=1)
        bad = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        bad |= _collinear(ns, idx) | _collinear(nd, idx)
        trials += B
        idx = idx[~bad]
        if idx.shape[0] == 0:
            continue
        models = _denormalise(minimal(ns[idx], nd[idx]), T1, T2)
        # a sample can be far from collinear and still give a (numerically) singular model, one
        # that squeezes the plane onto a point or a line, e.g. spread points matched to a tight
        # cluster: every point of the cluster is then an "inlier". Not a homography: skipped.
        models = models[~_singular(models)]
        if models.shape[0] == 0:
            continue
        inl = _errors(models, src, dst) <= threshold
        counts = inl.sum(axis=1)
        k = int(np.argmax(counts))
        if counts[k] > best_count:
            best_count, best_model, best_inl = int(counts[k]), models[k], inl[k]
            w = best_count / N
            if w >= 1.0:
                needed = trials
            else:
                denom = math.log(max(1e-300, 1.0 - w ** s))
                needed = int(math.ceil(math.log(1.0 - confidence) / denom)) if denom < 0 else max_trials
    if best_model is None or best_count < s:
        return None
    model, inl = best_model, best_inl
    for _ in range(3):
        # least-squares refit on the inliers (the inliers include a non-degenerate minimal
        # sample, so it is well posed); kept even when it changes the inlier count a little,
        # since it uses every inlier instead of 3 or 4 of them
        refitted = refit(src[inl], dst[inl])
        if _singular(refitted):                # the inliers alone are degenerate: keep the last
            break
        model = refitted
        new_inl = _errors(model[None], src, dst)[0] <= threshold
        if new_inl.sum() < s:
            break
        same = np.array_equal(new_inl, inl)
        inl = new_inl
        if same:
            break
    return RansacResult(model, inl, trials)


def _check_params(threshold, max_trials, confidence):
    threshold = check_positive(threshold, "threshold")
    max_trials = check_int(max_trials, "max_trials", minimum=1)
    confidence = check_positive(confidence, "confidence")
    if confidence >= 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return threshold, max_trials, confidence


def ransac_homography(src, dst, threshold: float = 3.0, max_trials: int = 2000,
                      confidence: float = 0.995, seed=0):
    """Homography ``dst ~ H src`` by RANSAC with 4-point samples and the normalised DLT.

    Parameters
    ----------
    src, dst : array_like (N, 2)
        Matched points (x, y), N >= 4.
    threshold : float
        Inlier if the reprojection error ``|dst - H(src)|`` is <= this, in pixels.
    max_trials : int
    confidence : float in (0, 1)
        Stop once a better model would have been found with this probability.
    seed : int or numpy Generator or None
        Fixed by default, so results repeat; ``None`` for fresh randomness.

    Returns
    -------
    RansacResult or None
        ``None`` when every sample was degenerate (e.g. all points collinear, or every model
        singular) or fewer than 4 pairs agree with the best model. The model is never singular.

    Raises
    ------
    ValueError
        Fewer than 4 pairs, shapes that do not match, NaN or inf.
    """
    src, dst = _check_pairs(src, dst, 4)
    threshold, max_trials, confidence = _check_params(threshold, max_trials, confidence)
    return _ransac(src, dst, 4, _minimal_homographies, _fit_refine_homography, threshold,
                   max_trials, confidence, seed)


def ransac_affine(src, dst, threshold: float = 3.0, max_trials: int = 2000,
                  confidence: float = 0.995, seed=0):
    """Affine map ``dst = A src + t`` by RANSAC with 3-point samples; as
    :func:`ransac_homography` otherwise (needs N >= 3; the model's last row is [0, 0, 1])."""
    src, dst = _check_pairs(src, dst, 3)
    threshold, max_trials, confidence = _check_params(threshold, max_trials, confidence)
    return _ransac(src, dst, 3, _minimal_affines, fit_affine, threshold, max_trials,
                   confidence, seed)
