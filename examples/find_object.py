"""Find an object in a cluttered scene with SIFT, matching and RANSAC (Lowe 2004, sec. 7).

    python examples/find_object.py [--out find_object.png]

Detects keypoints in ``box.pgm`` (the object) and ``scene.pgm`` (where it appears among other
things), matches descriptors (ratio test 0.8 and mutual check), fits a homography by RANSAC and
draws the matches (inliers green, outliers red) and the box's outline projected into the scene.
Needs the shared test images (``../shared/datasets/test-images`` or ``$CVCORE_DATASETS``).
"""
import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cvcore.features import draw_keypoints, draw_matches, draw_outline, sift  # noqa: E402
from cvcore.io import imread  # noqa: E402
from cvcore.match import match_descriptors, ransac_homography  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="find_object.png")
    args = parser.parse_args()
    box = imread(DATA / "test-images" / "box.pgm", mode="gray")
    scene = imread(DATA / "test-images" / "scene.pgm", mode="gray")

    kp_box, d_box = sift(box)
    kp_scene, d_scene = sift(scene)
    matches = match_descriptors(d_box, d_scene, ratio=0.8, cross_check=True)
    print(f"keypoints: box {len(kp_box)}, scene {len(kp_scene)}; matches {len(matches)}")
    result = None
    if len(matches) >= 4:
        result = ransac_homography(kp_box.xy[matches[:, 0]], kp_scene.xy[matches[:, 1]],
                                   threshold=3.0, seed=0)
    fig, axes = plt.subplots(2, 1, figsize=(11, 10), gridspec_kw={"height_ratios": [1, 2]})
    draw_keypoints(box, kp_box, ax=axes[0], max_keypoints=150)
    axes[0].set_title(f"box.pgm: the 150 strongest of {len(kp_box)} keypoints (size, angle)")
    draw_matches(box, scene, kp_box.xy, kp_scene.xy, matches,
                 inliers=None if result is None else result.inliers, ax=axes[1], max_matches=None)
    if result is None:
        axes[1].set_title("no homography found")
        print("no homography found")
    else:
        draw_outline(result.model, box.shape, axes[1], offset=(box.shape[1], 0))
        axes[1].set_title(f"{int(result.inliers.sum())} of {len(matches)} matches agree with one "
                          "homography; the box's outline in the scene")
        print(f"homography inliers: {int(result.inliers.sum())} of {len(matches)}")
        print("H =\n", result.model.round(4))
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
