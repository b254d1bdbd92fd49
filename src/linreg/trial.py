"""One `python train.py` as a user runs it, measured from outside: what the benchmarks time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def train_run(overrides: list[str], device: str, checkout: Path) -> tuple[float, float, Any, dict]:
    """(wall seconds, peak RSS in MB, the run's config, metrics.json) of one `python train.py` in a
    subprocess; its run folder is removed afterwards."""
    from linreg.runs import load_run_config

    run_dir = Path(tempfile.mkdtemp(prefix="linreg-bench-run-"))
    command = [
        sys.executable, str(checkout / "train.py"), *overrides,
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    try:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"{' '.join(command)} failed (status {status})")
        summary = json.loads((run_dir / "metrics.json").read_text())
        return seconds, usage.ru_maxrss / 1024, load_run_config(run_dir), summary
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def optimizer_options(checkout: Path) -> list[str]:
    """The `optimizer=<name>` options the checkout ships."""
    return sorted(path.stem for path in (checkout / "conf" / "optimizer").glob("*.yaml"))
