"""eval.py: a saved checkpoint scores exactly what its run recorded at training time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.mark.first_case_by_default
@pytest.mark.parametrize("target", ["run folder", "best checkpoint file"])
def test_eval_reproduces_the_training_time_test_metrics(
    trained_run: Path, tmp_path: Path, target: str
) -> None:
    recorded = json.loads((trained_run / "metrics.json").read_text())
    ckpt = (
        trained_run
        if target == "run folder"
        else trained_run / recorded["paths"]["best_checkpoint"]
    )
    result = run_cli([f"ckpt_path={ckpt}"], tmp_path / "eval", script="eval.py")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    test_metrics = {k: v for k, v in recorded["metrics"].items() if k.startswith("test/")}
    assert evaluated["metrics"] == test_metrics
    assert evaluated["checkpoint"] == str(trained_run / recorded["paths"]["best_checkpoint"])
    # A table, like train's summary: no timestamped log lines.
    row = re.search(r"^│ test/mse +│ +(\S+) │$", result.stdout, re.M)
    assert row and row.group(1) == f"{test_metrics['test/mse']:.6g}"
    assert "[INFO]" not in result.stdout + result.stderr
    assert f"metrics.json     {tmp_path / 'eval' / 'metrics.json'}" in result.stdout


@pytest.mark.slow
def test_eval_of_a_missing_path_is_one_line(tmp_path: Path) -> None:
    result = run_cli([f"ckpt_path={tmp_path / 'nope'}"], tmp_path / "eval", script="eval.py")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: ckpt_path={tmp_path / 'nope'}: no such file or folder"


@pytest.mark.slow
def test_eval_without_ckpt_path_says_it_is_required(tmp_path: Path) -> None:
    result = run_cli([], tmp_path / "eval", script="eval.py")
    assert result.returncode == 1
    assert "error: ckpt_path is required" in result.stderr
