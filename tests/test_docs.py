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

import lightning.pytorch
import lightning.pytorch.core.optimizer
import pytest
import torch
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


def commands(block: Block) -> set[str]:
    """The block's lines without their comments: what runs."""
    return {line.split("  #")[0].strip() for line in block.code.splitlines()} - {""}


def test_the_chinese_pages_commands_are_the_english_pages_which_run() -> None:
    english = [b for d in DOCUMENTS if "zh" not in d.parts for b in blocks(d)]
    known = set().union(*(commands(b) for b in english))
    chinese = [b for d in DOCUMENTS if "zh" in d.parts for b in blocks(d)]
    # From set-up to predictions on one's own table, and the tools between.
    shown = " ".join(line for block in chinese for line in commands(block))
    for step in (
        "make train",
        "make test",
        "data=table",
        "eval.py",
        "predict.py",
        "-m ",
        "tensorboard",
    ):
        assert step in shown, step
    for block in chinese:
        assert block.skipped_because.startswith("与英文页面中的命令相同"), block
        assert commands(block) <= known, f"{block}: {commands(block) - known}"


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


# What the docs name must exist where they say: a file path (`src/linreg/batches.py`), a symbol in
# a file ("`Standardize` in `src/linreg/models/network.py`", "`path` 中的 `Symbol`", "`path`
# (`symbol`)") and a method of a class (`RegressionModule.configure_optimizers`).
REPO_PATH = re.compile(r"`((?:src|conf|scripts|tests|docs|examples|requirements)/[\w./*-]*"
                       r"|[\w-]+\.py)`")  # fmt: skip
SYMBOL_IN_FILE = [
    re.compile(r"`(?P<symbol>[A-Za-z_][\w.]*)` in `(?P<path>[\w/.-]+(?:\.py|/))`"),
    re.compile(r"`(?P<path>[\w/.-]+(?:\.py|/))` ?中的 ?`(?P<symbol>[A-Za-z_][\w.]*)`"),
    re.compile(r"`(?P<path>[\w/.-]+(?:\.py|/))` ?[\uff08(]`(?P<symbol>[A-Za-z_]\w*)`"),  # either (
]
METHOD = re.compile(r"`(?P<cls>[A-Z]\w+)\.(?P<method>[a-z_]\w*)`")
LIBRARIES = [torch, lightning.pytorch, lightning.pytorch.core.optimizer]  # whose classes docs name


def defines(source: str, symbol: str) -> bool:
    """Whether Python source defines `symbol` (a name, or Class.method) at any level."""
    *owner, name = symbol.split(".")
    if owner and not re.search(rf"^\s*class {re.escape(owner[-1])}\b", source, re.M):
        return False
    return bool(re.search(rf"^\s*(?:class|def) {re.escape(name)}\b|^{re.escape(name)}\s*[:=]",
                          source, re.M))  # fmt: skip


def test_every_file_and_symbol_the_docs_name_exists_where_they_say() -> None:
    sources = {path: path.read_text() for path in (ROOT / "src").rglob("*.py")}
    missing = []
    for document in DOCUMENTS:
        text, where = document.read_text(), document.relative_to(ROOT)
        for path in REPO_PATH.findall(text):
            found = list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()
            if not found and not (document.parent / path).exists():
                missing.append(f"{where}: no file {path}")
        for pattern in SYMBOL_IN_FILE:
            for match in pattern.finditer(text):
                named = ROOT / match["path"]  # a file, or a folder: a file in it
                files = named.rglob("*.py") if named.is_dir() else [named] * named.exists()
                if not any(defines(file.read_text(), match["symbol"]) for file in files):
                    missing.append(f"{where}: no {match['symbol']} in {match['path']}")
        for match in METHOD.finditer(text):
            symbol = f"{match['cls']}.{match['method']}"
            if not any(defines(source, symbol) for source in sources.values()) and not any(
                hasattr(getattr(module, match["cls"], None), match["method"])
                for module in LIBRARIES
            ):
                missing.append(f"{where}: no {symbol} in src/ or {[m.__name__ for m in LIBRARIES]}")
    assert not missing, "\n".join(missing)
