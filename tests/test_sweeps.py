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
from conftest import CONF_DIR, QUIET, ROOT, run_cli, tree_digest
from omegaconf import OmegaConf

from linreg.sweep.callbacks import launches_processes

TINY = ("data.n_samples=2000", "trainer.max_epochs=2", "logger=none", *QUIET)


def sweep(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["-m", *TINY, *args, f"hydra.sweep.dir={sweep_dir}"], None)


def job_names(sweep_dir: Path) -> list[str]:
    """The job folders, in job order (Hydra's job number, which a grid's folder names leave out)."""
    folders = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    number = {p.name: OmegaConf.load(p / ".hydra" / "hydra.yaml").hydra.job.num for p in folders}
    return sorted(number, key=number.get)


def report_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "report.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_grid_runs_every_combination_in_its_own_folder_and_reports_them(tmp_path: Path) -> None:
    result = sweep(tmp_path, "optimizer=sgd,adam", "optimizer.lr=0.01,0.1")
    assert result.returncode == 0, result.stderr
    jobs = job_names(tmp_path)
    # Named by what the sweep varies (TensorBoard's run names), not by the shared settings; a
    # group's choice by its name.
    assert jobs == ["sgd,lr=0.01", "sgd,lr=0.1", "adam,lr=0.01", "adam,lr=0.1"]
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
    assert again.stdout.startswith("| job | overrides | status | objective | vs_best |")
    assert rows[0]["vs_best"] == "best" and all(row["vs_best"] for row in rows)


@pytest.mark.slow
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


@pytest.mark.slow
def test_optuna_search_runs_n_trials_and_resumes_from_storage_without_repeating(
    tmp_path: Path,
) -> None:
    first = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr
    assert "A new study created" not in first.stdout + first.stderr  # Optuna's INFO lines
    assert [name.split("-")[0] for name in job_names(tmp_path)] == ["0", "1", "2"]
    first_trials = searched(tmp_path)
    assert all(
        t[0].startswith("optimizer=") and t[1].startswith("optimizer.lr=") for t in first_trials
    )

    resumed = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert resumed.returncode == 0, resumed.stderr
    jobs = job_names(tmp_path)
    assert [name.split("-")[0] for name in jobs] == ["0", "1", "2", "3", "4"]
    searched_optimizers = ("sgd", "adam", "adamw", "rmsprop")  # conf/hparams_search/optuna.yaml
    assert all(name.split("-", 1)[1].split(",")[0] in searched_optimizers for name in jobs), jobs
    all_trials = searched(tmp_path)
    assert set(first_trials) < set(all_trials)
    assert len(set(all_trials)) == 5  # no settings tried twice

    complete = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert "5 trials done, 0 to run" in complete.stdout + complete.stderr
    best = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert best.best_value == min(float(r["val/loss"]) for r in report_rows(tmp_path))

    # A damaged job record: the resumed search's report says so instead of keeping the old one.
    (tmp_path / jobs[1] / "metrics.json").write_text('{"status": "comp')
    again = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=5")
    assert again.returncode == 0, again.stderr
    assert {r["job"]: r["status"] for r in report_rows(tmp_path)}[jobs[1]] == "unreadable"


@pytest.mark.slow
def test_a_trial_killed_mid_search_is_run_again_and_not_counted_as_done(tmp_path: Path) -> None:
    import optuna

    from hydra_plugins.linreg_optuna_sweeper.optuna_sweeper import distribution

    first = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr
    # A third trial the search started and was killed in (SIGKILL leaves it RUNNING).
    study = optuna.load_study(study_name="linreg", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    params = OmegaConf.load(ROOT / "conf" / "hparams_search" / "optuna.yaml").hydra.sweeper.params
    space = {name: distribution(name, dict(spec)) for name, spec in params.items()}
    study.enqueue_trial({"optimizer": "adam", "optimizer.lr": 0.05, "data.batch_size": 64})
    killed = study.ask(space)
    assert killed.params["optimizer"] == "adam"

    resumed = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    assert resumed.returncode == 0, resumed.stderr
    assert "2 trials done, 1 to run" in resumed.stdout + resumed.stderr
    assert job_names(tmp_path)[-1] == "3-adam,lr=0.05,batch_size=64"  # a trial: numbered
    again = sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3")
    assert "3 trials done, 0 to run" in again.stdout + again.stderr


@pytest.mark.slow
def test_two_sweeps_into_one_folder_at_once_are_one_sweep_and_one_refusal(tmp_path: Path) -> None:
    grids = ("seed=1,2", "optimizer=sgd,adam")
    commands = [
        [sys.executable, str(ROOT / "train.py"), "-m", *TINY, grid, f"hydra.sweep.dir={tmp_path}"]
        for grid in grids
    ]
    sweeps = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for command in commands
    ]  # fmt: skip
    results = [(process.wait(timeout=300), process.communicate()) for process in sweeps]
    assert sorted(status for status, _ in results) == [0, 1]
    _, (_, refusal) = next(result for result in results if result[0] == 1)
    assert refusal.strip().startswith(f"error: {tmp_path} is being swept by process ")
    assert len(refusal.strip().splitlines()) == 1
    winner, loser = sorted(grids, key=lambda grid: results[grids.index(grid)][0])
    rows = report_rows(tmp_path)
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert all(f" {winner.split('=')[0]}=" in row["overrides"] for row in rows)
    assert not any(f" {loser.split('=')[0]}=" in row["overrides"] for row in rows)
    assert len(job_names(tmp_path)) == 2


@pytest.mark.slow
def test_a_sweep_folder_holding_another_sweep_or_a_finished_grid_is_refused(tmp_path: Path) -> None:
    assert sweep(tmp_path, "seed=1,2").returncode == 0
    before = tree_digest(tmp_path)
    other = sweep(tmp_path, "optimizer=sgd,adam")
    assert other.returncode == 1
    assert other.stderr.strip() == (
        f"error: hydra.sweep.dir={tmp_path} holds another sweep ({' '.join(TINY)} seed=1,2); "
        "one folder holds one sweep: choose a new hydra.sweep.dir"
    )
    again = sweep(tmp_path, "seed=1,2")
    assert again.returncode == 1
    assert again.stderr.strip().startswith(
        f"error: hydra.sweep.dir={tmp_path} holds this sweep's jobs already, and a grid sweep is "
        "not resumed"
    )
    assert tree_digest(tmp_path) == before


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_cores_each(tmp_path: Path) -> None:
    result = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2")
    assert result.returncode == 0, result.stderr
    assert job_names(tmp_path) == ["seed=1", "seed=2"]
    for job in job_names(tmp_path):
        summary = json.loads((tmp_path / job / "metrics.json").read_text())
        assert summary["status"] == "completed"
        assert summary["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


@pytest.mark.slow
def test_a_diverging_job_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = sweep(tmp_path, "optimizer=sgd", "optimizer.lr=1000,0.05,0.1")
    assert result.returncode == 0, result.stderr
    failed = json.loads((tmp_path / "lr=1000" / "metrics.json").read_text())
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


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    pattern = f"hydra.run.dir={tmp_path}/" + "${now:%Y-%m-%d_%H-%M-%S_%f}"
    command = [sys.executable, str(ROOT / "train.py"), "debug=fast_dev_run", pattern]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    folders = list(tmp_path.iterdir())
    assert len(folders) == 2  # microseconds in the name keep even same-second starts apart
    assert all((folder / "train.log").is_file() for folder in folders)


def test_a_job_folder_is_named_by_the_values_the_sweep_varies(tmp_path: Path) -> None:
    from linreg.config.resolvers import GRID_SWEEPER, sweep_job_dir

    OmegaConf.save(
        {"hydra": {"overrides": {"task": ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01",
                                          "scheduler.lr=1,2", "data.path=a/b c.csv",
                                          "trainer.max_epochs=5"]},
                   "sweeper": {"params": {"seed": "1,2"}}}},
        tmp_path / "multirun.yaml",
    )  # fmt: skip
    job = ["optimizer=adam", "optimizer.lr=0.01", "scheduler.lr=2", "data.path=a/b c.csv",
           "trainer.max_epochs=5", "seed=2"]  # fmt: skip
    # Shared settings (max_epochs, path) are left out; a last part two keys share stays whole; a
    # group's choice reads as its name; a grid's jobs need no number.
    choices = {"optimizer": "adam", "data": "table"}
    assert sweep_job_dir(7, job, None, str(tmp_path), GRID_SWEEPER, choices) == (
        "adam,optimizer.lr=0.01,scheduler.lr=2,seed=2"
    )
    # Optuna's search space is its sweeper's params; searched numbers in four digits; a trial
    # (which may draw the values of another) keeps its number.
    optuna = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    searched = ["optimizer=adamw", "optimizer.lr=0.0024348773534554596", "data.batch_size=256"]
    params = {"optimizer": "choice(sgd, adamw)", "optimizer.lr": "interval(0.001, 0.1)",
              "data.batch_size": "choice(64, 256)"}  # fmt: skip
    assert sweep_job_dir(0, searched, params, str(tmp_path / "none"), optuna, choices) == (
        "0-adamw,lr=0.002435,batch_size=256"
    )
    # A grid whose values would read alike keeps the numbers: a value given twice, or two long
    # numbers equal to four digits.
    for values, name in (("1,1", "1-lr=1"), ("0.0024348773534554596,0.00243487", "1-lr=0.002435")):
        OmegaConf.save({"hydra": {"overrides": {"task": [f"optimizer.lr={values}"]}}},
                       tmp_path / "multirun.yaml")  # fmt: skip
        lr = values.split(",")[0]
        assert sweep_job_dir(1, [f"optimizer.lr={lr}"], None, str(tmp_path)) == name
    # A swept path becomes one folder name; a multirun of one job keeps its number.
    assert sweep_job_dir(1, ["data.path=x/y z.csv"], {"data.path": "a.csv,x/y z.csv"}, "") == (
        "path=x_y_z.csv"
    )
    assert sweep_job_dir(3, ["seed=1"], None, str(tmp_path / "none")) == "3"


@pytest.mark.slow
def test_the_report_figure_shows_the_winner_by_how_much_and_how_it_got_there(
    tmp_path: Path,
) -> None:
    from matplotlib.colors import to_hex

    from linreg.sweep.plot import report_figure
    from linreg.sweep.report import collect

    result = sweep(tmp_path, "optimizer=sgd,adam", "optimizer.lr=0.05,0.3,1000",
                   "logger=tensorboard")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = collect(tmp_path)
    finished = [row for row in rows if row["status"] == "completed"]
    assert "failed" in {row["status"] for row in rows}  # SGD at lr=1000 diverges
    figure = report_figure(tmp_path, rows, "val/loss", searched=False)
    figure.canvas.draw()
    ranking, by_setting, curves = (axes for axes in figure.axes if axes.get_visible())
    assert ranking.get_title() == "jobs, best first"
    assert by_setting.get_title() == "val/loss by lr"
    assert curves.get_title().startswith(f"how the best {min(4, len(finished))} got there")
    # The first epochs (lr=0.05 starts far off) do not flatten the end, where the runs differ:
    # cut a little above the highest last value (at most 4x the lowest).
    lowest = min(min(line.get_ydata()) for line in curves.lines)
    last = max(line.get_ydata()[-1] for line in curves.lines)
    top = min(4 * lowest, lowest + 3 * (last - lowest) + 0.02 * lowest)
    if max(max(line.get_ydata()) for line in curves.lines) > top:
        assert curves.get_ylim()[1] == pytest.approx(top)
        assert curves.get_title().endswith(f"(cut at {top / lowest:.3g}x the lowest)")
    assert figure.get_suptitle() == (
        f"sweep {tmp_path.name}: 6 jobs on synthetic data, 2,000 rows x 8 features"
    )
    assert ranking.get_xlabel().startswith("val/loss (target units²)") or "% above" in (
        ranking.get_xlabel()
    )
    assert curves.get_ylabel() == "val/loss (target units²)"
    # Best at the top, each other job by how much it is behind, a failed one by its status.
    notes = [text.get_text() for text in ranking.texts]
    assert notes[0] == "best"
    best = finished[0]["objective"]
    behind = float(notes[1].split(" %")[0].removeprefix("+").replace(",", ""))
    assert behind == pytest.approx(100 * (finished[1]["objective"] / best - 1), rel=0.05)
    assert "failed" in notes
    labels = [label.get_text() for label in ranking.get_yticklabels()]
    settings = dict(item.split("=", 1) for item in finished[0]["overrides"].split())
    assert labels[0] == f"optimizer={settings['optimizer']}\nlr={settings['optimizer.lr']}"
    # One colour per optimizer in every panel.
    bars = ranking.patches  # the finished jobs; the failed ones are labels with their status
    bar_colour = {
        label: to_hex(bar.get_facecolor())
        for label, bar in zip(labels[: len(bars)], bars, strict=True)
    }
    line_colour = {
        line.get_label().replace(", ", "\n"): to_hex(line.get_color()) for line in curves.lines
    }
    for label, colour in line_colour.items():
        assert bar_colour[label] == colour
    by_optimizer = {}
    for label, colour in bar_colour.items():
        by_optimizer.setdefault(label.split("\n")[0], set()).add(colour)
    assert all(len(colours) == 1 for colours in by_optimizer.values())
    assert len(set.union(*by_optimizer.values())) == 2
    # One legend, under the panels: the curves' jobs.
    assert [axes.get_legend() for axes in (ranking, by_setting, curves)] == [None, None, None]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        line.get_label() for line in curves.lines
    ]
    # Epochs on the x axis, plain numbers on every axis.
    assert curves.get_xlabel() == "epoch"
    assert list(curves.lines[0].get_xdata()) == [1, 2]
    for axes in (ranking, by_setting, curves):
        ticks = [*axes.get_xticklabels(), *axes.get_yticklabels()]
        assert not any("$" in tick.get_text() or "e-" in tick.get_text() for tick in ticks)
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_report_and_its_picture_say_which_differences_are_within_noise() -> None:
    from linreg.sweep.plot import report_figure
    from linreg.sweep.ranking import versus_best
    from linreg.sweep.report import markdown

    rows = [
        {"job": f"{n}-optimizer={name}", "overrides": f"optimizer={name}", "status": status,
         "objective": value, "objective_std_error": error}
        for n, name, status, value, error in [
            (0, "sgd", "completed", 0.2500, 0.006), (1, "adam", "completed", 0.2501, 0.006),
            (2, "rmsprop", "completed", 0.30, 0.007), (3, "adamw", "failed", None, None)]
    ]  # fmt: skip
    versus_best(rows)
    # 0.0001 apart with standard errors of 0.006: a tie; 0.05 apart: a real difference.
    assert [row.get("vs_best") for row in rows] == ["best", "+0.04 % (within noise)", "+20 %",
                                                    None]  # fmt: skip
    header, _, *lines = markdown(rows).splitlines()
    assert header.startswith("| job | overrides | status | objective | vs_best |")
    assert "| 0.2501 | +0.04 % (within noise) | 0.006 |" in lines[1]
    figure = report_figure(Path("no-such-sweep"), rows, "val/loss", searched=False)
    figure.canvas.draw()
    notes = [text.get_text() for text in figure.axes[0].texts]
    assert notes == ["best", "+0.04 % (within noise)", "+20 %", "failed"]


def test_the_ranking_shows_every_job_when_a_few_are_far_behind() -> None:
    from linreg.sweep.plot import report_figure

    # A 12-job grid: 8 near the noise floor, 4 with learning rates too high or too low.
    values = [0.2485, 0.2486, 0.2487, 0.2488, 0.249, 0.2491, 0.2493, 0.2495, 3.2, 41, 560, 9000]
    rows = [{"job": f"{n}-optimizer=sgd,lr={n}", "overrides": f"optimizer=sgd optimizer.lr={n}",
             "status": "completed", "objective": float(value)}
            for n, value in enumerate(values)]  # fmt: skip
    figure = report_figure(Path("no-such-sweep"), rows, "val/loss", searched=False)
    figure.canvas.draw()
    ranking = figure.axes[0]
    assert ranking.get_xscale() == "log"
    low, high = ranking.get_xlim()
    assert len(ranking.patches) == 12
    for bar in ranking.patches:  # every bar starts and ends inside the axis
        assert low <= bar.get_x() < bar.get_x() + bar.get_width() <= high
    assert low == pytest.approx(values[0] / 2)
    assert [text.get_text() for text in ranking.texts][:2] == ["best", "+0.04 %"]


def test_a_narrow_range_reads_as_plain_numbers_and_a_search_by_trial_and_value() -> None:
    from linreg.sweep.plot import report_figure

    rows = [
        {"job": f"{n}-optimizer={o},lr={lr}", "overrides": f"optimizer={o} optimizer.lr={lr}",
         "status": "completed", "objective": value}
        for n, o, lr, value in [(2, "adam", 0.013, 0.24855), (0, "sgd", 0.2, 0.24861),
                                (1, "adam", 0.0021, 0.2489)]
    ]  # fmt: skip
    figure = report_figure(Path("no-such-sweep"), rows, "val/loss", searched=True)
    figure.canvas.draw()
    ranking, by_trial, by_lr = (axes for axes in figure.axes if axes.get_visible())
    assert ranking.get_xscale() == "linear"  # within ten-fold: linear, no offset, no exponent
    ticks = [tick.get_text() for tick in by_trial.get_yticklabels()]
    assert ticks and all(tick.replace(".", "").replace("\u2212", "").isdigit() for tick in ticks)
    assert by_trial.get_xlabel() == "trial"
    best_so_far = next(line for line in by_trial.lines if line.get_label() == "best so far")
    assert list(best_so_far.get_ydata()) == [0.24861, 0.24861, 0.24855]
    assert by_lr.get_title() == "val/loss by optimizer.lr (searched)"
    assert by_lr.get_xscale() == "log"  # 0.0021 to 0.2
