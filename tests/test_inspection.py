"""Inspection: what TensorBoard shows (read back through its own HTTP API), what the console
prints, and the debug modes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, QUIET, ROOT, run_cli
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from linreg.console import summary_table


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def test_event_files_hold_figures_weight_histograms_and_the_graph(trained_run: Path) -> None:
    tags = events(trained_run).Tags()
    assert set(tags["images"]) == {
        "figures/coefficients",  # the best checkpoint's, next to least squares
        "figures/test/predicted_vs_true",
        "figures/test/residuals",
        "figures/test/weights_vs_truth",
    }
    assert set(tags["histograms"]) == {"weights/linear.weight", "weights/linear.bias"}
    assert tags["graph"] is True
    assert "train/grad_norm" in tags["scalars"]


def test_weight_histograms_are_written_every_epoch(trained_run: Path) -> None:
    histograms = events(trained_run).Histograms("weights/linear.weight")
    assert len(histograms) == 6
    assert [h.step for h in histograms] == sorted({h.step for h in histograms})


@pytest.mark.slow
def test_figures_every_n_epochs_adds_validation_figures(tmp_path: Path) -> None:
    result = run_cli([*FAST, "callbacks.tensorboard_insights.figures_every_n_epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = events(tmp_path)
    validation = scalars.Images("figures/val/residuals")
    (tested,) = scalars.Images("figures/test/residuals")
    # Beside the epoch's scalars and histograms, at the same steps.
    epoch_steps = [event.step for event in scalars.Scalars("val/loss")]
    assert [h.step for h in scalars.Histograms("weights/linear.weight")] == epoch_steps
    assert [image.step for image in validation] == epoch_steps[1::2]  # epochs 2, 4 and 6
    # The test figures are of the checkpoint that was tested, at its step.
    best = json.loads((tmp_path / "metrics.json").read_text())["paths"]["best_checkpoint"]
    assert tested.step == torch.load(tmp_path / best, weights_only=True)["global_step"]
    assert validation[0].width > 100 and validation[0].height > 100


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, body: dict[str, object] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve_tensorboard(logdir: Path) -> Iterator[str]:
    """TensorBoard over `logdir` in its own process; yields its address once it lists runs."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if fetch(f"{base}/data/runs"):
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                "tensorboard did not start"
            )
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def tensorboard_server(trained_run: Path) -> Iterator[str]:
    with serve_tensorboard(trained_run) as base:
        yield base


def test_tensorboard_serves_the_runs_scalars_images_and_hparams(tensorboard_server: str) -> None:
    scalars = fetch(f"{tensorboard_server}/data/plugin/scalars/tags")["tensorboard"]
    assert {"train/loss", "val/loss", "test/mse", "train/lr", "params/weight_error"} <= set(scalars)
    images = fetch(f"{tensorboard_server}/data/plugin/images/tags")["tensorboard"]
    assert "figures/test/predicted_vs_true" in images
    histograms = fetch(f"{tensorboard_server}/data/plugin/histograms/tags")["tensorboard"]
    assert "weights/linear.weight" in histograms

    experiment = fetch(
        f"{tensorboard_server}/data/plugin/hparams/experiment", {"experimentName": ""}
    )
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"optimizer.lr", "optimizer._target_", "data.n_samples", "seed"} <= hparams
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics[:2] == ["hp/test/mse", "hp/val/loss"]  # the ranking metrics lead


def test_the_scalars_hold_a_within_epoch_training_curve_and_two_ranking_metrics(
    trained_run: Path,
) -> None:
    scalars = events(trained_run)
    tags = scalars.Tags()["scalars"]
    # The final metrics are test/* scalars already: hp/* adds only what ranks runs.
    assert sorted(tag for tag in tags if tag.startswith("hp/")) == ["hp/test/mse", "hp/val/loss"]
    last_step = max(event.step for event in scalars.Scalars("test/mse"))
    assert [event.step for event in scalars.Scalars("hp/test/mse")] == [last_step]
    (best,) = scalars.Scalars("hp/val/loss")
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert best.value == pytest.approx(summary["objective"]["value"])  # the tested checkpoint's
    lowest = min(e.value for e in scalars.Scalars("val/loss"))  # within 1200 rows' resolution
    assert lowest <= best.value <= lowest * (1 + (2 / 1200) ** 0.5)
    # Several training-curve points per epoch (8000 rows: 5600 / 64 = 88 batches, 6 executions).
    epochs = len(scalars.Scalars("train/epoch_loss"))
    assert len(scalars.Scalars("train/loss")) == 6 * epochs
    assert len(scalars.Scalars("train/lr")) == 6 * epochs


@pytest.mark.slow
def test_a_long_epoch_is_thinned_to_at_most_32_training_curve_points(tmp_path: Path) -> None:
    result = run_cli(
        [*QUIET, "data.n_samples=40000", "data.batch_size=16", "model.steps_per_execution=1",
         "trainer.max_epochs=1", "export.enabled=false", "data.max_batches_per_epoch=null"],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # 28,000 rows in 1,750 batches: every 55th is written.
    assert len(events(tmp_path).Scalars("train/loss")) == 1750 // 55


def test_summary_table_shows_the_numbers_of_metrics_json(trained_run: Path) -> None:
    summary = json.loads((trained_run / "metrics.json").read_text())
    console = Console(record=True, width=120)
    console.print(summary_table(summary))
    text = console.export_text()
    metrics = summary["metrics"]
    for name in ("val/loss", "test/mse", "reference/test_mse", "test/r2", "params/weight_error"):
        assert f"{metrics[name]:.6g}" in text, name
    assert f"{100 * summary['test_mse_gap_to_reference']:+.2f}%" in text
    assert f"{summary['wall_time_s']:.1f} s" in text


def test_config_tree_is_saved_in_the_run_folder(trained_run: Path) -> None:
    tree = (trained_run / "config_tree.txt").read_text()
    assert tree.startswith("config")
    for line in ("_target_: torch.optim.SGD", "lr: 0.4", "n_samples: 8000", "max_epochs: 6"):
        assert line in tree


def test_console_without_a_terminal_prints_epoch_lines_a_summary_and_no_library_chatter(
    tmp_path: Path,
) -> None:
    result = run_cli([*FAST, "trainer.enable_progress_bar=true"], tmp_path)
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == [f"{n}/6" for n in range(1, 7)]
    # Each line shows its own epoch's mean training loss, the value TensorBoard has for it.
    shown = [float(line.split("train/epoch_loss ")[1].split()[0]) for line in epoch_lines]
    logged = [event.value for event in events(tmp_path).Scalars("train/epoch_loss")]
    assert shown == pytest.approx(logged, rel=1e-4)
    assert all("val/loss" in line for line in epoch_lines)
    assert "\r" not in result.stdout
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert "run summary" in result.stdout
    assert f"{summary['metrics']['test/mse']:.6g}" in result.stdout
    assert f"tensorboard --logdir {tmp_path}" in result.stdout
    output = result.stdout + result.stderr
    for chatter in ("Tip:", "LeafSpec", "torchvision", "[torch.onnx]", "onnx_ir", "stepping batch"):
        assert chatter not in output


def test_the_console_shows_the_run_not_the_config_and_many_epochs_in_about_20_lines(
    tmp_path: Path,
) -> None:
    args = ["data.n_samples=2000", "trainer.max_epochs=45", "trainer.enable_progress_bar=true",
            "callbacks.early_stopping=null", "logger=none", "export.enabled=false"]  # fmt: skip
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"config           {tmp_path / 'config_tree.txt'}"
    epochs = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")]
    assert epochs == list(range(3, 46, 3))  # every third of 45, the last one included
    for chatter in ("GPU available", "Trainable params", "Restoring states", "_target_"):
        assert chatter not in result.stdout + result.stderr
    assert "GPU available" in (tmp_path / "train.log").read_text()  # kept in the log file


@pytest.mark.slow
def test_an_epoch_shorter_than_the_logging_interval_still_logs_its_own_training_loss(
    tmp_path: Path,
) -> None:
    # 2,800 training rows in single passes: 11 batches, one execution of 16 per epoch, under the
    # interval of 4.
    result = run_cli(["data.n_samples=4000", "trainer.max_epochs=5",
                      "data.min_batches_per_epoch=null", *QUIET], tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "logging interval" not in result.stderr
    scalars = events(tmp_path)
    steps = [event.step for event in scalars.Scalars("train/loss")]
    window = [event.value for event in scalars.Scalars("train/loss")]
    epoch = [event.value for event in scalars.Scalars("train/epoch_loss")]
    assert len(steps) == len(epoch) == 5
    assert window == pytest.approx(epoch, rel=1e-5)  # one execution: the window is the epoch
    assert len(set(epoch)) == 5 and epoch[-1] < epoch[0]


@pytest.mark.slow
def test_debug_fast_dev_run_runs_one_batch_per_stage_and_saves_nothing(tmp_path: Path) -> None:
    result = run_cli(["debug=fast_dev_run"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fast_dev_run: one training step (16 batches), one batch of val and test ran" in (
        result.stdout
    )
    written = sorted(p.name for p in tmp_path.iterdir() if p.name not in (".hydra", ".lock"))
    assert written == ["config_tree.txt", "train.log"]


@pytest.mark.slow
def test_debug_overfit_drives_the_training_loss_below_the_noise_floor(tmp_path: Path) -> None:
    result = run_cli(["debug=overfit", "trainer.enable_progress_bar=false"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "overfit" not in result.stderr  # Lightning's notes
    losses = [event.value for event in events(tmp_path).Scalars("train/loss")]
    assert losses[0] > 100
    # Only memorising the batch, noise included, gets below noise_std**2 = 0.25.
    assert losses[-1] < 0.025


@pytest.mark.slow
def test_debug_profiler_saves_its_report_in_the_run_folder(tmp_path: Path) -> None:
    result = run_cli([*FAST, "debug=profiler"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "fit-profile.txt").read_text()
    assert "FIT Profiler Report" in report
    assert "run_training_epoch" in report
    assert (tmp_path / "test-profile.txt").is_file()


@pytest.mark.slow
def test_debug_limit_runs_a_fraction_of_the_batches(tmp_path: Path) -> None:
    # Without FAST's max_epochs: a value given on the command line wins over the debug mode's.
    result = run_cli(["data.n_samples=8000", "data.batch_size=64", "debug=limit"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    batches_per_epoch = -(-int(8000 * 0.7) // 64)  # 88
    assert summary["epochs"] == 3
    assert summary["global_step"] == summary["optimizer_steps"] == 3 * int(0.1 * batches_per_epoch)


@pytest.mark.slow
def test_the_tensorboard_hint_runs_as_printed_and_only_when_there_is_tensorboard(
    tmp_path: Path,
) -> None:
    result = run_cli(list(FAST), tmp_path / "tensorboard")
    assert result.returncode == 0, result.stderr
    (hint,) = [line for line in result.stdout.splitlines() if line.startswith("inspect with")]
    command, flag, folder = hint.split()[2:]
    assert (flag, folder) == ("--logdir", str(tmp_path / "tensorboard"))
    # Run from where the run was started, without an activated environment.
    version = subprocess.run([command, "--version"], cwd=ROOT, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert version.returncode == 0, version.stderr
    csv_only = run_cli([*FAST, "logger=csv"], tmp_path / "csv")
    assert csv_only.returncode == 0, csv_only.stderr
    assert "inspect with" not in csv_only.stdout


@pytest.mark.parametrize(("n_targets", "n_features"), [(1, 8), (3, 64), (3, 1400), (12, 1400)])
def test_figures_keep_a_readable_size_for_many_targets_and_features(
    n_targets: int, n_features: int
) -> None:
    # Before: 1,400 features drew a 70,200-pixel-wide strip of bars.
    from linreg.diagnostics import figures

    rng = np.random.default_rng(0)
    learned, truth = rng.normal(size=(2, n_targets, n_features))
    rows = rng.normal(size=(2, 50, n_targets))
    drawn = [figures.weights_vs_truth(learned, truth), figures.predicted_vs_true(*rows, "test")]
    for figure in drawn:
        width, height = figure.get_size_inches() * figure.dpi
        assert width <= 1600 and height <= 800
        assert len([axes for axes in figure.axes if axes.get_visible()]) == min(n_targets, 8)
        expected = "the first 8 of 12 targets" if n_targets > 8 else ""
        assert figure.get_suptitle() == expected
    bars = drawn[0].axes[0].patches
    assert len(bars) == (2 * n_features if n_features <= 40 else 0)  # a scatter beyond 40


@pytest.fixture(scope="module")
def optimizer_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two jobs, SGD and RMSprop, with TensorBoard: their folders and the sweep's console."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    result = run_cli(
        ["-m", *QUIET, "data.n_samples=2000", "trainer.max_epochs=2", "optimizer=sgd,rmsprop",
         f"hydra.sweep.dir={sweep_dir}"], None,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return sweep_dir, result.stdout


def test_hparams_of_a_sweep_open_on_what_differs_with_every_optimizers_settings(
    optimizer_sweep: tuple[Path, str],
) -> None:
    from conftest import compose_config

    from linreg.run.record import flatten_hparams

    sweep_dir, _ = optimizer_sweep
    sgd, rmsprop = (flatten_hparams(compose_config([f"optimizer={o}"])) for o in ("sgd", "rmsprop"))
    differing = sorted(k for k in sgd.keys() & rmsprop.keys() if sgd[k] != rmsprop[k])
    assert {"optimizer._target_", "optimizer.lr"} <= set(differing)
    with serve_tensorboard(sweep_dir) as base:
        runs = fetch(f"{base}/data/runs")
        experiment = fetch(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        layout = fetch(f"{base}/data/plugin/custom_scalars/layout")
    # Runs named by what the sweep varies, wherever TensorBoard shows a run.
    assert runs == ["0-optimizer=sgd/tensorboard", "1-optimizer=rmsprop/tensorboard"]
    infos = experiment["hparamInfos"]
    names = [info["name"] for info in infos]
    # The differing settings first (the tab ticks the first five), marked as differing.
    assert names[: len(differing)] == differing
    assert {info["name"] for info in infos if info.get("differs")} == set(differing)
    # Both optimizers' own settings, the run's folder not.
    own = {"optimizer.momentum", "optimizer.nesterov", "optimizer.alpha", "optimizer.centered"}
    assert own <= set(names)
    assert set(names) == (sgd.keys() | rmsprop.keys())
    assert not any("dir" in name or "path" in name for name in names if name.startswith("trainer"))
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics[:2] == ["hp/test/mse", "hp/val/loss"]
    # Custom Scalars tells the run's story in order: loss and lr, validation, parameters.
    categories = [category["title"] for category in layout["category"]]
    assert categories == ["1 loss and learning rate", "2 validation metrics", "3 parameters"]
    loss_chart = layout["category"][0]["chart"][0]["multiline"]["tag"]
    assert loss_chart == ["^train/loss$", "^train/epoch_loss$", "^val/loss$"]


def test_a_sweep_prints_one_line_per_job_and_the_report(
    optimizer_sweep: tuple[Path, str],
) -> None:
    sweep_dir, stdout = optimizer_sweep
    lines = stdout.splitlines()
    jobs = [line for line in lines if line.startswith("job ")]
    assert [line.split()[1] for line in jobs] == ["0-optimizer=sgd", "1-optimizer=rmsprop"]
    summary = json.loads((sweep_dir / "0-optimizer=sgd" / "metrics.json").read_text())
    assert f"val/loss {summary['objective']['value']:.5g}" in jobs[0]
    assert "% vs least squares" in jobs[0]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 2  # header, rule, a row per job
    # No epoch lines, summary tables or library chatter: only where the report was written.
    rest = [line for line in lines if line not in jobs and line not in table]
    assert rest == [f"sweep report     {sweep_dir / 'report.csv'} (report.md, report.png)"]
    assert len(list(sweep_dir.glob("*/config_tree.txt"))) == 2  # saved, not printed


@pytest.mark.slow
def test_a_fresh_machines_font_cache_build_stays_off_the_console(tmp_path: Path) -> None:
    # An empty matplotlib config folder: the figures' first import builds the font cache, which
    # matplotlib logs ("generated new fontManager"; after 5 s also "building the font cache").
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "matplotlib")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *FAST, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "matplotlib").is_dir()  # the cache was built in this run
    console = result.stdout + result.stderr
    assert "fontManager" not in console and "font cache" not in console
    assert "[INFO]" not in console and "[WARNING]" not in console
