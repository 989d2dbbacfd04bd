"""Keypoints: cvcore SIFT and SURF vs OpenCV SIFT on the Oxford affine sequences, quality and speed.

For each sequence (graf, boat, bikes, leuven) and each pair (img1, imgK), K = 2..6, every
detector runs on the same grey uint8 images and is scored with the same code. Detectors: cvcore
SIFT (``cvcore``), OpenCV SIFT (``opencv``), cvcore SURF with its 64-value descriptor (``surf``),
the 128-value extended one (``surf-128``), U-SURF (``u-surf``, no orientation), and mahotas' SURF (``mahotas``, a port of dlib's, the only
SURF installable from PyPI: OpenCV's sits in the non-free contrib module no wheel includes) with
``max_points=4000`` and its other defaults.

- repeatability: keypoints of either image inside the common area (projected by the ground-truth
  homography into the other image's frame) that have a keypoint of the other image within 3 px,
  over all such keypoints;
- mean matching accuracy (MMA): share of mutual nearest-neighbour matches passing the 0.8 ratio
  test (``cvcore.match.match_descriptors`` for both) whose reprojection error is <= 3 px; cvcore's
  SURF rows match only keypoints of the same Laplacian sign (``groups=``, Bay et al. 2008,
  sec. 4.3), ``surf-any`` is SURF-64 matched without it;
- homography accuracy: share of pairs whose RANSAC homography (``cvcore.match.ransac_homography``,
  3 px, fixed seed, for both) maps the four image corners within 3 px of the ground truth on
  average;
- time per image: detect + describe, wall clock, the median over the sequence's six images.

Then the speed rows: detect + describe on a 640x480 photo (test-images/roofs1.jpg, 640x478) through
``benchmarks.common`` (median of repeats, ratio = reference / cvcore), with keypoint counts, and
the same on one thread each timed as process CPU time (steadier on a busy machine): SIFT against
OpenCV's, and SURF / SURF-128 / U-SURF against cvcore's SIFT, interleaved (the ratio is SURF's
speed-up).

Run from the repository root: ``python -m benchmarks.keypoints`` (``--quick`` for graf only,
``--speed-only`` for the speed rows alone). The speed table is printed at Numba's default thread
count and at one thread, OpenCV set to the same count each time.
"""
from __future__ import annotations

import os

# This machine is shared by many processes on 2 cores. OpenMP's default busy-waiting makes every
# Numba parallel region stall when a core is taken by another process; passive waiting does not.
# Set before Numba loads its threading layer; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import (Row, machine_line, optional, print_table,  # noqa: E402
                               run_interleaved)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))
SEQUENCES = ("graf", "boat", "bikes", "leuven")
PIXEL_TOL = 3.0


def load_gray(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def load_sequence(name):
    folder = DATA / "oxford-affine" / name
    images = [load_gray(next(folder.glob(f"img{i}.p?m"))) for i in range(1, 7)]
    hs = []
    for k in range(2, 7):
        H = np.loadtxt(folder / f"H1to{k}p")
        hs.append(H / H[2, 2])          # leuven's files are not normalised
    return images, hs


def cvcore_detector():
    from cvcore.features import sift

    def run(img):
        kp, desc = sift(img)
        return kp.xy.astype(np.float64), desc
    return run


def surf_detector(upright=False, extended=False, signs=True):
    """cvcore SURF; with ``signs`` the Laplacian signs go along as matching groups."""
    from cvcore.features import surf

    def run(img):
        kp, desc = surf(img, upright=upright, extended=extended)
        if signs:
            return kp.xy.astype(np.float64), desc, kp.laplacian
        return kp.xy.astype(np.float64), desc
    return run


def mahotas_detector(mahotas_surf):
    def run(img):
        points = mahotas_surf.surf(img.astype(np.float64), max_points=4000)
        return points[:, [1, 0]].astype(np.float64), points[:, 6:].astype(np.float32)
    return run


def opencv_detector(cv2):
    det = cv2.SIFT_create()

    def run(img):
        kps, desc = det.detectAndCompute(img, None)
        xy = np.array([k.pt for k in kps], np.float64).reshape(-1, 2)
        return xy, (desc if desc is not None else np.zeros((0, 128), np.float32))
    return run


def inside(p, shape):
    h, w = shape
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


def repeatability(xy1, xy2, H, shape1, shape2):
    from scipy.spatial import cKDTree

    from cvcore.match import apply_homography
    p1 = apply_homography(H, xy1)                  # image-1 keypoints in image 2
    p2 = apply_homography(np.linalg.inv(H), xy2)   # image-2 keypoints in image 1
    c1 = inside(p1, shape2)
    c2 = inside(p2, shape1)
    total = int(c1.sum() + c2.sum())
    if total == 0 or len(xy1) == 0 or len(xy2) == 0:
        return 0.0
    d1, _ = cKDTree(xy2).query(p1[c1])
    d2, _ = cKDTree(xy1).query(p2[c2])
    return float(((d1 <= PIXEL_TOL).sum() + (d2 <= PIXEL_TOL).sum()) / total)


def match_scores(xy1, d1, xy2, d2, H, shape, groups=None):
    from cvcore.match import apply_homography, match_descriptors, ransac_homography
    m = match_descriptors(d1, d2, ratio=0.8, cross_check=True, groups=groups)
    if len(m) == 0:
        return 0.0, False, 0
    a, b = xy1[m[:, 0]], xy2[m[:, 1]]
    err = np.linalg.norm(apply_homography(H, a) - b, axis=1)
    mma = float((err <= PIXEL_TOL).mean())
    ok = False
    if len(m) >= 4:
        res = ransac_homography(a, b, threshold=PIXEL_TOL, seed=0)
        if res is not None:
            h, w = shape
            corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
            ce = np.linalg.norm(apply_homography(res.model, corners)
                                - apply_homography(H, corners), axis=1).mean()
            ok = bool(ce <= PIXEL_TOL)
    return mma, ok, len(m)


def evaluate(name, detectors):
    images, hs = load_sequence(name)
    out = {}
    for label, run in detectors.items():
        run(images[0])                              # warm-up (JIT compile / caches)
        feats, times = [], []
        for img in images:
            t0 = time.perf_counter()
            feats.append(run(img))
            times.append(time.perf_counter() - t0)
        rep, mma, hom, nkp, nmatch = [], [], [], [], []
        for k in range(1, 6):
            (x1, d1, *g1), (x2, d2, *g2) = feats[0], feats[k]
            rep.append(repeatability(x1, x2, hs[k - 1], images[0].shape, images[k].shape))
            groups = (g1[0], g2[0]) if g1 else None
            s_mma, s_ok, s_n = match_scores(x1, d1, x2, d2, hs[k - 1], images[0].shape, groups)
            mma.append(s_mma)
            hom.append(s_ok)
            nmatch.append(s_n)
        nkp = [len(f[0]) for f in feats]
        out[label] = dict(rep=rep, mma=mma, hom=hom, time=statistics.median(times),
                          kp=float(np.mean(nkp)), matches=nmatch)
    return out


def print_quality(results):
    labels = list(next(iter(results.values())).keys())
    print(f"\n{'sequence':<8} {'detector':<8} {'repeat.':>8} {'MMA':>7} {'hom.acc':>8} "
          f"{'kp/img':>7} {'ms/img':>8}   per pair 1-2..1-6: repeatability | MMA | H ok")
    summary = {lab: dict(rep=[], mma=[], hom=[]) for lab in labels}
    for seq, res in results.items():
        for lab in labels:
            r = res[lab]
            summary[lab]["rep"] += r["rep"]
            summary[lab]["mma"] += r["mma"]
            summary[lab]["hom"] += r["hom"]
            pairs = (" ".join(f"{v:.2f}" for v in r["rep"]) + " | "
                     + " ".join(f"{v:.2f}" for v in r["mma"]) + " | "
                     + "".join("y" if v else "n" for v in r["hom"]))
            print(f"{seq:<8} {lab:<8} {np.mean(r['rep']):8.3f} {np.mean(r['mma']):7.3f} "
                  f"{np.mean(r['hom']):8.2f} {r['kp']:7.0f} {1e3 * r['time']:8.1f}   {pairs}")
    print()
    for lab in labels:
        s = summary[lab]
        print(f"{'all':<8} {lab:<8} {np.mean(s['rep']):8.3f} {np.mean(s['mma']):7.3f} "
              f"{np.mean(s['hom']):8.2f}")
    if "cvcore" in labels and "opencv" in labels:
        a, b = "cvcore", "opencv"
        print("\nacceptance (cvcore - OpenCV per sequence): "
              "MMA >= -0.02, hom.acc >= -0.02, repeatability >= -0.03")
        for seq, res in results.items():
            dr = np.mean(res[a]["rep"]) - np.mean(res[b]["rep"])
            dm = np.mean(res[a]["mma"]) - np.mean(res[b]["mma"])
            dh = np.mean(res[a]["hom"]) - np.mean(res[b]["hom"])
            ok = dr >= -0.03 and dm >= -0.02 and dh >= -0.02
            print(f"  {seq:<8} d_rep {dr:+.3f}  d_MMA {dm:+.3f}  d_hom {dh:+.2f}  "
                  f"{'holds' if ok else 'FAILS'}")
    for lab in ("surf", "surf-any", "surf-128", "u-surf"):
        if lab not in labels or "cvcore" not in labels:
            continue
        print(f"\n{lab} against cvcore SIFT: repeatability difference, time ratio SIFT / {lab}")
        for seq, res in results.items():
            dr = np.mean(res[lab]["rep"]) - np.mean(res["cvcore"]["rep"])
            dm = np.mean(res[lab]["mma"]) - np.mean(res["cvcore"]["mma"])
            speed = res["cvcore"]["time"] / res[lab]["time"]
            print(f"  {seq:<8} d_rep {dr:+.3f}  d_MMA {dm:+.3f}  {speed:5.2f}x faster  "
                  f"kp/img {res[lab]['kp']:.0f} vs {res['cvcore']['kp']:.0f}")


def speed_row():
    from cvcore.features import sift, surf
    cv2 = optional("cv2")
    img = load_gray(DATA / "test-images" / "roofs1.jpg")
    kp, _ = sift(img)
    line = f"640x478 photo (roofs1.jpg): cvcore {len(kp)} keypoints"
    ref = None
    if cv2 is not None:
        det = cv2.SIFT_create()
        ref = {"cv2.SIFT": lambda: det.detectAndCompute(img, None)}
        line += f", OpenCV {len(det.detect(img, None))} keypoints"
    kp_s, _ = surf(img)
    line += f"; cvcore SURF {len(kp_s)} keypoints"
    print(line)
    import numba
    default = numba.get_num_threads(), (cv2.getNumThreads() if cv2 is not None else None)
    # the table at Numba's default thread count and at one thread, OpenCV on the same count
    for threads in sorted({default[0], 1}, reverse=True):
        numba.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(threads)
        print(f"\n== threads: {threads} (Numba and OpenCV); wall clock, ratio = reference / cvcore")
        rows = [Row("sift detect+describe 640x478", cvcore=lambda: sift(img), refs=ref or {},
                    repeats=9),
                Row("surf detect+describe 640x478", cvcore=lambda: surf(img),
                    refs={"cvcore sift": lambda: sift(img)}, repeats=9),
                Row("u-surf detect+describe 640x478", cvcore=lambda: surf(img, upright=True),
                    refs={"cvcore sift": lambda: sift(img)}, repeats=9)]
        print_table(run_interleaved(rows, memory=False))   # calls interleaved: fair under load
    numba.set_num_threads(default[0])
    if cv2 is not None:
        cv2.setNumThreads(default[1])
    print()
    if cv2 is not None:
        # The same work on one thread each, timed as process CPU time: a figure that other
        # processes competing for the cores disturb much less than wall-clock time.
        import numba
        threads = numba.get_num_threads(), cv2.getNumThreads()
        numba.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            ours, theirs = _cpu_medians(lambda: sift(img), lambda: det.detectAndCompute(img, None))
        finally:
            numba.set_num_threads(threads[0])
            cv2.setNumThreads(threads[1])
        print(f"one thread each, CPU time (interleaved, median of 9): cvcore {1e3 * ours:.1f} ms, "
              f"OpenCV {1e3 * theirs:.1f} ms, ratio OpenCV/cvcore {theirs / ours:.2f}")
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        # interleaved (SIFT, SURF, SURF-128, U-SURF) x 9: a load change hits all four alike
        fns = (lambda: sift(img), lambda: surf(img), lambda: surf(img, extended=True),
               lambda: surf(img, upright=True))
        times = [[] for _ in fns]
        for fn in fns:
            fn()
        for _ in range(9):
            for fn, t in zip(fns, times):
                t0 = time.process_time()
                fn()
                t.append(time.process_time() - t0)
        ours, s64, s128, up = (statistics.median(t) for t in times)
    finally:
        numba.set_num_threads(before)
    print(f"one thread, CPU time (interleaved, median of 9): cvcore SIFT {1e3 * ours:.1f} ms, "
          f"SURF {1e3 * s64:.1f} ms ({ours / s64:.2f}x faster), SURF-128 {1e3 * s128:.1f} ms "
          f"({ours / s128:.2f}x faster), U-SURF {1e3 * up:.1f} ms ({ours / up:.2f}x faster)")


def _cpu_medians(*fns, repeats: int = 9):
    """Median process CPU time of each of ``fns``, called in turn ``repeats`` times (interleaved:
    a change of load hits them alike)."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.process_time()
            fn()
            t.append(time.process_time() - t0)
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="graf only")
    parser.add_argument("--sequences", nargs="*", default=None)
    parser.add_argument("--sift-only", action="store_true", help="no SURF rows")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the speed rows on the 640x480 photo (no Oxford evaluation)")
    args = parser.parse_args(argv)
    if args.speed_only:
        print(machine_line())
        print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
        speed_row()
        return 0
    if not (DATA / "oxford-affine").exists():
        print(f"Oxford sequences not found under {DATA}; set CVCORE_DATASETS", file=sys.stderr)
        return 1
    print(machine_line())
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    cv2 = optional("cv2")
    detectors = {"cvcore": cvcore_detector()}
    if cv2 is not None:
        detectors["opencv"] = opencv_detector(cv2)
        print(f"OpenCV {cv2.__version__}")
    if not args.sift_only:
        detectors["surf"] = surf_detector()
        detectors["surf-any"] = surf_detector(signs=False)
        detectors["surf-128"] = surf_detector(extended=True)
        detectors["u-surf"] = surf_detector(upright=True)
        mahotas_surf = optional("mahotas.features.surf")
        if mahotas_surf is not None:
            import mahotas
            detectors["mahotas"] = mahotas_detector(mahotas_surf)
            print(f"mahotas {mahotas.__version__} (SURF)")
    seqs = args.sequences or (["graf"] if args.quick else list(SEQUENCES))
    results = {}
    for name in seqs:
        results[name] = evaluate(name, detectors)
        print(f"  evaluated {name}", flush=True)
    print_quality(results)
    print()
    speed_row()
    return 0


if __name__ == "__main__":
    sys.exit(main())
