"""Double precision end to end: under `trainer.precision=64-true` a table is read, trained,
checkpointed, exported, verified and predicted in float64, and L-BFGS reaches the digits NIST
certifies (float32 stays the default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import QUIET, ROOT, compose_config, run_cli
from nist_strd import (
    LONGLEY_ESTIMATES,
    THROUGH_ORIGIN,
    WITH_INTERCEPT,
    CertifiedThroughOrigin,
    correct_digits,
)

from linreg.data.table import TableSource
from linreg.diagnostics.reference import CentredMoments, least_squares, moments_least_squares
from linreg.errors import ConfigError

ALL_ROWS = ("data.train_fraction=1", "data.val_fraction=0", "data.test_fraction=0")
LONGLEY = ("data=table", "data.path=examples/longley.csv", "data.target=TOTEMP")
# The worst coefficient's correct digits against NIST's certified values, trained with
# `optimizer=lbfgs` on every row (docs/your-own-data.md states them). float32 holds about 7
# digits of the data and loses more to these designs' conditioning; Filip's tenth-degree
# polynomial has directions of near-zero variance that no gradient method resolves.
TRAINED_DIGITS = {
    "32-true": {"Norris": 2.9, "Pontius": 3.9, "Filip": 0, "Wampler1": 0, "Wampler2": 3.8,
                "Wampler3": 0, "Wampler4": 0, "Wampler5": 0, "Longley": 3.3},
    "64-true": {"Norris": 12.8, "Pontius": 13.2, "Filip": 0, "Wampler1": 9.3, "Wampler2": 12.8,
                "Wampler3": 8.7, "Wampler4": 8.2, "Wampler5": 6.4, "Longley": 11.4},
}  # fmt: skip


def trained_coefficients(run_dir: Path, header: list[str], target: str) -> list[float]:
    """The trained intercept, then the coefficients in the file's column order."""
    (coefficients,) = json.loads((run_dir / "metrics.json").read_text())["coefficients"].values()
    names = ["(intercept)", *(name for name in header if name != target)]
    return [coefficients[name]["trained"] for name in names]


def test_a_table_is_read_as_float64_under_double_precision_and_its_reference_reads_it_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.csv"  # integers float32 rounds: 2**24 + 1 and up
    path.write_text("x,y\n" + "".join(f"{16_777_217 + 2 * i},{i}\n" for i in range(20)))
    single = TableSource(str(path), "y", None, None, "error", (1.0, 0.0, 0.0), seed=0)
    double = TableSource(str(path), "y", None, None, "error", (1.0, 0.0, 0.0), seed=0,
                         precision="64-true")  # fmt: skip
    features, _ = double.load()["train"]
    assert features.dtype == torch.float64 and features[0, 0].item() == 16_777_217
    assert single.load()["train"][0][0, 0].item() == 16_777_216
    assert double.full_precision("train") is None  # the served rows are the file's own
    assert single.full_precision("train") is not None


def test_a_value_beyond_float32_is_named_with_the_way_out_and_read_in_double_precision(
    tmp_path: Path,
) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("x,y\n" + "".join(f"{i}e300,{i}\n" for i in range(1, 9)))
    with pytest.raises(ConfigError) as info:
        TableSource(str(path), "y", None, None, "error", (1.0, 0.0, 0.0), seed=0).load()
    assert str(info.value) == (
        f"data.path={path}: row 1 (line 2), column 'x' is inf, not a finite float32 number (or "
        "a number beyond float32's 3.4e38, which trainer.precision=64-true reads)"
    )
    double = TableSource(str(path), "y", None, None, "error", (1.0, 0.0, 0.0), seed=0,
                         precision="64-true")  # fmt: skip
    assert double.load()["train"][0][:, 0].tolist() == [float(f"{i}e300") for i in range(1, 9)]


def test_a_double_precision_run_trains_exports_and_predicts_in_float64(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trained = run_cli([*QUIET, *LONGLEY, *ALL_ROWS, "optimizer=lbfgs",
                       "trainer.precision=64-true"], run_dir)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    header = (ROOT / "examples" / "longley.csv").read_text().split("\n")[0].split(",")
    digits = list(map(correct_digits, trained_coefficients(run_dir, header, "TOTEMP"),
                      LONGLEY_ESTIMATES))  # fmt: skip
    assert min(digits) >= 10, digits  # float32 training gets about 2
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert {value.dtype for value in checkpoint["state_dict"].values()} == {torch.float64}
    (model_input,) = onnx.load(str(run_dir / "model.onnx")).graph.input
    assert model_input.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["metrics"]["export/max_abs_diff"] < 1e-6  # of outputs near 65,000

    predicted = {}
    for model, output in (("model.onnx", "onnx.npy"), ("checkpoints/last.ckpt", "ckpt.csv")):
        result = run_cli([f"model={run_dir / model}", "input=examples/longley.csv",
                          f"output={tmp_path / output}"], None, script="predict.py")  # fmt: skip
        assert result.returncode == 0, result.stderr
    predicted["onnx"] = np.load(tmp_path / "onnx.npy")
    assert predicted["onnx"].dtype == np.float64 and predicted["onnx"].shape == (16, 1)
    lines = (tmp_path / "ckpt.csv").read_text().splitlines()
    assert lines[0] == "TOTEMP" and len(lines) == 17
    predicted["ckpt"] = np.array([[float(line)] for line in lines[1:]])
    # 17 significant digits give a float64 back exactly: both files agree to its rounding.
    np.testing.assert_allclose(predicted["ckpt"], predicted["onnx"], rtol=1e-13, atol=0)
    table = np.genfromtxt(ROOT / "examples" / "longley.csv", delimiter=",", skip_header=1)
    certified = LONGLEY_ESTIMATES[0] + table[:, 1:] @ np.array(LONGLEY_ESTIMATES[1:])
    np.testing.assert_allclose(predicted["onnx"][:, 0], certified, rtol=1e-9)

    evaluated = run_cli([f"ckpt_path={run_dir}"], tmp_path / "eval", script="eval.py")
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert scored["test/mse"] == pytest.approx(summary["metrics"]["test/mse"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("precision", sorted(TRAINED_DIGITS))
def test_lbfgs_reaches_the_stated_digits_of_every_nist_set_at_each_precision(
    precision: str, tmp_path: Path
) -> None:
    from linreg.run.pipeline import train

    tables = [(c.name, c.write_csv(tmp_path / f"{c.name}.csv"), "y", c.estimates)
              for c in WITH_INTERCEPT]  # fmt: skip
    tables.append(("Longley", ROOT / "examples" / "longley.csv", "TOTEMP", LONGLEY_ESTIMATES))
    reached = {}
    for name, path, target, certified in tables:
        run_dir = tmp_path / name
        train(compose_config(["data=table", f"data.path={path}", f"data.target={target}",
                              *ALL_ROWS, "optimizer=lbfgs", f"trainer.precision={precision}",
                              "logger=none", *QUIET], run_dir))  # fmt: skip
        header = path.read_text().split("\n")[0].split(",")
        estimates = trained_coefficients(run_dir, header, target)
        reached[name] = round(max(0.0, min(map(correct_digits, estimates, certified))), 1)
    stated = TRAINED_DIGITS[precision]
    assert all(reached[name] >= stated[name] - 0.5 for name in stated), (reached, stated)


@pytest.mark.parametrize("case", THROUGH_ORIGIN, ids=lambda case: case.name)
def test_the_reference_through_the_origin_has_nist_certified_values(
    case: CertifiedThroughOrigin,
) -> None:
    x = torch.tensor(case.x, dtype=torch.float64)[:, None]
    y = torch.tensor(case.y, dtype=torch.float64)[:, None]
    moments = CentredMoments(centre=False)
    moments.add(x, y)
    # Exact (rational, the table is small) and from the plain moments (any table): both NIST's.
    for fit in (least_squares([(x, y)], intercept=False), moments_least_squares(moments)):
        assert correct_digits(fit.weight.item(), case.estimate) >= 14
        assert correct_digits(fit.weight_se.item(), case.standard_error) >= 12
        assert fit.bias.item() == 0 and fit.bias_se is None and not fit.intercept
    with_intercept = least_squares([(x, y)])
    assert correct_digits(with_intercept.weight.item(), case.estimate) < 2  # another model


@pytest.mark.parametrize("case", THROUGH_ORIGIN, ids=lambda case: case.name)
def test_a_model_through_the_origin_trains_exports_evaluates_and_predicts(
    tmp_path: Path, case: CertifiedThroughOrigin
) -> None:
    run_dir = tmp_path / "run"
    table = case.write_csv(tmp_path / f"{case.name}.csv")
    trained = run_cli([*QUIET, "data=table", f"data.path={table}", "data.target=y", *ALL_ROWS,
                       "optimizer=lbfgs", "trainer.precision=64-true",
                       "model.net.intercept=false"], run_dir)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "(intercept)" not in trained.stdout
    summary = json.loads((run_dir / "metrics.json").read_text())
    (coefficients,) = summary["coefficients"].values()
    assert list(coefficients) == ["x"]  # no intercept row
    assert correct_digits(coefficients["x"]["trained"], case.estimate) >= 10
    assert correct_digits(coefficients["x"]["least_squares"], case.estimate) >= 14
    assert correct_digits(coefficients["x"]["std_error"], case.standard_error) >= 13
    # R-squared uncentred, as NIST (and statsmodels, and R) give it for a model without intercept.
    assert summary["metrics"]["test/r2"] == pytest.approx(case.r_squared, rel=1e-9)
    assert summary["metrics"]["reference/test_mse"] == pytest.approx(
        case.residual_sd**2 * (len(case.x) - 1) / len(case.x), rel=1e-12
    )
    graph = onnx.load(str(run_dir / "model.onnx")).graph
    (gemm,) = [node for node in graph.node if node.op_type == "Gemm"]
    assert list(gemm.input) == ["decorrelated", "linear.weight"]

    for model in ("model.onnx", "checkpoints/last.ckpt"):
        result = run_cli([f"model={run_dir / model}", "input=-", "output=-"], None,
                         script="predict.py", stdin="x\n0\n1\n100\n")  # fmt: skip
        assert result.returncode == 0, result.stderr
        predictions = [float(line) for line in result.stdout.split()]
        assert predictions[0] == 0.0  # through the origin, exactly
        np.testing.assert_allclose(predictions[1:], [case.estimate, 100 * case.estimate],
                                   rtol=1e-10)  # fmt: skip
    evaluated = run_cli([f"ckpt_path={run_dir}"], tmp_path / "eval", script="eval.py")
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert scored["test/r2"] == pytest.approx(case.r_squared, rel=1e-9)


def test_only_the_linear_network_has_the_intercept_option(tmp_path: Path) -> None:
    result = run_cli([*QUIET, "model=mlp", "model.net.intercept=false"], tmp_path / "run")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: model.net.intercept: no such key in model.net")
    )
    assert not (tmp_path / "run").exists()
