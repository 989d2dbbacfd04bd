"""
From a folder of photos to a served model, in six steps
=======================================================

The six steps of a recognition project, on real photos: the *hymenoptera* data set (ants and
bees, about 120 photos of each to train on, 150 more held out; from the PyTorch transfer-learning
tutorial) where it is present in ``../shared/datasets``, else the Fashion-MNIST subset that ships
inside cvcore, written out as a folder of image files so that the commands are the same.

1. acquire the photos and check them and their labels;
2. preprocess and augment them;
3. compare three models: HOG + linear SVM, a ResNet-20 from scratch, a pre-trained
   EfficientNet-Lite0;
4. tune the best on a validation split;
5. evaluate it once on held-out photos, and save its weights;
6. serve it over HTTP and measure its throughput.

Every ``$ cvcore ...`` line below was run while this page was built, in a fresh folder, and what
follows it is what it printed: the page cannot drift from the command line. To run it yourself,
from the root of the repository::

    python docs/tutorial/six_steps.py          # writes into ./cvcore-tutorial

(``CVCORE_TUTORIAL_DIR`` chooses the folder; ``CVCORE_TUTORIAL_QUICK=1`` runs every step on a
few photos per class, which is what the test suite does.)
"""

# %%
# Setting up
# ----------
# The commands run in a working folder; :func:`cvcore_command` runs ``cvcore`` there as a
# separate process, exactly as you would type it, prints the command and its output, and stops
# this script if the command fails.
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def find_repository() -> Path:
    """The root of the cvcore tree this script belongs to (the folder holding ``cvcore/``)."""
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "cvcore" / "__init__.py").is_file():
            return folder
    import cvcore                      # installed: use the installed package's tree
    return Path(cvcore.__file__).resolve().parents[1]


ROOT = find_repository()
sys.path.insert(0, str(ROOT))
QUICK = os.environ.get("CVCORE_TUTORIAL_QUICK", "") not in ("", "0")
WORK = Path(os.environ.get("CVCORE_TUTORIAL_DIR", "cvcore-tutorial")).resolve()
DATASETS = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def cvcore_command(*args: str, quiet_lines: int = 40) -> str:
    """Run ``cvcore ARGS`` in the working folder; print the command and (the end of) its output."""
    print("$ cvcore " + " ".join(shlex.quote(str(a)) for a in args))
    done = subprocess.run([sys.executable, "-m", "cvcore.cli", *map(str, args)], cwd=WORK,
                          env=ENV, capture_output=True, text=True)
    # progress bars redraw one line with carriage returns: keep what was left on screen
    lines = [line.rsplit("\r", 1)[-1] for line in (done.stderr + done.stdout).splitlines()]
    lines = [line for line in lines if line.strip()]
    if len(lines) > quiet_lines:
        print(f"[... {len(lines) - quiet_lines} lines ...]")
    print("\n".join(lines[-quiet_lines:]))
    if done.returncode != 0:
        raise SystemExit(f"cvcore {args[0]} failed with exit status {done.returncode}")
    return done.stdout


def last_json(output: str) -> dict:
    """The JSON line that ``--json`` prints last."""
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def show_picture(path: Path, title: str, width: float = 9.0) -> None:
    """Show a PNG that a cvcore command wrote (so the page shows what the command made)."""
    picture = plt.imread(path)
    height = width * picture.shape[0] / picture.shape[1]
    fig, ax = plt.subplots(figsize=(width, height))
    ax.imshow(picture)
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()


for made in ("data", "runs"):                   # the folders this script makes, from scratch
    shutil.rmtree(WORK / made, ignore_errors=True)
WORK.mkdir(parents=True, exist_ok=True)
print(f"working folder: {WORK.name}/" + ("  (quick run: a few photos per class)" if QUICK else ""))

# %%
# Step 1: acquire the photos, check them and their labels
# --------------------------------------------------------
# The photos are a folder per class under ``train/`` and ``val/``. Choosing between models on
# the photos we report at the end would flatter the winner, so the 150 photos of ``val/`` are
# cut in two, alternately per class: ``select/test`` to compare and tune models on, and
# ``final/test`` that is looked at once, in step 5. Both folders share the training photos.


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def write_embedded_photos(target: Path, per_class: int) -> dict:
    """The embedded Fashion-MNIST subset as PNG files: ``target/<split>/<class>/<i>.png``."""
    from PIL import Image

    from cvcore.io import load_embedded
    data = load_embedded()
    splits = {"train": (data.x_train, data.y_train), "val": (data.x_test, data.y_test)}
    for split, (x, y) in splits.items():
        for k, name in enumerate(data.class_names[:3]):      # three classes keep it short
            folder = target / split / name.replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            for i, index in enumerate(np.flatnonzero(y == k)[:per_class[split]]):
                Image.fromarray(x[index]).save(folder / f"{i:04d}.png")
    return {split: target / split for split in splits}


source = DATASETS / "hymenoptera"
if (source / "train").is_dir() and (source / "val").is_dir():
    splits = {"train": source / "train", "val": source / "val"}
    print(f"photos: {source}")
else:
    counts = {"train": 8, "val": 8} if QUICK else {"train": 150, "val": 60}
    splits = write_embedded_photos(WORK / "data" / "embedded", counts)
    print(f"no hymenoptera under {DATASETS}: using the embedded Fashion-MNIST subset instead")

per_class_limit = 6 if QUICK else None
for class_dir in sorted(p for p in splits["train"].iterdir() if p.is_dir()):
    train_files = image_files(class_dir)[:per_class_limit]
    val_files = image_files(splits["val"] / class_dir.name)[:None if per_class_limit is None
                                                               else 2 * per_class_limit]
    for view, test_files in (("select", val_files[0::2]), ("final", val_files[1::2])):
        for split, files in (("train", train_files), ("test", test_files)):
            folder = WORK / "data" / view / split / class_dir.name
            folder.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, folder / f.name)

# %%
# ``cvcore check`` reports the class balance, duplicate files (within and across splits: a
# photo both trained and tested on inflates the score) and files that cannot be read.
cvcore_command("check", "data/select")

# %%
# A wrong label teaches the model the wrong thing and makes the test score lie. ``check
# --labels`` trains a HOG + linear SVM in folds, scores every training photo with a model that
# did not see it, and lists the photos whose given label has an unusually low probability
# (confident learning, Northcutt et al. 2021); the contact sheet shows them.
FOLDS = 2 if QUICK else 5
cvcore_command("check", "data/select", "--labels", "--size", 64, 64, "--folds", FOLDS,
               "--out", "runs/label-check", "--top", 5)
sheet = WORK / "runs" / "label-check" / "label_issues.png"
if sheet.is_file():
    show_picture(sheet, "the training photos whose label looks most doubtful")

# %%
# Read the out-of-fold accuracy before the list: confident learning is only as good as the
# model's probabilities. When the model is barely better than a coin, as HOG + SVM is on these
# photos (step 3), its suspects say more about the model than about the labels; ``--model``
# chooses a stronger model for the folds.

# %%
# Step 2: preprocess and augment
# ------------------------------
# Photos come in every size; each model sees them resized to the size given by ``--size`` (64 x
# 64 for HOG, 32 x 32 for the small ResNet, and for EfficientNet-Lite0 the view its ImageNet
# weights were trained with: shorter side 256, centre 224 x 224, ImageNet's mean and spread).
# During training the CNNs see each photo flipped and shifted at random
# (:mod:`cvcore.augment`, seeded: batch ``(seed, epoch, step)`` always gets the same draw).
# Here is what a batch looks like before and after, made with the same transforms:
from cvcore.augment import ColorJitter, Compose, RandomAffine, RandomCrop, RandomHorizontalFlip
from cvcore.io import load_image_folder, to_nchw

data = load_image_folder(WORK / "data" / "select", size=(96, 96))
print(data)
batch = to_nchw(data.x_train[np.linspace(0, len(data.x_train) - 1, 6).astype(int)])
augment = Compose([RandomCrop(96, padding=12), RandomHorizontalFlip(),
                   RandomAffine(degrees=15, scale=(0.9, 1.1)),
                   ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)], seed=0)
views = [batch] + [augment(batch, seed=(0, epoch, 0)) for epoch in range(2)]
fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
for row, (images, name) in enumerate(zip(views, ["photo", "epoch 0", "epoch 1"])):
    for ax, image in zip(axes[row], images):
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1).squeeze(), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(name)
fig.suptitle("the same six photos as two epochs of training see them")
fig.tight_layout()

# %%
# Step 3: compare three models
# ----------------------------
# Each ``cvcore train`` fits one model on ``select/train`` and scores it on ``select/test``.
# HOG + linear SVM (Dalal & Triggs 2005) is the classical baseline; a ResNet-20 (He et al.
# 2016) learns its own features from scratch, which needs far more than a few hundred photos;
# EfficientNet-Lite0 brings features learnt on ImageNet, and only a new last layer is trained on
# them (``--freeze backbone``).
EPOCHS = 1 if QUICK else 10
runs = {
    "hog-svm": ["--model", "hog-svm", "--size", 64, 64],
    "resnet20": ["--model", "resnet20", "--size", 32, 32, "--epochs", EPOCHS],
    "efficientnet-lite0": ["--model", "efficientnet-lite0", "--pretrained", "imagenet",
                           "--size", 224, 224, "--freeze", "backbone"],
}
scores = {}
for name, options in runs.items():
    out = cvcore_command("train", "--data", "data/select", *options, "--out", f"runs/{name}",
                         "--json", quiet_lines=6)
    scores[name] = last_json(out)["accuracy"]

fig, ax = plt.subplots(figsize=(6, 2.4))
ax.barh(list(scores), list(scores.values()), color=["#8c8c8c", "#8c8c8c", "#8c8c8c"])
for y, value in enumerate(scores.values()):
    ax.text(value + 0.01, y, f"{value:.3f}", va="center")
ax.set_xlim(0, 1.1)
ax.set_xlabel("accuracy on select/test")
ax.invert_yaxis()
fig.tight_layout()
best = max(scores, key=scores.get)
print(f"best: {best} ({scores[best]:.3f})")

# %%
# Step 4: tune the best
# ---------------------
# One setting of the winner is varied and each value is scored on ``select/test``, still
# never on ``final/test``. For EfficientNet-Lite0 it is the learning rate of the new last layer:
# its features, extracted once by the backbone, are cached in the run's ``features.npz`` (keyed by
# the weights and the images), so each try takes seconds. For the others it is the SVM's ``C`` or
# the ResNet's learning rate.
grids = {"efficientnet-lite0": ("--head-lr", [0.01, 0.2]),
         "hog-svm": ("--C", [0.001, 0.01, 0.03]),
         "resnet20": ("--lr", [0.05, 0.4])}
option, values = grids[best]
if QUICK:
    values = values[:1]
tried = {"default": (scores[best], WORK / "runs" / best)}
for value in values:
    out_dir = WORK / "runs" / f"{best}-{option.lstrip('-')}-{value}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if (WORK / "runs" / best / "features.npz").is_file():
        shutil.copy2(WORK / "runs" / best / "features.npz", out_dir / "features.npz")
    out = cvcore_command("train", "--data", "data/select", *runs[best], option, value,
                         "--out", out_dir.relative_to(WORK), "--json", quiet_lines=4)
    tried[f"{option} {value}"] = (last_json(out)["accuracy"], out_dir)
chosen = max(tried, key=lambda k: tried[k][0])     # ties keep the default (first)
best_dir = tried[chosen][1]
for setting, (accuracy, _) in tried.items():
    print(f"{best} {setting:>16}: {accuracy:.3f}" + ("   <- chosen" if setting == chosen else ""))

# %%
# Step 5: evaluate on held-out photos, save the weights
# -----------------------------------------------------
# The chosen model meets ``final/test`` once. ``cvcore eval`` writes the same report as
# training did: accuracy, per-class precision and recall, calibration, the confusion matrix.
final = WORK / "runs" / "final"
out = cvcore_command("eval", best_dir.relative_to(WORK) / "model.npz", "--data", "data/final",
                     "--out", final.relative_to(WORK), "--json", quiet_lines=8)
held_out = last_json(out)
show_picture(final / "confusion.png", f"{best} on final/test: accuracy {held_out['accuracy']:.3f}",
             width=5)

# %%
# The weights are saved already: ``cvcore train`` wrote ``model.npz`` (atomically: a stopped run
# never leaves half a file), with the class names, the input view and the calibration
# temperature. It is a plain NumPy archive, readable without cvcore:
weights = best_dir / "model.npz"
with np.load(weights, allow_pickle=False) as archive:
    print(f"{weights.relative_to(WORK)}: {weights.stat().st_size / 1e6:.1f} MB, "
          f"{len(archive.files)} arrays")
photo = image_files(next(p for p in sorted((WORK / "data" / "final" / "test").iterdir())))[0]
cvcore_command("predict", photo.relative_to(WORK), "--weights", weights.relative_to(WORK),
               "--top", 2)

# %%
# Step 6: serve the model and measure its throughput
# --------------------------------------------------
# ``cvcore serve`` loads the weights, compiles and warms the model, and answers
# ``POST /v1/models/<name>/predict`` with the same classes and probabilities as ``cvcore
# predict``. Requests that arrive within a few milliseconds of each other run as one forward pass
# (dynamic batching), which is what makes many clients at once cheaper per photo than one.
import httpx  # noqa: E402  (the serve extra's HTTP client)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
command = ["serve", weights.relative_to(WORK), "--port", port, "--log-level", "warning"]
print("$ cvcore " + " ".join(map(str, command)) + " &")
server = subprocess.Popen([sys.executable, "-m", "cvcore.cli", *map(str, command)], cwd=WORK,
                          env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
base = f"http://127.0.0.1:{port}"
model_name = weights.parent.name
photos = [p.read_bytes() for folder in sorted((WORK / "data" / "final" / "test").iterdir())
          for p in image_files(folder)]
try:
    started = time.perf_counter()
    while True:
        if server.poll() is not None:
            raise SystemExit("cvcore serve stopped: " + server.stderr.read()[-2000:])
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.perf_counter() - started > 600:
            raise SystemExit("cvcore serve was not ready after 600 s")
        time.sleep(0.5)
    print(f"ready after {time.perf_counter() - started:.1f} s (loading, compiling, warming)")
    answer = httpx.post(f"{base}/v1/models/{model_name}/predict",
                        files={"file": ("photo.jpg", photos[0])}, timeout=60).json()
    print(json.dumps(answer, indent=1)[:400])

    def load(concurrency: int, requests: int) -> tuple[float, np.ndarray]:
        """``requests`` predictions from ``concurrency`` clients at once: (photos/s, latencies)."""
        latencies, lock = [], threading.Lock()

        def client(k):
            with httpx.Client(timeout=120) as http:
                for i in range(k, requests, concurrency):
                    t0 = time.perf_counter()
                    reply = http.post(f"{base}/v1/models/{model_name}/predict",
                                      files={"file": ("p.jpg", photos[i % len(photos)])})
                    reply.raise_for_status()
                    with lock:
                        latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return requests / (time.perf_counter() - t0), np.array(latencies) * 1000

    REQUESTS = 16 if QUICK else 96
    print(f"{'clients':>8} {'photos/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for concurrency in (1, 8):
        rate, ms = load(concurrency, REQUESTS)
        assert len(ms) == REQUESTS
        print(f"{concurrency:>8} {rate:>9.1f} {np.percentile(ms, 50):>8.0f} "
              f"{np.percentile(ms, 95):>8.0f}")
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    print("\n".join(line for line in metrics.splitlines()
                    if line.startswith("cvcore_batch_size_") and "_bucket" not in line))
finally:
    server.terminate()
    server.wait(timeout=30)

# %%
# The figures depend on the machine and on what else runs on it (this page's build shares its
# machine); ``python -m benchmarks.serve`` measures the server properly, beside a PyTorch
# server on the same model. The whole page took the time printed at its end to run.
