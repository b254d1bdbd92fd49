"""Every tutorial lesson runs, and what it prints is true."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import ROOT

LESSONS = ROOT / "docs" / "tutorial"
sys.path.insert(0, str(LESSONS))  # lessons import each other, as they do when run as scripts


def lesson(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_index_lists_every_lesson_in_order() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    names = sorted(path.name for path in LESSONS.glob("lesson_*.py"))
    assert len(names) == 7
    positions = [index.index(f"(tutorial/{name})") for name in names]
    assert positions == sorted(positions)


def test_lesson_1_tensors(capsys: pytest.CaptureFixture[str]) -> None:
    facts = lesson("lesson_01_tensors").main()
    out = capsys.readouterr().out
    assert facts["dot"] == 14.0
    assert "1D tensors expected" in facts["dot_2d_error"]
    assert "cannot be multiplied (2x3 and 2x3)" in facts["matmul_error"]
    assert facts["matmul_shape"] == (2, 2)
    assert (facts["cat_rows"], facts["cat_cols"]) == ((4, 3), (2, 6))
    assert facts["mean"] == 3.5
    assert facts["sum_dim0"] == [5.0, 7.0, 9.0]
    assert facts["max_dim1"] == ([3.0, 6.0], [2, 2])
    assert facts["elementwise_square"] == [[1.0, 4.0, 9.0], [16.0, 25.0, 36.0]]
    assert facts["tensor_sees_numpy_write"] == 100.0
    assert facts["numpy_sees_tensor_write"] == [7.0, 7.0, 7.0]
    assert facts["pinned"] is (True if torch.cuda.is_available() else None)
    assert "torch.dot on 2-D tensors fails: 1D tensors expected" in out
    assert "a[0,0] = 100.0" in out


def test_lesson_2_autograd_gradient_is_4_5_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    facts = lesson("lesson_02_autograd").main()
    out = capsys.readouterr().out
    assert facts["gradient"] == [[4.5, 4.5], [4.5, 4.5]]
    assert facts["accumulated"] == 9.0
    assert facts["after_zero"] == 0.0
    assert facts["no_grad_requires_grad"] is False
    assert facts["inference_requires_grad"] is False
    assert facts["detached_requires_grad"] is False
    assert facts["detached_shares_storage"] is True
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]" in out
    assert "out = z.mean() = 27.0" in out


def test_lesson_3_nn(capsys: pytest.CaptureFixture[str]) -> None:
    facts = lesson("lesson_03_nn").main()
    assert facts["linear_weight_shape"] == (2, 3)
    assert facts["linear_matches_formula"] is True
    assert facts["mlp_output_shape"] == (5, 1)
    assert facts["mlp_parameters"] == 21
    assert facts["state_dict_keys"] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert facts["copy_matches"] is True
    assert "21 parameters" in capsys.readouterr().out


def test_lesson_4_every_optimizer_reaches_the_noise_floor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    facts = lesson("lesson_04_optim").main()
    for name, loss in facts["final_loss"].items():
        assert loss == pytest.approx(facts["noise_floor"], rel=0.05), name
    out = capsys.readouterr().out
    assert out.count("epoch losses") == 3


def test_lesson_5_devices(capsys: pytest.CaptureFixture[str]) -> None:
    facts = lesson("lesson_05_devices").main()
    assert facts["data_device_after_model_move"] == "cpu"
    assert facts["tensor_to_is_not_in_place"] is True
    assert facts["to_same_device_is_free"] is True
    assert facts["dlpack_numpy_shared"]
    if torch.cuda.is_available():
        assert "Expected all tensors to be on the same device" in facts["mixed_device_error"]
    else:
        assert facts["device"] == "cpu"
        assert facts["dlpack_cupy_shared"] is None
        assert "CuPy exchange skipped" in capsys.readouterr().out


def test_lesson_6_lightning_matches_the_closed_form_fit(capsys: pytest.CaptureFixture[str]) -> None:
    facts = lesson("lesson_06_lightning").main()
    assert facts["test_mse"] <= 1.03 * facts["reference_mse"]
    assert facts["steps"] == 8 * 44
    # 44 batches an epoch in groups of 11: 4 Lightning steps an epoch, the same training.
    assert facts["grouped_steps"] == 8 * 4
    assert facts["grouped_test_mse"] == pytest.approx(facts["test_mse"], rel=1e-5)
    assert "What the Trainer took off our hands" in capsys.readouterr().out


def test_lesson_7_save_load_export(tmp_path: Path) -> None:
    facts = lesson("lesson_07_save_load_export").main(tmp_path)
    assert facts["state_dict_keys"] == [
        "linear.bias",
        "linear.weight",
        "standardize.mean",
        "standardize.std",
    ]
    assert facts["state_dict_roundtrip"] is True
    assert facts["checkpoint_epoch"] == 3
    assert facts["checkpoint_hparams"] == {
        "n_features": 4,
        "n_targets": 1,
        "steps_per_execution": 1,
    }
    assert facts["checkpoint_has_optimizer_state"] is True
    assert facts["checkpoint_roundtrip"] is True
    assert facts["onnx_max_abs_diff"] <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.ckpt",
        "model.onnx",
        "regressor.pt",
    ]
