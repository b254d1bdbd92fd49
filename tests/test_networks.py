"""The network seam end to end: `model=mlp` trains, tests, exports, verifies, predicts and sweeps
through the same code as the linear default, and the linear-only outputs step aside for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import FAST, QUIET, run_cli

from linreg.models.mlp import MLP
from linreg.models.network import network_from_checkpoint
from linreg.runs import load_checkpoint


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    run_dir = tmp_path_factory.mktemp("mlp") / "run"
    # The shipped SGD step is too large for a ReLU network on raw-scale targets (it dies to a
    # constant); Adam with a small step trains it.
    mlp = ["model=mlp", "model.net.hidden_sizes=[32,16]", "optimizer=adam", "optimizer.lr=0.01"]
    result = run_cli([*FAST, *mlp], run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), result.stdout


@pytest.mark.slow
def test_the_mlp_trains_close_to_least_squares_and_records_why_params_are_absent(
    mlp_run: tuple[Path, dict, str],
) -> None:
    _, summary, stdout = mlp_run
    metrics = summary["metrics"]
    assert summary["status"] == "completed"
    assert summary["network"] == "mlp"
    # Linear data: a ReLU network can only approximate the plane, but it gets close.
    assert metrics["test/mse"] < 1.5 * metrics["reference/test_mse"]
    assert metrics["test/r2"] > 0.99
    assert not any(name.startswith("params/") for name in metrics)
    assert summary["coefficients"] is None
    note = "coefficients and params/* not computed: the mlp network has no coefficients"
    assert summary["notes"] == [note]
    assert note in stdout
    assert "the mlp network has no coefficients" in stdout  # said once, when the fit starts
    assert "params/weight_error (relative)" not in stdout  # and no summary row


def test_the_mlp_checkpoint_rebuilds_its_layers_and_onnx_agrees(
    mlp_run: tuple[Path, dict, str],
) -> None:
    run_dir, summary, _ = mlp_run
    best = run_dir / summary["paths"]["best_checkpoint"]
    network = network_from_checkpoint(load_checkpoint(best), best)
    assert isinstance(network, MLP)
    assert [layer.out_features for layer in network.layers if hasattr(layer, "out_features")] == [
        32,
        16,
        1,
    ]
    assert summary["metrics"]["export/max_abs_diff"] <= 1e-5
    features = (3 + 5 * np.random.default_rng(1).standard_normal((13, 8))).astype(np.float32)
    session = onnxruntime.InferenceSession(str(run_dir / "model.onnx"))
    (served,) = session.run(None, {"features": features})
    with torch.no_grad():
        expected = network(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", ["run folder", "checkpoint"])
def test_predict_serves_the_mlp_from_its_onnx_file_and_its_checkpoint(
    mlp_run: tuple[Path, dict, str], tmp_path: Path, model: str
) -> None:
    run_dir, summary, _ = mlp_run
    best = run_dir / summary["paths"]["best_checkpoint"]
    features = (3 + 5 * np.random.default_rng(2).standard_normal((9, 8))).astype(np.float32)
    np.savetxt(tmp_path / "rows.csv", features, delimiter=",")
    source = run_dir if model == "run folder" else best
    result = run_cli(
        [f"model={source}", f"input={tmp_path / 'rows.csv'}", f"output={tmp_path / 'out.csv'}"],
        None,
        script="predict.py",
    )
    assert result.returncode == 0, result.stderr
    predicted = np.loadtxt(tmp_path / "out.csv", delimiter=",", ndmin=2)
    with torch.no_grad():
        expected = network_from_checkpoint(load_checkpoint(best), best)(torch.from_numpy(features))
    np.testing.assert_allclose(predicted, expected.numpy(), atol=1e-4, rtol=1e-5)


@pytest.mark.slow
def test_a_sweep_over_networks_runs_and_ranks_both(tmp_path: Path) -> None:
    result = run_cli(
        ["-m", "model=linear,mlp", "optimizer=adam", "data.n_samples=2000", "trainer.max_epochs=2",
         "logger=none",
         *QUIET, f"hydra.sweep.dir={tmp_path}"],
        None,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summaries = [
        json.loads((tmp_path / job / "metrics.json").read_text()) for job in ("linear", "mlp")
    ]
    assert [s["network"] for s in summaries] == ["linear", "mlp"]
    assert all(s["status"] == "completed" for s in summaries)
    assert "params/weight_error" in summaries[0]["metrics"]
    report = (tmp_path / "report.md").read_text()
    assert "model=linear" in report and "model=mlp" in report


def test_an_mlp_option_of_the_wrong_type_is_one_line_naming_the_key(tmp_path: Path) -> None:
    result = run_cli([*FAST, "model=mlp", "model.net.hidden_sizes=wide"], tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.startswith("error: model.net.hidden_sizes")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
