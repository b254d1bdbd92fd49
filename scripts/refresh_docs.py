"""Regenerate the figures the README quotes, so they are measured, never typed.

    python scripts/refresh_docs.py           # rewrite them (run on an idle machine)
    python scripts/refresh_docs.py --check   # exit 1 if the README's sample no longer matches

Writes the default run's console output (with its wall time) between the README's
`<!-- begin: default-run -->` and `<!-- end: default-run -->` markers, and the report of
`python train.py -m experiment=optimizer_comparison` to docs/images/optimizer_comparison.png.
`--check` reruns the default run once and compares everything but the times.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
IMAGE = ROOT / "docs" / "images" / "optimizer_comparison.png"
BLOCK = re.compile(r"(<!-- begin: default-run[^\n]*-->\n)(.*?)(<!-- end: default-run -->)", re.S)
TIMES = re.compile(r"\d+(\.\d+)? s\b")


def train(args: list[str]) -> tuple[str, float]:
    """`python train.py ARGS` from the project root: its console output and wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"error: python train.py {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout, time.perf_counter() - started


def default_run_block(runs: int) -> str:
    """The default run's output, with the median wall time of `runs` runs (one is noisy)."""
    times = []
    with tempfile.TemporaryDirectory(prefix="linreg-docs-") as scratch:
        for run in range(runs):
            output, seconds = train([f"hydra.run.dir={scratch}/{run}"])
            times.append(seconds)
        output = output.replace(f"{scratch}/{run}", "outputs/train/runs/<time>")
    cores = os.cpu_count()
    median = f"median of {runs} runs, " if runs > 1 else ""
    command = (
        f"$ python train.py     # {statistics.median(times):.1f} s wall ({median}{cores} cores)"
    )
    return f"```text\n{command}\n{output.rstrip()}\n```\n"


def _output_only(block: str) -> str:
    """The block without its command line (the wall time) and with every time masked."""
    return TIMES.sub("_ s", block.split("\n", 2)[2])


def sweep_report() -> None:
    with tempfile.TemporaryDirectory(prefix="linreg-docs-") as scratch:
        train(["-m", "experiment=optimizer_comparison", f"hydra.sweep.dir={scratch}"])
        shutil.copyfile(Path(scratch) / "report.png", IMAGE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    check = parser.parse_args().check
    readme = README.read_text()
    found = BLOCK.search(readme)
    if found is None:
        sys.exit("error: README.md has no default-run markers")
    block = default_run_block(runs=1 if check else 5)
    if check:
        if _output_only(found.group(2)) != _output_only(block):
            sys.exit("error: README.md's default-run output differs from a fresh run's: run "
                     "python scripts/refresh_docs.py")  # fmt: skip
        print("README.md's default-run output matches a fresh run (times aside)")
        return
    README.write_text(readme[: found.start(2)] + block + readme[found.end(2) :])
    sweep_report()
    print(f"written: {README.relative_to(ROOT)}, {IMAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
