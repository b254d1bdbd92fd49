"""Every lesson runs, what it prints is true, and every correction is shown where it says."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
import torch
from conftest import ROOT

LESSONS = ROOT / "docs" / "tutorial"
sys.path.insert(0, str(LESSONS))  # lessons import each other, as they do when run as scripts


@cache
def ran(name: str) -> tuple[dict[str, Any], str]:
    """(what the lesson's main returns, what it printed), each lesson run once per session."""
    spec = importlib.util.spec_from_file_location(name, LESSONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        facts = module.main()
    return facts, printed.getvalue()


def lesson_named(number: int) -> str:
    (path,) = LESSONS.glob(f"lesson_{number:02d}_*.py")
    return path.stem


def corrections() -> list[tuple[int, str, list[int]]]:
    """(number, the source's claim, the lessons that show it) for every row of corrections.md."""
    rows = []
    for line in (ROOT / "docs" / "corrections.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            lessons = [int(n) for n in re.findall(r"lesson (\d)", cells[4])]
            rows.append((int(cells[0]), cells[2], lessons))
    return rows


def test_docs_index_lists_every_lesson_in_order() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    names = sorted(path.name for path in LESSONS.glob("lesson_*.py"))
    assert len(names) == 10
    positions = [index.index(f"(tutorial/{name})") for name in names]
    assert positions == sorted(positions)


def test_corrections_table_has_every_row_and_each_row_is_printed_where_it_says() -> None:
    rows = corrections()
    assert [number for number, _, _ in rows] == list(range(1, 21))
    for number, claim, lessons in rows:
        assert lessons, f"row {number} names no lesson"
        printed = "".join(ran(lesson_named(n))[1] for n in lessons)
        assert f"[correction {number}]" in printed, (number, claim)


def test_the_chinese_companion_maps_every_chapter_and_every_correction() -> None:
    companion = (ROOT / "docs" / "zh" / "README.md").read_text()
    chapters = [
        "张量",
        "自动求导",
        "nn",
        "优化器",
        "GPU_加速",
        "创建模型结构",
        "数据准备",
        "数据处理",
        "定义损失函数和优化器",
        "模型训练",
        "测试与验证",
        "模型转换与导出",
        "使用模型推断",
        "保存和加载",
    ]
    for chapter in (name.replace("_", " ") for name in chapters):
        assert f"| {chapter} | 第 " in companion, chapter
    lessons, *by_lesson = re.split(r"^### 第 (\d) 课", companion, flags=re.MULTILINE)
    listed = re.findall(r"^\| (\d+) \| \[", lessons, flags=re.MULTILINE)
    assert listed == [str(n) for n in range(10)]
    # Each correction in Chinese, once, in the section of a lesson that shows it.
    shown_in = {number: lessons_named for number, _, lessons_named in corrections()}
    placed = {}
    for lesson, section in zip(by_lesson[::2], by_lesson[1::2], strict=True):
        for number in re.findall(r"^\| (\d+) \| ", section, flags=re.MULTILINE):
            assert number not in placed, f"correction {number} twice"
            placed[number] = int(lesson)
    assert sorted(map(int, placed)) == sorted(shown_in)
    for number, lesson in placed.items():
        assert lesson in shown_in[int(number)], (number, lesson)
    for name in sorted(path.name for path in LESSONS.glob("lesson_*.py")):
        assert f"(../tutorial/{name})" in companion
    assert "docs/zh/README.md" in (ROOT / "README.md").read_text()


def test_lesson_0_builds_trains_tests_saves_and_loads_a_linear_regression() -> None:
    facts, out = ran("lesson_00_quickstart")
    torch.testing.assert_close(facts["weight"], torch.tensor([[2.0, -3.0, 0.5]]), atol=0.01, rtol=0)
    assert facts["bias"] == pytest.approx(1.0, abs=0.01)
    # Within 1 % of least squares on the held-out rows, both near the noise (0.1² = 0.01).
    assert facts["test_mse"] == pytest.approx(facts["least_squares_mse"], rel=0.01)
    assert facts["least_squares_mse"] == pytest.approx(0.01, rel=0.15)
    assert facts["same_after_loading"]
    # What it prints is what it computed.
    learned = ", ".join(f"{w:.3f}" for w in facts["weight"][0].tolist())
    assert f"learned weight [{learned}], bias {facts['bias']:.3f}" in out
    mse, exact = facts["test_mse"], facts["least_squares_mse"]
    assert f"test MSE {mse:.5f}, least squares' {exact:.5f}" in out
    assert "the same predictions: True" in out
    assert "[correction 20] the source's introduction promises this example" in out


def test_lesson_1_tensors() -> None:
    facts, out = ran("lesson_01_tensors")
    assert facts["dot"] == 14.0
    assert "1D tensors expected" in facts["dot_2d_error"]
    assert "cannot be multiplied (2x3 and 2x3)" in facts["matmul_error"]
    assert facts["matmul_shape"] == (2, 2)
    assert "must match the size of tensor b (4)" in facts["broadcast_error"]
    assert facts["with_row"] == [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]
    assert facts["outer_shape"] == (2, 3)
    assert facts["elementwise_min"] == [[1.0, 1.0, 3.0], [1.0, 5.0, 0.0]]
    assert "0-d) tensors is the smaller value, 3.0, as the source says" in out
    # [correction 16]: options by keyword only; the class takes no dtype.
    assert facts["positional_error"] == "tensor() takes 1 positional argument but 2 were given"
    assert facts["class_error"].startswith("new() received an invalid combination of arguments")
    assert f"torch.float64) fails: {facts['positional_error']}" in out
    assert (facts["cat_rows"], facts["cat_cols"]) == ((4, 3), (2, 6))
    assert facts["mean"] == 3.5
    assert facts["sum_dim0"] == [5.0, 7.0, 9.0]
    assert facts["max_dim1"] == ([3.0, 6.0], [2, 2])
    assert facts["elementwise_square"] == [[1.0, 4.0, 9.0], [16.0, 25.0, 36.0]]
    assert facts["tensor_sees_numpy_write"] == 100.0
    assert facts["numpy_sees_tensor_write"] == [7.0, 7.0, 7.0]
    if torch.cuda.is_available():
        assert facts["pinned_error"] is None
    else:
        assert "pin_memory=True requires a CUDA or other accelerator" in facts["pinned_error"]
    assert "a[0,0] = 100.0" in out


def test_lesson_2_autograd_gradient_is_4_5_everywhere() -> None:
    facts, out = ran("lesson_02_autograd")
    assert facts["plain_grad_fn"] is None
    assert facts["out"] == 27.0
    assert facts["gradient"] == [[4.5, 4.5], [4.5, 4.5]]
    assert facts["z_grad"] == 18.0  # 6 (x + 2) at x = 1
    assert facts["accumulated"] == 9.0
    assert facts["after_zero"] == 0.0
    assert facts["zero_grad_leaves"] is None
    assert facts["no_grad_requires_grad"] is False
    assert facts["inference_requires_grad"] is False
    assert facts["detached_requires_grad"] is False
    assert facts["detached_shares_storage"] is True
    assert "x.grad = [[4.5, 4.5], [4.5, 4.5]]: 4.5 everywhere and shaped like x, 2x2" in out
    # [correction 18]: the graph follows the loop as it ran: 3 -> 6 -> ... -> 192, 6 doublings.
    assert (facts["doublings"], facts["loop_gradient"]) == (6, 64.0)
    assert "6 doublings, d/dt = 64 = 2^6" in out


def test_lesson_3_nn() -> None:
    facts, out = ran("lesson_03_nn")
    assert facts["linear_weight_shape"] == (2, 3)
    assert facts["linear_matches_formula"] is True
    assert facts["mlp_output_shape"] == (5, 1)
    assert facts["mlp_parameters"] == 21
    assert facts["broadcast_mse"] == pytest.approx(12 / 9)  # 9 pairs of a perfect prediction
    assert facts["right_mse"] == 0.0
    assert facts["mse_warnings"] == 1
    assert facts["dropout_eval"] == [1.0] * 8
    assert sorted(set(facts["dropout_train"])) == [0.0, 2.0]
    zeroed = facts["dropout_train"].count(0.0)  # a draw, not exactly half: said as it is
    assert f"({zeroed} of 8 zeroed: each entry independently" in out
    assert "1 warning, no error: the run goes on" in out
    assert facts["state_dict_keys"] == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert facts["copy_matches"] is True
    assert "21 parameters" in out
    # [correction 8]: the loss has no parameters; the optimizer, built apart, holds the model's.
    assert (facts["loss_parameters"], facts["optimized_tensors"]) == (0, 4)
    assert facts["optimized_numbers"] == facts["mlp_parameters"]
    assert "holds its 4 tensors, 21 numbers" in out and "MSELoss() has 0 parameters" in out


def test_lesson_4_data_standardises_with_train_rows_and_measures_the_loader() -> None:
    facts, out = ran("lesson_04_data")
    assert facts["split_sizes"] == (35_000, 7_500, 7_500)
    assert facts["standardized_train_mean"] < 1e-5
    assert facts["batch_shapes"] == ((256, 8), (256, 1))
    assert facts["batches_per_epoch"] == 137
    assert facts["rows_per_epoch"] == (35_000, 35_000)
    assert facts["collated_over_sliced"] > 3  # collating rows one by one costs far more
    assert "DataLoader" in out


def test_lesson_5_every_optimizer_reaches_least_squares() -> None:
    facts, out = ran("lesson_05_optim")
    assert not all(map(torch.isfinite, torch.tensor(facts["raw_sgd_losses"])))
    exact_train, exact_test = facts["least_squares"]
    for name, loss in facts["final_loss"].items():  # least squares, not the noise floor
        assert loss == pytest.approx(exact_train, rel=0.005), name
        assert facts["test_mse"][name] == pytest.approx(exact_test, rel=0.005), name
    assert exact_test == pytest.approx(facts["noise_floor"], rel=0.15)
    assert f"training MSE {exact_train:.4f}, test MSE {exact_test:.4f}" in out
    assert "CosineAnnealingLR" in out and "momentum 0.9" in out  # both said, not only used
    # [correction 9]: too small by rows / batches, shown on the lesson's own numbers.
    batches = facts["n_batches"]
    assert facts["mean_over_rows"] == pytest.approx(facts["final_loss"]["SGD"] * batches / 3200)
    assert f"{3200 / batches:g}x too small (3200 rows in {batches} batches)" in out
    assert out.count("epoch losses") == 4  # the diverging run and the three optimizers
    # [correction 17] said; that the file defines every name it uses: it runs on its own (below).
    assert "[correction 17] the source's optimizer snippet uses names it never defines" in out


@pytest.mark.parametrize("lesson", ["lesson_00_quickstart", "lesson_05_optim"])
def test_the_plain_pytorch_lessons_need_neither_lightning_nor_the_project(lesson: str) -> None:
    code = (
        f"import runpy, sys; sys.path.insert(0, {str(LESSONS)!r}); "
        f"runpy.run_path({str(LESSONS / f'{lesson}.py')!r}, run_name='__main__'); "
        "print(sorted(m for m in ('lightning', 'linreg') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_lesson_6_devices() -> None:
    facts, out = ran("lesson_06_devices")
    # [correction 12]: use_gpu=False fails at torch.device(None) anywhere; use_gpu=True at .to().
    assert "invalid combination of arguments" in facts["none_error"]
    if torch.cuda.is_available():
        assert facts["cuda_error"] is None
    else:
        assert facts["cuda_error"] in ("Torch not compiled with CUDA enabled",
                                       "Found no NVIDIA driver on your system.")  # fmt: skip
        assert f"the failure comes at .to(device): {facts['cuda_error']}" in out
    # [correction 13], visible on any machine: the model moved, the data did not, mixing fails.
    assert (facts["model_device_after_move"], facts["data_device_after_model_move"]) == (
        "meta",
        "cpu",
    )
    assert "is not on the expected device" in facts["mixed_device_error"]
    assert facts["to_same_device_is_same_object"] is True
    assert (facts["default_device"], facts["context_device"]) == ("meta", "meta")
    assert torch.ones(1).device.type == "cpu"  # the lesson put the default back
    assert facts["dlpack_numpy_shared"] is True
    # The prose corrections (no value to compute), word for word.
    assert "pip install cupy-cuda12x (or cupy-cuda11x, cupy-cuda13x), not cupy-cuda90" in out
    assert "its array type is cupy.ndarray, not cupy.core.core.ndarray" in out  # [correction 10]
    assert "without a GPU, tensors stay on the CPU" in out  # [correction 14]
    assert "depends on the size of the arrays, on copies between host and GPU" in out  # 19
    assert facts["cupy_imported"] is False
    if torch.cuda.is_available():
        assert facts["moved_device"] == "cuda"
    else:
        assert facts["device"] == facts["moved_device"] == "cpu"
        assert facts["dlpack_cupy_shared"] is None


def test_lesson_7_lightning_matches_the_closed_form_fit() -> None:
    facts, out = ran("lesson_07_lightning")
    # The inline module against least squares on its own rows, as printed (not the noise floor).
    val, exact = facts["inline_val_loss"], facts["inline_reference_mse"]
    assert val == pytest.approx(exact, rel=0.15) and exact == pytest.approx(0.25, rel=0.15)
    assert f"val/loss {val:.4f}, {100 * (val / exact - 1):.1f} % above least squares" in out
    # Lightning's per-step share, from the two measured times it prints.
    lightning_s, plain_s = facts["seconds"][0], facts["plain_seconds"]
    assert f"Lightning's share is {1 - plain_s / lightning_s:.0%} of the time" in out
    assert facts["test_mse"] <= 1.03 * facts["reference_mse"]
    assert facts["steps"] == 8 * 44
    # 44 batches an epoch in groups of 11: 4 Lightning steps an epoch, the same training.
    assert facts["grouped_steps"] == 8 * 4
    assert facts["grouped_test_mse"] == pytest.approx(facts["test_mse"], rel=1e-5)
    assert "What the Trainer took off our hands" in out
    assert "not Lightning: model.steps_per_execution in this project" in out


def test_lesson_8_save_load_export() -> None:
    facts, out = ran("lesson_08_save_load_export")
    assert facts["plain_state_dict_keys"] == ["bias", "weight"] and facts["plain_roundtrip"]
    assert f"the project's network saves {len(facts['state_dict_keys'])}: " in out
    assert facts["state_dict_keys"] == [
        "decorrelate.rotation",
        "linear.bias",
        "linear.weight",
        "standardize.mean",
        "standardize.std",
        "target_standardize.mean",
        "target_standardize.std",
    ]
    assert facts["state_dict_roundtrip"] is True
    assert facts["checkpoint_epoch"] == 3
    assert facts["checkpoint_hparams"] == {
        "net": {
            "target": "linreg.models.linear.LinearRegressor",
            "options": {
                "n_features": 4,
                "n_targets": 1,
                "feature_names": ["x0", "x1", "x2", "x3"],
                "target_names": ["y0"],
                "intercept": True,
            },
        },
        "steps_per_execution": 1,
    }
    assert facts["checkpoint_has_optimizer_state"] is True
    assert facts["checkpoint_roundtrip"] is True
    assert facts["onnx_max_abs_diff"] <= 1e-5
    assert "torch.onnx" not in out  # the exporter's progress notes are muted


def test_lesson_9_hydra_composes_the_real_configs() -> None:
    facts, _ = ran("lesson_09_hydra")
    assert facts["partial_is_callable"] is True
    assert facts["optimizer_type"] == "SGD"
    assert (facts["composed_type"], facts["composed_lr"]) == ("Adam", 0.01)
    assert facts["typo_error"] == "Key 'lrr' not in 'SGDConfig'"
    assert facts["jobs"] == [
        "optimizer=sgd optimizer.lr=0.01",
        "optimizer=sgd optimizer.lr=0.1",
        "optimizer=adam optimizer.lr=0.01",
        "optimizer=adam optimizer.lr=0.1",
    ]
