"""ONNX export: one self-contained file, any batch size, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import ROOT

from linreg.errors import ExportError
from linreg.models.linear import LinearRegressor
from linreg.serve.export import export_onnx, verify_onnx


@pytest.fixture
def regressor() -> LinearRegressor:
    torch.manual_seed(0)
    model = LinearRegressor(6, 2)
    model.standardize.fit_(torch.randn(300, 6) * 5 + 3)
    return model


def test_onnx_matches_torch_on_unseen_batch_size(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_onnx(regressor, tmp_path / "model.onnx", opset=20)
    features = torch.randn(37, 6) * 5 + 3
    max_abs_diff = verify_onnx(path, regressor, features, atol=1e-5, rtol=0)
    assert max_abs_diff <= 1e-5

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {"features": features[:5].numpy()})
    assert outputs.shape == (5, 2)


def test_onnx_file_is_self_contained_with_a_dynamic_batch_axis(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_onnx(regressor, tmp_path / "model.onnx", opset=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    graph = onnx.load(str(path)).graph
    (model_input,) = graph.input
    dims = model_input.type.tensor_type.shape.dim
    assert model_input.name == "features"
    assert dims[0].dim_param and not dims[0].dim_value
    assert dims[1].dim_value == 6
    assert [out.name for out in graph.output] == ["predictions"]


def test_onnx_takes_raw_features_because_standardisation_is_inside(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_onnx(regressor, tmp_path / "model.onnx", opset=20)
    raw = torch.full((1, 6), 100.0)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {"features": raw.numpy()})
    weight, bias = regressor.coefficients()
    torch.testing.assert_close(
        torch.from_numpy(outputs), raw @ weight.T + bias, rtol=1e-5, atol=1e-4
    )


def test_export_refuses_non_finite_weights(regressor: LinearRegressor, tmp_path: Path) -> None:
    with torch.no_grad():
        regressor.linear.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="non-finite weights"):
        export_onnx(regressor, tmp_path / "model.onnx", opset=20)
    assert not (tmp_path / "model.onnx").exists()


def test_verify_fails_loudly_when_onnx_and_torch_disagree(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_onnx(regressor, tmp_path / "model.onnx", opset=20)
    with torch.no_grad():
        regressor.linear.bias += 1e-3
    with pytest.raises(
        ExportError, match=r"disagrees with PyTorch on 37 rows: max abs diff 0\.001"
    ):
        verify_onnx(path, regressor, torch.randn(37, 6), atol=1e-5, rtol=1e-6)


def test_onnx_agrees_with_torch_on_raw_values_far_from_zero(tmp_path: Path) -> None:
    # Longley's fit: a year column times 1829 and an intercept of -3.5 million cancel to about
    # 65,000. Folded into one float32 sum, PyTorch and onnxruntime lose different digits (0.1
    # apart); standardising first, as evaluation and export do, keeps them together.
    table = np.genfromtxt(ROOT / "examples" / "longley.csv", delimiter=",", skip_header=1)
    features = torch.tensor(table[:, 1:], dtype=torch.float32)
    regressor = LinearRegressor(6, 1)
    regressor.standardize.fit_(features)
    raw_weight = torch.tensor([[15.06, -0.0358, -2.02, -1.033, -0.0511, 1829.15]])
    with torch.no_grad():
        regressor.linear.weight.copy_(raw_weight * regressor.standardize.std)
        regressor.linear.bias.copy_(-3482258.6 + raw_weight @ regressor.standardize.mean)
    path = export_onnx(regressor.eval(), tmp_path / "model.onnx", opset=20)
    assert verify_onnx(path, regressor, features, atol=1e-5, rtol=1e-6) < 0.01
    predicted = regressor(features)[:, 0]
    torch.testing.assert_close(predicted, torch.tensor(table[:, 0], dtype=torch.float32),
                               atol=1000, rtol=0)  # fmt: skip


def test_a_wide_correlated_model_passes_the_default_check_and_a_wrong_one_still_fails(
    tmp_path: Path,
) -> None:
    # 256 correlated features folded through the decorrelation: onnxruntime's and PyTorch's
    # float32 sums round differently by a few 1e-6 of the outputs' scale, a wrong weight by far
    # more. Found by the docs: a 64-feature, 3-target run failed the old per-row check.
    from omegaconf import OmegaConf

    export = OmegaConf.load(ROOT / "conf" / "train.yaml").export
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(2000, 1, generator=generator)
    features = 3.0 * (0.9 * shared + 0.4 * torch.randn(2000, 256, generator=generator)) + 7.0
    regressor = LinearRegressor(256, 3)
    targets = features @ torch.randn(256, 3, generator=generator)
    regressor.fit_standardization(features, targets)
    with torch.no_grad():
        regressor.linear.weight.copy_(torch.randn(3, 256, generator=generator))
    regressor.eval()
    path = export_onnx(regressor, tmp_path / "model.onnx", opset=export.opset)
    rows = features[:37]
    scale = regressor(rows).abs().max().item()
    assert 0 < verify_onnx(path, regressor, rows, export.atol, export.rtol) < 1e-5 * scale
    with torch.no_grad():
        regressor.linear.weight[0, 0] += 1e-2
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        verify_onnx(path, regressor, rows, export.atol, export.rtol)
