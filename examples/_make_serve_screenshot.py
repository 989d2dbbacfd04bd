"""A screenshot of the ``cvcore serve`` page: train a HOG + linear SVM on the embedded
Fashion-MNIST subset, serve it, open the page in Debian's headless Chromium, upload a test image
and save what the browser shows (the README's ``docs/serve-page.png``).

Not part of the documentation's gallery (only ``plot_*.py`` scripts are): it needs a browser
and a server.

    python examples/_make_serve_screenshot.py [--out docs/serve-page.png]

Needs the serve extra, Playwright for Python and ``/usr/bin/chromium`` (never a browser download).
"""
import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from cvcore.io.datasets import load_embedded
from cvcore.train.pipeline import train_hog_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "serve-page.png"))
    ap.add_argument("--image", type=int, default=7, help="index of the Fashion-MNIST test image")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    data = load_embedded()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "fashion-hog-svm" / "model.npz"
        model.parent.mkdir()
        train_hog_model("hog-svm", data.x_train, data.y_train, data.class_names,
                        log=lambda *a: None).save(model)
        photo = tmp / "test-image.png"
        Image.fromarray(np.asarray(data.x_test[args.image])).resize((112, 112),
                                                                   Image.NEAREST).save(photo)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "cvcore.cli", "serve", str(model),
                                   "--port", str(port), "--log-level", "warning"], cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1060, "height": 520})
                page.goto(url)
                page.wait_for_selector("body[data-ready=true]")
                page.set_input_files("#file", str(photo))
                page.wait_for_selector("body[data-done=true]")
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
