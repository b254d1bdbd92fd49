"""Sweeps through the real CLI: grids, Optuna search and its resumption, parallel jobs, failures
that don't stop a sweep, the report, and the multirun + DDP guard."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, QUIET, ROOT, run_cli
from omegaconf import OmegaConf

from linreg.sweep.callbacks import launches_processes

TINY = ("data.n_samples=2000", "trainer.max_epochs=2", "logger=none", *QUIET)


def sweep(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["-m", *TINY, *args, f"hydra.sweep.dir={sweep_dir}"], None)


def report_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "report.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_grid_runs_every_combination_in_its_own_folder_and_reports_them(tmp_path: Path) -> None:
    result = sweep(tmp_path, "optimizer=sgd,adam", "optimizer.lr=0.01,0.1")
    assert result.returncode == 0, result.stderr
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        summary = json.loads((tmp_path / job / "metrics.json").read_text())
        assert summary["status"] == "completed"
        assert (tmp_path / job / "model.onnx").is_file()
        assert (tmp_path / job / summary["paths"]["best_checkpoint"]).is_file()

    rows = report_rows(tmp_path)
    assert len(rows) == 4
    combos = {tuple(r["overrides"].split()[-2:]) for r in rows}
    assert combos == {
        (f"optimizer={o}", f"optimizer.lr={lr}") for o in ("sgd", "adam") for lr in ("0.01", "0.1")
    }
    losses = [float(r["val/loss"]) for r in rows]
    assert losses == sorted(losses)
    assert (tmp_path / "report.md").read_text().count("| completed |") == 4
    assert (tmp_path / "report.png").stat().st_size > 10_000

    # On demand, the same table again.
    (tmp_path / "report.csv").unlink()
    again = subprocess.run(
        [sys.executable, "-m", "linreg.sweep.report", str(tmp_path)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert report_rows(tmp_path) == rows
    assert again.stdout.startswith("| job | overrides | status | objective | val/loss |")


def test_ready_made_experiment_runs_its_grid(tmp_path: Path) -> None:
    result = sweep(tmp_path, "experiment=optimizer_comparison")
    assert result.returncode == 0, result.stderr
    optimizers = sorted(
        next(o for o in r["overrides"].split() if o.startswith("optimizer="))
        for r in report_rows(tmp_path)
    )
    grid = OmegaConf.load(CONF_DIR / "experiment" / "optimizer_comparison.yaml")
    assert optimizers == sorted(
        f"optimizer={o}" for o in grid.hydra.sweeper.params.optimizer.split(",")
    )


def searched(sweep_dir: Path) -> list[tuple[str, ...]]:
    rows = report_rows(sweep_dir)
    return sorted(tuple(r["overrides"].split()[-3:]) for r in rows)


def test_optuna_search_runs_n_trials_and_resumes_from_storage_without_repeating(
    tmp_path: Path,
) -> None:
    first = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1", "2"]
    first_trials = searched(tmp_path)
    assert all(
        t[0].startswith("optimizer=") and t[1].startswith("optimizer.lr=") for t in first_trials
    )

    resumed = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1", "2", "3", "4"]
    all_trials = searched(tmp_path)
    assert set(first_trials) < set(all_trials)
    assert len(set(all_trials)) == 5  # no settings tried twice

    complete = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert "5 trials done, 0 to run" in complete.stdout + complete.stderr
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_value == min(float(r["val/loss"]) for r in report_rows(tmp_path))

    # A damaged job record: the resumed search's report says so instead of keeping the old one.
    (tmp_path / "1" / "metrics.json").write_text('{"status": "comp')
    again = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert again.returncode == 0, again.stderr
    assert {r["job"]: r["status"] for r in report_rows(tmp_path)}["1"] == "unreadable"


def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_cores_each(tmp_path: Path) -> None:
    result = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2")
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        summary = json.loads((tmp_path / job / "metrics.json").read_text())
        assert summary["status"] == "completed"
        assert summary["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_a_diverging_job_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = sweep(tmp_path, "optimizer=sgd", "optimizer.lr=1000,0.05,0.1")
    assert result.returncode == 0, result.stderr
    failed = json.loads((tmp_path / "0" / "metrics.json").read_text())
    assert failed["status"] == "failed"
    assert failed["reason"].startswith("training diverged at step")
    rows = report_rows(tmp_path)
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]
    assert rows[-1]["overrides"].endswith("optimizer.lr=1000")


def test_multirun_with_ddp_is_refused_before_any_job(tmp_path: Path) -> None:
    result = sweep(tmp_path, "trainer.strategy=ddp", "trainer.devices=2", "seed=1,2")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: multirun (-m) over runs on several devices")
    assert not list(tmp_path.glob("*/.hydra"))


@pytest.mark.parametrize(
    ("accelerator", "devices", "num_nodes", "gpus", "launches"),
    [
        ("gpu", 2, 1, 2, True),  # Lightning picks DDP for several devices, strategy "auto"
        ("gpu", -1, 1, 2, True),
        ("gpu", "-1", 1, 2, True),
        ("gpu", "auto", 1, 4, True),
        ("auto", "auto", 1, 2, True),
        ("gpu", "2", 1, 2, True),
        ("gpu", "0,1", 1, 2, True),
        ("gpu", [0, 1], 1, 2, True),
        ("gpu", "auto", 1, 1, False),
        ("gpu", "0,", 1, 2, False),  # GPU 0 alone
        ("gpu", [1], 1, 2, False),
        ("gpu", 1, 1, 8, False),
        ("gpu", 1, 2, 1, True),  # one GPU on each of two nodes
        ("cpu", "auto", 1, 0, False),
        ("cpu", 2, 1, 0, True),
        ("auto", "auto", 1, 0, False),
    ],
)
def test_the_multirun_guard_sees_every_multi_device_spelling(
    monkeypatch: pytest.MonkeyPatch,
    accelerator: str,
    devices: object,
    num_nodes: int,
    gpus: int,
    launches: bool,
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    trainer = OmegaConf.create(
        {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes, "strategy": "auto"}
    )
    assert launches_processes(trainer) is launches


def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    pattern = f"hydra.run.dir={tmp_path}/" + "${now:%Y-%m-%d_%H-%M-%S_%f}"
    command = [sys.executable, str(ROOT / "train.py"), "debug=fast_dev_run", pattern]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    folders = list(tmp_path.iterdir())
    assert len(folders) == 2  # microseconds in the name keep even same-second starts apart
    assert all((folder / "train.log").is_file() for folder in folders)
