"""ONNX export: one self-contained file, any batch size, checked with onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import ROOT

from linreg.errors import ExportError
from linreg.models.linear import LinearRegressor
from linreg.serve.export import export_model, verify_model
from linreg.serve.onnx_model import traced_graph


@pytest.fixture
def regressor() -> LinearRegressor:
    torch.manual_seed(0)
    model = LinearRegressor(6, 2)
    model.standardize.fit_(torch.randn(300, 6) * 5 + 3)
    return model


def test_onnx_matches_torch_on_unseen_batch_size(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_model(regressor, tmp_path / "model.onnx", opset=20)
    features = torch.randn(37, 6) * 5 + 3
    max_abs_diff = verify_model(path, regressor, features, atol=1e-5, rtol=0)
    assert max_abs_diff <= 1e-5

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(None, {"features": features[:5].numpy()})
    assert outputs.shape == (5, 2)


def test_onnx_file_is_self_contained_with_a_dynamic_batch_axis(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_model(regressor, tmp_path / "model.onnx", opset=20)
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
    path = export_model(regressor, tmp_path / "model.onnx", opset=20)
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
        export_model(regressor, tmp_path / "model.onnx", opset=20)
    assert not (tmp_path / "model.onnx").exists()


def test_verify_fails_loudly_when_onnx_and_torch_disagree(
    regressor: LinearRegressor, tmp_path: Path
) -> None:
    path = export_model(regressor, tmp_path / "model.onnx", opset=20)
    with torch.no_grad():
        regressor.linear.bias += 1e-3
    with pytest.raises(
        ExportError, match=r"disagrees with PyTorch on 37 rows: max abs diff 0\.001"
    ):
        verify_model(path, regressor, torch.randn(37, 6), atol=1e-5, rtol=1e-6)


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
    path = export_model(regressor.eval(), tmp_path / "model.onnx", opset=20)
    assert verify_model(path, regressor, features, atol=1e-5, rtol=1e-6) < 0.01
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
    path = export_model(regressor, tmp_path / "model.onnx", **export.options.onnx)
    rows = features[:37]
    scale = regressor(rows).abs().max().item()
    assert 0 <= verify_model(path, regressor, rows, export.atol, export.rtol) < 1e-5 * scale
    with torch.no_grad():
        regressor.linear.weight[0, 0] += 1e-2
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        verify_model(path, regressor, rows, export.atol, export.rtol)


def test_the_linear_network_is_written_as_the_graph_the_exporter_traces(tmp_path: Path) -> None:
    # The default network skips the exporter (about 1 s): its six nodes are written directly.
    # They must stay what torch.export traces from LinearRegressor.forward, weights included.
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(500, 5, generator=generator) @ torch.randn(5, 5, generator=generator)
    regressor = LinearRegressor(5, 2)
    regressor.fit_standardization(features * 40 + 900, torch.randn(500, 2, generator=generator))
    with torch.no_grad():
        regressor.linear.bias.copy_(torch.tensor([0.3, -2.0]))  # the exporter drops a zero bias
    regressor.eval()
    written = onnx.load(str(export_model(regressor, tmp_path / "model.onnx", opset=20)))
    traced = traced_graph(regressor, opset=20)

    def nodes(model: onnx.ModelProto) -> list[tuple[str, list[str]]]:
        return [(node.op_type, list(node.input)[1:]) for node in model.graph.node]

    def weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
        return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}

    assert nodes(written) == nodes(traced)
    assert [node.op_type for node in written.graph.node] == [
        "Sub", "Div", "MatMul", "Gemm", "Mul", "Add"]  # fmt: skip
    assert weights(written).keys() == weights(traced).keys()
    for name, value in weights(traced).items():
        np.testing.assert_array_equal(weights(written)[name], value, err_msg=name)
    assert written.opset_import[0].version == 20
    rows = (features[:9] * 40 + 900).numpy()
    outputs = [
        onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"features": rows})[0]
        for model in (written, traced)
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], regressor(torch.from_numpy(rows)).detach(), rtol=1e-5)


def test_a_network_that_is_not_linear_goes_through_the_exporter(tmp_path: Path) -> None:
    from linreg.models.mlp import MLP

    torch.manual_seed(0)
    mlp = MLP(4, 1, hidden_sizes=[8]).eval()
    model = onnx.load(str(export_model(mlp, tmp_path / "model.onnx", opset=20)))
    assert model.producer_name == "pytorch"
    assert "Relu" in {node.op_type for node in model.graph.node}
    features = torch.randn(11, 4)
    assert verify_model(tmp_path / "model.onnx", mlp, features, atol=1e-6, rtol=0) < 1e-6


@pytest.mark.parametrize("network", ["linear", "mlp"])
def test_a_float64_network_is_exported_and_served_in_float64_on_either_path(
    tmp_path: Path, network: str
) -> None:
    # Under trainer.precision=64-true: the linear network's own writer and the exporter alike.
    from linreg.models.mlp import MLP
    from linreg.serve.formats import load_predictor

    torch.manual_seed(0)
    model = LinearRegressor(3, 2) if network == "linear" else MLP(3, 2, hidden_sizes=[8])
    features = torch.randn(200, 3, dtype=torch.float64) * 1e3 + 1e6  # digits float32 lacks
    model.double().fit_standardization(features, features[:, :2] * 7)
    model.eval()
    path = export_model(model, tmp_path / "model.onnx", opset=20)
    (model_input,) = onnx.load(str(path)).graph.input
    assert model_input.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert verify_model(path, model, features[:37], atol=1e-12, rtol=0) <= 1e-12
    predictor = load_predictor(path)
    assert predictor.dtype == np.float64
    served = predictor.predict(features[:5].numpy())
    assert served.dtype == np.float64
    np.testing.assert_allclose(served, model(features[:5]).detach().numpy(), rtol=1e-15)


@pytest.mark.parametrize(
    ("filename", "options", "message"),
    [
        ("model.pt2", {}, "export.filename=model.pt2: no model format ends in '.pt2'; "
                          "linreg reads .onnx, .ckpt, .pt, .pth"),
        ("model.ckpt", {}, "export.filename=model.ckpt: a run does not export .ckpt files; "
                           "it exports .onnx"),
        ("model.onnx", {"onnx": {"opset": 20, "dynamic": True}},
         "export.options.onnx: .onnx files got an unexpected keyword argument 'dynamic'; they "
         "take opset"),
    ],
)  # fmt: skip
def test_an_export_no_format_can_write_is_refused_before_any_work(
    filename: str, options: dict, message: str
) -> None:
    from linreg.serve.formats import ModelFileError, check_export

    with pytest.raises(ModelFileError) as info:
        check_export(filename, options)
    assert str(info.value) == message


def test_a_new_format_is_its_module_and_one_registry_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tests/plugins/npz_model.py and one line of FORMATS: a run exports to it and verifies the
    # file, its record names the file, and predict.py serves the run folder through it.
    from conftest import FAST, compose_config

    from linreg.run.pipeline import train
    from linreg.serve import formats
    from linreg.serve.predict import PredictArgs, predict

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    monkeypatch.setitem(formats.FORMATS, ".npz", "npz_model")
    run_dir = tmp_path / "run"
    cfg = compose_config([*FAST, "logger=none", "export.filename=model.npz"],
                         run_dir)  # fmt: skip
    train(cfg)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["paths"]["model"] == "model.npz"
    assert 0 <= summary["metrics"]["export/max_abs_diff"] <= 1e-4
    rows = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "predicted.npy"
    assert predict(PredictArgs(str(run_dir), str(tmp_path / "rows.npy"), str(out))) == 5
    with np.load(run_dir / "model.npz") as archive:
        expected = rows @ archive["weight"].T + archive["bias"]
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)
