"""The benchmark runs every path and writes its table (figures are printed, never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, options

PATHS = (
    "hand-written, randperm + gather per batch",
    "hand-written, contiguous slices (floor)",
    "Lightning, TensorDataset + DataLoader(shuffle)",
    "Lightning bare: project loader, no callbacks/logger",
    "project, model.steps_per_execution=1 (one step per Lightning step)",
    "project (train.py defaults: 16 steps per execution)",
)


@pytest.mark.slow
def test_bench_times_every_path_and_writes_a_markdown_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    args = ["--rows", "20000", "--features", "4", "--batch-sizes", "512", "2048",
            "--repeats", "1", "--out", str(out)]  # fmt: skip
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "linreg.bench", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not list(scratch.glob("linreg-*"))  # no run folders left behind
    output = result.stdout + result.stderr
    for chatter in ("Tip", "GPU available", "Trainable params", "Warning", "warn", "epoch 1/1"):
        assert chatter not in output  # figures only
    rows = [
        line.split(" | ") for line in out.read_text().splitlines() if line[:3] in ("| 5", "| 2")
    ]
    assert [(r[0], r[1]) for r in rows] == [(f"| {b}", p) for b in (512, 2048) for p in PATHS]
    assert all(r[3] == "1.00x |" for r in rows if r[1] == PATHS[0])
    assert all(float(r[2]) > 0 for r in rows)
    assert "Closed-form least squares on the same rows" in out.read_text()


def table_rows(args: list[str], tmp_path: Path) -> list[list[str]]:
    """The body rows of the table that `python -m linreg.bench *args` writes, split into cells;
    the runs it made in the temporary folder are gone."""
    out = tmp_path / "bench.md"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "linreg.bench", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr
    assert not list(scratch.glob("linreg-*"))
    lines = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    return [line.strip("| ").split(" | ") for line in lines[1:] if not line.startswith("|---")]


@pytest.mark.slow
def test_streaming_bench_reports_memory_and_accuracy_of_a_real_run(tmp_path: Path) -> None:
    ((rows, size, seconds, peak_mb, test_mse, reference),) = table_rows(
        ["--streaming-rows", "1e6"], tmp_path
    )
    assert (rows, size) == ("1e+06", "0.07 GB")
    assert float(seconds) > 0 and 100 < float(peak_mb) < 1000
    assert float(test_mse) <= 1.01 * float(reference)  # one epoch of 1e6 rows is enough


@pytest.mark.slow
def test_accuracy_table_shows_every_optimizer_within_1_percent_of_least_squares(
    tmp_path: Path,
) -> None:
    rows = table_rows(["--accuracy"], tmp_path)
    assert [row[0] for row in rows] == options("optimizer")
    for optimizer, _, test_mse, reference, gap, _ in rows:
        assert float(test_mse) <= 1.01 * float(reference), optimizer
        assert gap.endswith("%")


@pytest.mark.slow
def test_tables_bench_reads_csv_and_parquet_in_memory_and_streamed(tmp_path: Path) -> None:
    rows = table_rows(["--tables", "3e4"], tmp_path)
    assert [(row[1], row[2]) for row in rows] == [
        ("CSV file", "in memory"),
        ("CSV file", "streamed"),
        ("Parquet file", "in memory"),
        ("Parquet file", "streamed"),
        ("synthetic", "streamed"),
        ("Parquet, a text column", "in memory"),  # the same table with a text column
        ("Parquet, a text column", "streamed"),
    ]
    for _, _, _, rate, seconds, peak_mb in rows:
        assert float(rate.replace(",", "")) > 0 and float(seconds) > 0
        assert 100 < float(peak_mb) < 2000


@pytest.mark.slow
def test_convergence_cells_stay_within_the_bound_on_few_epochs_and_ill_conditioned_data() -> None:
    from linreg.convergence import BOUND, cells

    # 500 rows, with 256 features or not: 350 training rows, once 20 steps in 5 epochs (Adam,
    # +45,979 %), then cut into batches of 9 rows (256 features: +647,703 %).
    shapes = ["4,000 rows", "1e6 rows", "correlation 0.99", "target scale 1e4", "500 rows",
              "256 features, 500 rows"]  # fmt: skip
    optimizers = ("sgd", "adam", "lbfgs")
    found = list(cells(shapes, [5], optimizers, "cpu", ROOT))
    assert [(c.shape, c.optimizer) for c in found] == [
        (shape, optimizer) for shape in shapes for optimizer in optimizers
    ]
    for cell in found:
        assert abs(cell.gap) < BOUND, cell
        assert cell.fit_seconds > 0 and 1 <= cell.epochs_run <= 5


@pytest.mark.slow
def test_the_scikit_learn_comparison_scores_every_tool_on_the_same_rows() -> None:
    pytest.importorskip("sklearn", reason="the bench extra: make setup-bench")
    from linreg.convergence import against_scikit_learn

    table = against_scikit_learn(20_000, 8, "cpu", ROOT)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| linreg")
            or line.startswith("| scikit-learn")]  # fmt: skip
    assert len(rows) == 3
    gaps = [float(row[2].rstrip("%")) / 100 for row in rows]
    assert abs(gaps[0]) < 0.01  # linreg's defaults
    assert abs(gaps[2]) < 1e-5  # LinearRegression is least squares: the rows are the same


def test_the_scale_tables_least_squares_is_numpys_and_its_rows_are_the_stated_model() -> None:
    import numpy as np

    from linreg.scale import NOISE_STD, closed_form, generated

    x, y = generated(3000, 5, torch.device("cpu"))
    again, _ = generated(3000, 5, torch.device("cpu"))
    assert torch.equal(x, again)  # seeded: every run measures the same table
    _, mse, weight, bias = closed_form(x, y)
    design = np.hstack([x.double().numpy(), np.ones((3000, 1))])
    solution, residuals, *_ = np.linalg.lstsq(design, y.double().numpy(), rcond=None)
    np.testing.assert_allclose(weight.numpy()[0], solution[:5, 0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(bias.numpy(), solution[5], rtol=1e-9, atol=1e-10)
    assert mse == pytest.approx(residuals[0] / 3000, rel=1e-6)
    assert mse == pytest.approx(NOISE_STD**2, rel=0.1)  # the noise, nothing else, is left


@pytest.mark.slow
def test_scale_bench_reports_bandwidth_and_time_to_least_squares(tmp_path: Path) -> None:
    args = ["--scale", "--scale-rows", "200000", "--features", "8",
            "--batch-sizes", "1024", "65536", "--budget", "20",
            "--scale-parquet-rows", "100000"]  # fmt: skip
    table = table_rows(args, tmp_path)
    rows, streamed = table[:2], table[3:]  # the second table's header between them
    report = (tmp_path / "bench.md").read_text()
    bandwidth = re.search(r"copy bandwidth of the device: ([\d.]+) GB/s", report)
    assert bandwidth and float(bandwidth.group(1)) > 0
    closed = re.search(r"float64 moments on the device\): [\d.]+ s, MSE ([\d.]+) ", report)
    assert closed and float(closed.group(1)) == pytest.approx(0.25, rel=0.05)  # the noise
    assert [row[0] for row in rows] == ["1024", "65536"]
    for _, epoch_s, rows_per_s, read, share, outcome in rows:
        rate = float(rows_per_s.replace(",", ""))
        assert abs(rate * float(epoch_s) - 200_000) <= rate * 0.0005 + 1  # epoch_s to 3 decimals
        assert float(read) >= 0 and share.endswith("%")
        # Decorrelated unit-scale features: plain SGD gets there within the budget.
        assert re.fullmatch(r"[\d.]+ s of epochs", outcome), outcome
    # The Parquet table streamed onto the device: read alone, then trained on.
    assert [row[0] for row in streamed] == [
        "the training split read alone",
        "`train.py data.streaming=true`, fit (one epoch and its validation)",
    ]
    assert all(float(row[2].replace(",", "")) > 0 for row in streamed)
    verdict = re.search(r"\n(Reading|Training) bounds the streamed epoch \(the fit took "
                        r"([\d.]+) reads of the file; it makes 2\)", report)  # fmt: skip
    assert verdict, report
    assert (verdict.group(1) == "Reading") == (float(verdict.group(2)) <= 2.5)
