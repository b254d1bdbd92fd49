"""Screenshots of TensorBoard in a real browser, for docs/inspection.md: a default run and a
two-optimizer sweep, each tab that tells their story, rendered by headless Chromium.

    python scripts/screenshots.py            # writes docs/images/tensorboard-*.png

It trains both in a scratch folder, serves each with TensorBoard and lets Chromium render the
page (TensorBoard is a JavaScript application: only a browser shows what a reader sees). Without
Chromium it says so and exits 1; the tests check the data TensorBoard serves either way.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WINDOW = "1400,1000"
# (image name, what is trained, the tab): the run's story, the summary, the sweep's comparison.
SHOTS = (
    ("tensorboard-run-custom-scalars", "run", "custom_scalars"),
    ("tensorboard-run-text", "run", "text"),
    ("tensorboard-sweep-hparams", "sweep", "hparams"),
)
# Trained in a scratch folder as a user trains: the run in outputs/ (TensorBoard names it by its
# folder, `train/runs/synthetic-linear-sgd_<time>`), the sweep in a folder of its own.
TRAIN = {
    "run": [],
    "sweep": ["-m", "optimizer=sgd,adam", "trainer.max_epochs=3", "hydra.sweep.dir={folder}"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, body: dict[str, object] | None = None) -> object:
    """TensorBoard's JSON at `url` (a POST of `body` where given)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve_tensorboard(logdir: Path) -> Iterator[str]:
    """TensorBoard over `logdir` in its own process; yields its address once it lists runs. It
    runs in the folder above and is given the folder's name: the page shows that, not a path."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir.name,
         "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        cwd=logdir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if fetch(f"{base}/data/runs"):
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tensorboard did not start on {logdir}")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(chromium: str, url: str, image: Path) -> None:
    """The page at `url` as Chromium renders it, after its scripts have had 15 s to draw."""
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WINDOW}", "--virtual-time-budget=15000", f"--screenshot={image}", url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def main() -> None:
    chromium = browser()
    if chromium is None:
        print(
            "no Chromium found (looked for " + ", ".join(BROWSERS) + "): install it, e.g. "
            "apt-get install chromium, to take the screenshots",
            file=sys.stderr,
        )
        sys.exit(1)
    with tempfile.TemporaryDirectory(prefix="linreg-screenshots-") as scratch:
        folders = {"run": Path(scratch) / "outputs", "sweep": Path(scratch) / "sweep"}
        for kind, args in TRAIN.items():
            command = [arg.format(folder=folders[kind]) for arg in args]
            subprocess.run([sys.executable, str(ROOT / "train.py"), *command], cwd=scratch,
                           check=True, capture_output=True)  # fmt: skip
        for name, kind, tab in SHOTS:
            with serve_tensorboard(folders[kind]) as base:
                screenshot(chromium, f"{base}/#{tab}", IMAGES / f"{name}.png")
            print(f"written: {(IMAGES / f'{name}.png').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
