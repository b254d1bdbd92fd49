"""Regenerate the figures and sample outputs the docs quote, so they are measured, never typed.

    python scripts/refresh_docs.py           # rewrite them all (run on an idle machine)
    python scripts/refresh_docs.py --check   # exit 1 where a quoted output no longer matches
    python scripts/refresh_docs.py --suite   # also run the default test suite and quote its end
    python scripts/refresh_docs.py --transcripts-only   # only the command transcripts (quick)

What it writes, between markers in README.md and docs/*.md:
- `<!-- begin: default-run -->`: the default run's console output with its median wall time;
- `<!-- begin: transcript -->`: a text block of `$ command` lines, each followed by what it prints
  (stdout and stderr); every transcript's commands run in order in one scratch folder, as a
  reader who follows the docs would;
- `<!-- begin: suite -->`: the last line of `python -m pytest` and how long it took (`--suite`);
and the report of `python train.py -m experiment=optimizer_comparison` to
docs/images/optimizer_comparison.png. `--check` reruns the default run and every transcript and
compares everything but times, dates and this machine's memory (tests/test_docs.py runs it).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
IMAGE = ROOT / "docs" / "images" / "optimizer_comparison.png"
# What the docs' commands use from the project, linked into a scratch folder.
LINKED = ("train.py", "eval.py", "predict.py", "conf", "examples", "scripts", "docs", ".venv")


def marked(name: str) -> re.Pattern[str]:
    """A block between `<!-- begin: NAME ... -->` and `<!-- end: NAME -->`: group 2 is its body."""
    return re.compile(rf"(<!-- begin: {name}\b[^\n]*-->\n)(.*?)(<!-- end: {name} -->)", re.S)


DEFAULT_RUN, TRANSCRIPT, SUITE = marked("default-run"), marked("transcript"), marked("suite")
# What differs from run to run and machine to machine: times, run-folder dates, memory.
VARYING = [
    (re.compile(r"\d+(\.\d+)? s\b"), "_ s"),
    (re.compile(r"\(median of \d+ runs, "), "("),
    (re.compile(r"\| [\d.]+ \|  \|$", re.M), "| _ |  |"),  # a sweep report's wall_time_s
    (re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+"), "<time>"),
    (re.compile(r"this machine has [\d.]+ GB"), "this machine has _ GB"),
]


def masked(text: str) -> str:
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


def scratch_folder(root: Path) -> dict[str, str]:
    """Links the project into `root`; the environment the commands run in (.venv first)."""
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "COLUMNS": "100"}


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
        output = output.replace(
            f"{scratch}/{run}", "outputs/train/runs/synthetic-linear-sgd_<time>"
        )
    cores = os.cpu_count()
    median = f"median of {runs} runs, " if runs > 1 else ""
    command = (
        f"$ python train.py     # {statistics.median(times):.1f} s wall ({median}{cores} cores)"
    )
    return f"```text\n{command}\n{output.rstrip()}\n```\n"


def commands_of(transcript: str) -> list[str]:
    """The `$ command` lines of a transcript block, in order."""
    return [line[2:] for line in transcript.splitlines() if line.startswith("$ ")]


def transcript_block(commands: list[str], scratch: Path, env: dict[str, str]) -> str:
    """Each command followed by what it prints, run in `scratch`."""
    lines = []
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=scratch, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        output = (result.stdout + result.stderr).replace(f"{scratch}/", "").rstrip()
        lines += [f"$ {command}", *([output] if output else [])]
    return "```text\n" + "\n".join(lines) + "\n```\n"


def refresh(
    pattern: re.Pattern[str], make: Callable[[str], str], check: bool, problems: list[str]
) -> None:
    """Rewrites every block `pattern` finds in the docs with `make(old body)`; with `check`, lists
    the ones whose output differs (times, dates and memory aside) instead."""
    for document in DOCUMENTS:
        text = document.read_text()
        pieces, end = [], 0
        for found in pattern.finditer(text):
            new = make(found.group(2))
            if check and masked(new) != masked(found.group(2)):
                line = text[: found.start()].count("\n") + 1
                problems.append(f"{document.relative_to(ROOT)}:{line}\n--- quoted\n"
                                f"{found.group(2)}--- today\n{new}")  # fmt: skip
            pieces += [text[end : found.start(2)], new]
            end = found.end(2)
        if pieces and not check:
            document.write_text("".join(pieces) + text[end:])


def suite_block(_: str) -> str:
    return suite_quote()


@functools.cache  # one run of the suite for every document that quotes it
def suite_quote() -> str:
    """The last line of `make test` (in parallel: pytest-xdist leaves the deselected count out of
    it), the slow tests it deselects, and how long it took."""
    started = time.perf_counter()
    result = subprocess.run(
        ["make", "--no-print-directory", "test", "ARGS=-q -p no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    last = result.stdout.strip().splitlines()[-1].strip("= ")
    last = re.sub(r"(, \d+ warnings?)? in [\d.]+s.*", "", last)
    return f"`{last}` ({collected()[2]} slow tests deselected) in {minutes:.0f} minutes on " \
           f"{os.cpu_count()} cores\n"  # fmt: skip


def collected() -> tuple[int, int, int]:
    """The default suite's tests, all tests, and the slow ones it deselects, as pytest collects."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    last = result.stdout.strip().splitlines()[-1]
    found = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected", last)
    selected, total, deselected = map(int, found.groups())
    return selected, total, deselected


def sweep_report() -> None:
    with tempfile.TemporaryDirectory(prefix="linreg-docs-") as scratch:
        sweep_dir = Path(scratch) / IMAGE.stem  # the picture's title names the sweep's folder
        train(["-m", "experiment=optimizer_comparison", f"hydra.sweep.dir={sweep_dir}"])
        shutil.copyfile(sweep_dir / "report.png", IMAGE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting")
    parser.add_argument("--suite", action="store_true", help="also quote the default suite")
    parser.add_argument("--transcripts-only", action="store_true", help="only the transcripts")
    args = parser.parse_args()
    problems: list[str] = []
    runs = 1 if args.check else 5
    if not args.transcripts_only:
        refresh(DEFAULT_RUN, lambda _: default_run_block(runs), args.check, problems)
    with tempfile.TemporaryDirectory(prefix="linreg-docs-") as folder:
        scratch = Path(folder)
        env = scratch_folder(scratch)
        refresh(TRANSCRIPT, lambda old: transcript_block(commands_of(old), scratch, env),
                args.check, problems)  # fmt: skip
    if args.suite:
        refresh(SUITE, suite_block, args.check, problems)
    if args.check:
        if problems:
            sys.exit("error: quoted output differs from today's (python scripts/refresh_docs.py "
                     "rewrites it):\n" + "\n".join(problems))  # fmt: skip
        print("every quoted output matches a fresh run (times aside)")
        return
    if args.transcripts_only:
        return
    sweep_report()
    print(f"written: the docs' quoted outputs and {IMAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
