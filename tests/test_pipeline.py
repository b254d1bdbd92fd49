"""End to end in-process: fit, test the best checkpoint, export, verify, and the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import torch
from conftest import FAST, compose_choices, compose_config, needs_gpus, options
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from linreg.data.synthetic import SyntheticRegressionDataModule
from linreg.models.module import RegressionModule
from linreg.run.pipeline import train


def run(output_dir: Path, *overrides: str) -> tuple[float, dict[str, Any]]:
    cfg = compose_config([*FAST, *overrides], output_dir)
    objective = train(cfg, list(overrides), compose_choices([*FAST, *overrides]))
    return objective, json.loads((output_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, dict[str, Any]]:
    output_dir = tmp_path_factory.mktemp("run")
    objective, summary = run(output_dir, "seed=3")
    return output_dir, objective, summary


def test_the_same_problem_in_other_units_trains_to_the_same_answer(default_run, tmp_path) -> None:
    # Targets 10,000 times larger: the fit is the default run's, times 10,000.
    _, _, summary = default_run
    _, scaled = run(tmp_path, "seed=3", "data.target_scale=1e4")
    assert scaled["test_mse_gap_to_reference"] == pytest.approx(
        summary["test_mse_gap_to_reference"], abs=1e-4
    )
    mse = summary["metrics"]["test/mse"]
    assert scaled["metrics"]["test/mse"] == pytest.approx(1e8 * mse, rel=1e-3)


def test_columns_correlated_099_train_as_well_as_independent_ones(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "data.feature_correlation=0.99")
    assert abs(summary["test_mse_gap_to_reference"]) < 0.005


def test_a_run_whose_loss_stops_moving_stops_there_and_says_why(default_run, tmp_path) -> None:
    assert default_run[2]["stopping"] == "ran all epochs"  # annealing: it moves to the end
    # Full-batch L-BFGS lands on least squares in its first epoch; nothing moves after it.
    _, summary = run(
        tmp_path, "optimizer=lbfgs", "data.batch_size=1048576", "trainer.max_epochs=30"
    )
    epochs = summary["epochs"]
    assert epochs == 5  # epochs 2 to 5 all hold the same answer
    assert summary["stopping"] == (
        "stopped at epoch 5: val/loss changed less than 0.01% over 3 epochs"
    )
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == epochs - 1  # the last epoch trained, counted from 0


def test_lbfgs_matches_least_squares_on_an_ill_conditioned_design(tmp_path: Path) -> None:
    # FAST's small batches are overridden back to lbfgs's whole splits (the command line wins).
    _, summary = run(
        tmp_path, "optimizer=lbfgs", "data.feature_correlation=0.99", "data.batch_size=1048576"
    )
    assert abs(summary["test_mse_gap_to_reference"]) < 1e-4
    assert summary["optimizer_steps"] == summary["global_step"]  # one per Lightning step


def test_adam_on_a_small_table_takes_enough_steps_to_reach_least_squares(tmp_path: Path) -> None:
    # 500 rows: 350 training rows were 2 batches of 256 an epoch, 20 Adam steps of at most lr
    # each, and the run ended at +45,979 %; cut into 39 batches of 9 rows, the last epochs moved
    # about 1 % around least squares from seed to seed. Adam's YAML asks for at least 64 batches
    # an epoch: 64 batches of 256 rows, drawn in 46.8 fresh passes over the 350 rows.
    _, summary = run(
        tmp_path, "optimizer=adam", "data.n_samples=500", "data.batch_size=256",
        "trainer.max_epochs=5",
    )  # fmt: skip
    assert summary["optimizer_steps"] == 5 * 64
    assert (
        "each epoch trained on 64 batches of up to 256 rows, drawn in 46.8 passes over the "
        "350-row training split (data.min_batches_per_epoch=64; null for one pass of 2)"
    ) in summary["notes"]
    assert abs(summary["test_mse_gap_to_reference"]) < 0.002  # seeds 0 to 4: at most 0.06 %


def test_adam_on_many_features_steps_in_proportion_to_their_weights(tmp_path: Path) -> None:
    # At 64 features the weights are a third of their size at 8: Adam's lr is scaled with them
    # (0.03 x sqrt(8/64)), and the run says so. At 256 features, 0.03 as is ended 1.5 % above
    # least squares, scaled 0.24 %.
    _, summary = run(tmp_path, "optimizer=adam", "data.n_features=64", "data.n_samples=20000",
                     "data.batch_size=256", "trainer.max_epochs=5")  # fmt: skip
    assert (
        "optimizer.lr=0.03 was used as 0.0106 for 64 features (x sqrt(8/64): "
        "model.lr_reference_features=8; null keeps the lr as is)"
    ) in summary["notes"]
    assert abs(summary["test_mse_gap_to_reference"]) < 0.01
    lrs = [event.value for event in tensorboard_events(tmp_path).Scalars("train/lr")]
    assert max(lrs) == pytest.approx(0.03 * (8 / 64) ** 0.5, rel=1e-3)  # the warm-up's peak


def test_a_large_table_trains_on_max_batches_per_epoch_and_the_summary_says_so(
    tmp_path: Path,
) -> None:
    # 60,000 rows: 42,000 training rows are 165 batches of 256 an epoch; the default cap of 100
    # makes 3 epochs 300 optimizer steps, each epoch a fresh draw, and least squares is still met.
    _, summary = run(
        tmp_path, "data.n_samples=60000", "data.batch_size=256", "trainer.max_epochs=3"
    )
    assert summary["optimizer_steps"] == 3 * 100
    assert (
        "each epoch trained on 100 randomly drawn batches of the 165 the training split holds "
        "(data.max_batches_per_epoch=100; null for whole passes)"
    ) in summary["notes"]
    assert abs(summary["test_mse_gap_to_reference"]) < 0.005
    _, whole = run(tmp_path / "whole", "data.n_samples=60000", "data.batch_size=256",
                   "trainer.max_epochs=1", "data.max_batches_per_epoch=null")  # fmt: skip
    assert whole["optimizer_steps"] == 165
    assert not [note for note in whole["notes"] if "randomly drawn" in note]


def test_the_best_epoch_is_the_latest_the_validation_rows_cannot_tell_from_the_lowest(
    tmp_path: Path,
) -> None:
    # 500 rows: 75 validation rows resolve a mean squared error to sqrt(2/75) = 16 %. SGD's
    # val/loss is lowest in epoch 2 of 10 by chance; epoch 10 is 2.4 % above it, within the rows'
    # standard error, and trained to the end of the schedule: it is the one tested.
    args = ("data.n_samples=500", "data.batch_size=256", "trainer.max_epochs=10")
    _, within = run(tmp_path / "within", *args)
    _, lowest = run(tmp_path / "lowest", *args,
                    "callbacks.model_checkpoint.within_standard_error=false")  # fmt: skip
    assert within["paths"]["best_checkpoint"] == "checkpoints/epoch009.ckpt"
    assert lowest["paths"]["best_checkpoint"] == "checkpoints/epoch001.ckpt"
    best, chosen = lowest["metrics"]["val/loss"], within["metrics"]["val/loss"]
    assert 1.02 * best < chosen < (1 + (2 / 75) ** 0.5) * best
    assert abs(within["test_mse_gap_to_reference"]) < 0.002
    assert lowest["test_mse_gap_to_reference"] > 0.025  # what plain "lowest" tested
    last = torch.load(tmp_path / "within" / "checkpoints" / "last.ckpt", weights_only=True)
    (watched,) = [s for name, s in last["callbacks"].items() if "RunCheckpoint" in name]
    assert watched["lowest_score"] == pytest.approx(best, rel=1e-4)  # a resume keeps it


def test_fit_lands_within_2_percent_of_the_least_squares_reference(default_run) -> None:
    _, _, summary = default_run
    metrics = summary["metrics"]
    assert metrics["test/mse"] <= 1.02 * metrics["reference/test_mse"]
    assert summary["test_mse_gap_to_reference"] == pytest.approx(
        metrics["test/mse"] / metrics["reference/test_mse"] - 1
    )
    # The noise floor is noise_std**2 = 0.25.
    assert metrics["test/mse"] == pytest.approx(0.25, rel=0.15)
    assert metrics["test/r2"] > 0.99


def test_fit_recovers_the_ground_truth_weights(default_run) -> None:
    output_dir, _, summary = default_run
    assert summary["metrics"]["params/weight_error"] < 0.01
    assert summary["metrics"]["params/bias_error"] < 0.05

    best = RegressionModule.load_from_checkpoint(
        output_dir / summary["paths"]["best_checkpoint"], map_location="cpu", weights_only=True
    )
    cfg = compose_config([*FAST, "seed=3"])
    datamodule = SyntheticRegressionDataModule(
        **{k: v for k, v in cfg.data.items() if k != "_target_"}
    )
    datamodule.setup()
    weight, _ = best.net.coefficients()
    torch.testing.assert_close(weight, datamodule.ground_truth.weight, atol=0.02, rtol=0)


def test_objective_is_the_best_val_loss_and_matches_the_summary(default_run) -> None:
    _, objective, summary = default_run
    std_error = summary["metrics"]["val/loss_std_error"]
    assert summary["objective"] == {"name": "val/loss", "value": objective, "std_error": std_error}
    assert summary["metrics"]["val/loss"] == pytest.approx(objective)
    # The spread of 0.25-variance noise's squared errors: about sqrt(2) x 0.25 / sqrt(val rows).
    rows = summary["least_squares_fit"]["rows"] * 15 // 70  # the val split, 15 % to train's 70 %
    assert std_error == pytest.approx(2**0.5 * objective / rows**0.5, rel=0.2)
    assert summary["status"] == "completed"
    assert summary["overrides"] == ["seed=3"]
    assert summary["epochs"] == 6
    # 88 batches an epoch; Lightning counts executions of 16 of them.
    assert summary["optimizer_steps"] == 6 * 88
    assert summary["global_step"] == 6 * 6
    stages = summary["stage_times_s"]
    assert list(stages) == ["setup", "fit", "test", "evaluate", "export"]
    assert 0 < sum(stages.values()) <= summary["wall_time_s"]


def test_run_folder_holds_checkpoints_onnx_events_and_summary(default_run) -> None:
    output_dir, _, summary = default_run
    paths = summary["paths"]
    assert paths["model"] == "model.onnx"
    assert paths["last_checkpoint"] == "checkpoints/last.ckpt"
    assert paths["best_checkpoint"].startswith("checkpoints/epoch")
    for relative in paths.values():
        assert (output_dir / relative).is_file()
    assert list(output_dir.glob("events.out.tfevents.*"))


def test_checkpoint_loads_with_weights_only_and_holds_plain_hparams(default_run) -> None:
    output_dir, _, summary = default_run
    checkpoint = torch.load(output_dir / summary["paths"]["best_checkpoint"], weights_only=True)
    assert checkpoint["hyper_parameters"] == {
        "net": {
            "target": "linreg.models.linear.LinearRegressor",
            "options": {
                "n_features": 8,
                "n_targets": 1,
                "feature_names": [f"x{i}" for i in range(8)],
                "target_names": ["y0"],
                "intercept": True,
            },
        },
        "steps_per_execution": 16,
    }
    assert checkpoint["datamodule_hyper_parameters"]["n_samples"] == 8000
    assert "net.standardize.mean" in checkpoint["state_dict"]


def test_exported_onnx_reproduces_the_best_checkpoint(default_run) -> None:
    output_dir, _, summary = default_run
    assert summary["metrics"]["export/max_abs_diff"] <= 1e-5
    best = RegressionModule.load_from_checkpoint(
        output_dir / summary["paths"]["best_checkpoint"], map_location="cpu", weights_only=True
    )
    features = torch.randn(11, 8) * 5 + 3
    session = onnxruntime.InferenceSession(str(output_dir / "model.onnx"))
    (predictions,) = session.run(None, {"features": features.numpy()})
    with torch.no_grad():
        expected = best(features)
    torch.testing.assert_close(torch.from_numpy(predictions), expected, atol=1e-5, rtol=1e-6)


def tensorboard_events(output_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(output_dir))
    events.Reload()
    return events


def test_tensorboard_has_the_named_scalars_per_stage(default_run) -> None:
    output_dir, _, _ = default_run
    events = tensorboard_events(output_dir)
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/epoch_loss",
        "train/lr",
        "val/loss",
        "val/mse",
        "val/mae",
        "val/r2",
        "val/explained_variance",
        "params/weight_error",
        "params/bias_error",
        "test/loss",
        "test/mse",
        "test/r2",
    }
    assert expected <= tags
    assert "epoch" not in tags  # Lightning's staircase chart, left to the CSV logger
    val_loss = [event.value for event in events.Scalars("val/loss")]
    assert len(val_loss) == 6
    assert val_loss[-1] < val_loss[0]
    # A warm-up to optimizer.lr over the first 5 % of the optimizer steps, then a cosine to 0.
    learning_rates = [event.value for event in events.Scalars("train/lr")]
    peak = learning_rates.index(max(learning_rates))
    assert 0.3 < learning_rates[peak] <= 0.4
    assert learning_rates[peak:] == sorted(learning_rates[peak:], reverse=True)
    assert learning_rates[-1] < 0.01


def test_tensorboard_hparams_carry_the_config_and_real_final_metrics(default_run) -> None:
    output_dir, _, summary = default_run
    events = tensorboard_events(output_dir)
    content = events.PluginTagToContent("hparams")
    # A session (settings, status) and no experiment summary: TensorBoard builds the experiment
    # from every run's session, so sweeps compare (tests/test_inspection.py).
    assert set(content) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    end = HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == 1  # STATUS_SUCCESS
    session = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.4)
    # The groups' choices by name, not the classes they name; whole numbers as typed.
    assert hparams["optimizer"].string_value == "sgd" and "optimizer._target_" not in hparams
    assert hparams["model"].string_value == "linear"
    assert hparams["data.n_samples"].string_value == "8000"
    # The run's own folder differs in every run for no reason: not a hyper-parameter.
    assert "trainer.default_root_dir" not in hparams and "trainer.plugins" not in hparams
    (final_val_loss,) = events.Scalars("hp/objective")
    assert final_val_loss.value == pytest.approx(summary["metrics"]["val/loss"])
    assert "hp_metric" not in events.Tags()["scalars"]


def test_multi_output_regression_exports_one_column_per_target(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "data.n_targets=3", "optimizer=adam")
    assert summary["metrics"]["test/mse"] <= 1.02 * summary["metrics"]["reference/test_mse"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (predictions,) = session.run(None, {"features": torch.randn(4, 8).numpy()})
    assert predictions.shape == (4, 3)


def test_csv_logger_writes_metrics_csv_and_no_event_files(tmp_path: Path) -> None:
    run(tmp_path, "logger=csv", "export.enabled=false")
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "val/loss", "test/mse"} <= set(header)
    assert not list(tmp_path.glob("events.out.tfevents.*"))
    assert not (tmp_path / "model.onnx").exists()


def test_logger_none_still_writes_the_summary(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "logger=none")
    assert summary["metrics"]["test/mse"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoints",
        "config_tree.txt",
        "metrics.json",
        "model.onnx",
    ]


@needs_gpus(1)
def test_gpu_run_keeps_data_on_the_device_and_matches_the_reference(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "trainer=gpu")
    assert summary["metrics"]["test/mse"] <= 1.02 * summary["metrics"]["reference/test_mse"]


@needs_gpus(1)
def test_streamed_gpu_run_scores_the_rows_it_trained_and_validated_on(tmp_path: Path) -> None:
    # The trainer validates on the GPU; metrics.json, the reference and eval.py read the same split
    # on the CPU. They agree only if batch i is the same rows on both devices.
    _, summary = run(
        tmp_path, "trainer=gpu", "data.streaming=true", "data.n_samples=20000",
        "data.batch_size=256",
    )  # fmt: skip
    metrics = summary["metrics"]
    assert metrics["test/mse"] <= 1.02 * metrics["reference/test_mse"]
    checkpoint = torch.load(
        tmp_path / summary["paths"]["best_checkpoint"], map_location="cpu", weights_only=True
    )
    (watched,) = [
        state for name, state in checkpoint["callbacks"].items() if "ModelCheckpoint" in name
    ]
    assert float(watched["best_model_score"]) == pytest.approx(metrics["val/loss"], rel=1e-4)


@needs_gpus(1)
def test_bf16_mixed_on_a_gpu_logs_the_float32_training_loss(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "trainer=gpu", "trainer.precision=bf16-mixed")
    assert summary["metrics"]["test/mse"] <= 1.05 * summary["metrics"]["reference/test_mse"]
    scalars = EventAccumulator(str(tmp_path)).Reload()
    last_epoch_loss = scalars.Scalars("train/epoch_loss")[-1].value
    assert last_epoch_loss == pytest.approx(summary["metrics"]["test/mse"], rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_default_reaches_the_reference_on_default_data(
    tmp_path: Path, optimizer: str
) -> None:
    cfg = compose_config([f"optimizer={optimizer}", "trainer.enable_progress_bar=false"], tmp_path)
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["test/mse"] <= 1.01 * metrics["reference/test_mse"]


@pytest.mark.parametrize(
    ("precision", "tolerance"), [("64-true", 1.02), ("bf16-true", 1.05), ("bf16-mixed", 1.05)]
)
def test_other_precisions_train_export_and_draw_their_figures(
    tmp_path: Path, precision: str, tolerance: float
) -> None:
    # True precisions convert the module: float32 data, example inputs and figures must follow.
    _, summary = run(tmp_path, f"trainer.precision={precision}")
    metrics = summary["metrics"]
    assert metrics["test/mse"] <= tolerance * metrics["reference/test_mse"]
    assert metrics["export/max_abs_diff"] <= 1e-5
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()
    assert "figures/test/residuals" in tags["images"]


def test_streamed_data_trains_to_the_least_squares_reference(tmp_path: Path) -> None:
    _, summary = run(tmp_path, "data.streaming=true", "data.n_samples=20000", "data.batch_size=256")
    metrics = summary["metrics"]
    assert metrics["test/mse"] <= 1.02 * metrics["reference/test_mse"]
    assert metrics["params/weight_error"] < 0.01
    assert summary["metrics"]["export/max_abs_diff"] <= 1e-5


def test_the_objective_key_chooses_what_best_means_everywhere(tmp_path: Path) -> None:
    objective, summary = run(tmp_path, "objective=val/mae", "scheduler=plateau")
    # No standard error is known for the MAE: the sweep report then marks no ties.
    assert summary["objective"] == {"name": "val/mae", "value": summary["metrics"]["val/mae"],
                                    "std_error": None}  # fmt: skip
    assert objective == summary["metrics"]["val/mae"]
    checkpoint = torch.load(
        tmp_path / summary["paths"]["best_checkpoint"], map_location="cpu", weights_only=True
    )
    (watched,) = [s for name, s in checkpoint["callbacks"].items() if "RunCheckpoint" in name]
    assert watched["monitor"] == "val/mae"
    assert float(watched["best_model_score"]) == pytest.approx(summary["metrics"]["val/mae"])
    assert "monitor" not in checkpoint["hyper_parameters"]  # it steers training, not the model
