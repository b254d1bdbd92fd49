"""Scaling out: DDP on CPU processes (and GPUs where present), and cluster launchers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF_DIR, QUIET, compose_config, needs_gpus, run_cli
from hydra import compose, initialize_config_dir

SAME_DATA = ("data.n_samples=8000", "trainer.max_epochs=6", *QUIET)
# Two processes of 32 rows: the same 64-row global batch, and so the same optimizer steps, as the
# single process. On CPU processes and on GPUs alike (the default 256 rows a process leaves too few
# steps to reach the reference).
TWO_PROCESSES = (*SAME_DATA, "trainer=ddp", "data.batch_size=32")


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    result = run_cli([*SAME_DATA, "data.batch_size=64"], run_dir)
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_at_the_same_global_batch(
    single_process: dict, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(list(TWO_PROCESSES), run_dir)
    assert result.returncode == 0, result.stderr
    ddp = json.loads((run_dir / "metrics.json").read_text())
    # Same rows per optimizer step, every row once per epoch: the same number of steps (88 per
    # epoch, which Lightning counts in executions of model.steps_per_execution=16).
    assert ddp["optimizer_steps"] == single_process["optimizer_steps"] == 6 * 88
    assert ddp["global_step"] == single_process["global_step"] == 6 * -(-88 // 16)
    # Different row order within the global batch only: final results within 2 % of each other.
    assert ddp["metrics"]["test/mse"] == pytest.approx(
        single_process["metrics"]["test/mse"], rel=0.02
    )
    assert ddp["metrics"]["test/mse"] <= 1.02 * ddp["metrics"]["reference/test_mse"]
    # The second process logs into the same run folder; only rank 0 wrote the shared files.
    assert (run_dir / "train_ddp_process_1.log").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (run_dir / "model.onnx").is_file()


@needs_gpus(2)
def test_two_gpu_processes_match_the_reference(tmp_path: Path) -> None:
    result = run_cli([*TWO_PROCESSES, "trainer.accelerator=gpu"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["optimizer_steps"] == 6 * 88
    assert summary["metrics"]["test/mse"] <= 1.02 * summary["metrics"]["reference/test_mse"]


def test_trainer_ddp_config_composes_to_two_processes() -> None:
    trainer = compose_config(["trainer=ddp"]).trainer
    assert (trainer.strategy, trainer.devices, trainer.num_nodes) == ("ddp", 2, 1)


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_small_sweep(tmp_path: Path) -> None:
    args = ["-m", "hydra/launcher=submitit_local", "seed=1,2", *SAME_DATA, "logger=none",
            f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    result = run_cli(args, None)
    assert result.returncode == 0, result.stderr
    # Jobs run in processes of their own, and are still named by what the sweep varies.
    for job in ("seed=1", "seed=2"):
        assert json.loads((tmp_path / job / "metrics.json").read_text())["status"] == "completed"
    assert (tmp_path / "report.csv").is_file()


def test_slurm_launcher_preset_asks_one_task_per_device_on_each_node() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.nodes) == (2, 2)
