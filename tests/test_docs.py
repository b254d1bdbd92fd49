"""The documentation runs as written: every `bash` and `python` block of README.md and docs/,
in order, in one scratch folder (as a reader who follows the README and then the pages would),
with the environment activated. A block that cannot run here is marked on the line before it with
`<!-- not run: <why> -->`; the README's quoted default-run output matches a fresh run."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from refresh_docs import DOCUMENTS, SUITE, collected, scratch_folder

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")


@dataclass
class Block:
    document: Path
    line: int
    language: str
    code: str
    skipped_because: str | None

    def __str__(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    text = document.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        found.append(Block(document, text[: match.start()].count("\n") + 1, match.group(1),
                           match.group(2), reason.group(1) if reason else None))  # fmt: skip
    return found


def runnable() -> list[Block]:
    return [b for d in DOCUMENTS for b in blocks(d) if b.language in ("bash", "python")]


def test_every_block_that_is_not_run_says_why_and_the_rest_are_shell_or_python() -> None:
    every = [b for d in DOCUMENTS for b in blocks(d)]
    assert len(runnable()) >= 15
    for block in every:
        assert block.language in ("bash", "python", "text", ""), f"{block}: {block.language}"
        if block.skipped_because is not None:
            assert len(block.skipped_because) > 10, f"{block}: say why it is not run"
    # The README stays short enough to read in ten minutes.
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.slow
def test_every_shell_block_and_python_snippet_in_the_docs_runs_as_written(
    tmp_path: Path,
) -> None:
    env = scratch_folder(tmp_path)
    for block in runnable():
        if block.skipped_because is not None:
            continue
        command = (
            ["bash", "-e", "-o", "pipefail", "-c", block.code]
            if block.language == "bash"
            else [sys.executable, "-c", block.code]
        )
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{block} failed:\n{block.code}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_every_quoted_output_is_what_a_fresh_run_prints() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/refresh_docs.py", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_quoted_size_of_the_default_suite_is_the_collected_one() -> None:
    selected, _, deselected = collected()
    for document in DOCUMENTS:
        for quoted in SUITE.finditer(document.read_text()):
            counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", quoted.group(2)))
            ran = counts["passed"] + counts.get("skipped", 0) + counts.get("failed", 0)
            assert (ran, counts["slow"]) == (selected, deselected), document
