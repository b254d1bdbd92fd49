"""Inspection: what TensorBoard shows (read back through its own HTTP API), what the console
prints, and the debug modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, QUIET, ROOT, run_cli
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from linreg.console import summary_table

sys.path.insert(0, str(ROOT / "scripts"))
from screenshots import browser, fetch, screenshot, serve_tensorboard


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "histograms": 0})
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
    assert set(tags["histograms"]) == {"model/standardised_effects"}
    assert tags["graph"] is True
    assert "train/grad_norm" in tags["scalars"]


def test_weight_histograms_are_written_every_epoch(trained_run: Path) -> None:
    accumulator = events(trained_run)
    histograms = accumulator.Histograms("model/standardised_effects")
    assert len(histograms) == 6
    assert [h.step for h in histograms] == sorted({h.step for h in histograms})
    # The last epoch's: the standardised effects of the coefficients the summary reports (the
    # last epoch's model, not the best one, which may be another epoch's).
    last = histograms[-1].histogram_value
    assert last.num == 8
    summary = json.loads((trained_run / "metrics.json").read_text())
    (rows,) = summary["coefficients"].values()
    (intercept,) = accumulator.Scalars("model/intercept/y0")[-1:]
    assert intercept.value == pytest.approx(rows["(intercept)"]["trained"], abs=0.05)


@pytest.mark.slow
def test_figures_every_n_epochs_adds_validation_figures(tmp_path: Path) -> None:
    result = run_cli([*FAST, "callbacks.tensorboard_insights.figures_every_n_epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr
    scalars = events(tmp_path)
    validation = scalars.Images("figures/val/residuals")
    (tested,) = scalars.Images("figures/test/residuals")
    # Beside the epoch's scalars and histograms, at the same steps.
    epoch_steps = [event.step for event in scalars.Scalars("val/loss")]
    assert [h.step for h in scalars.Histograms("model/standardised_effects")] == epoch_steps
    assert [image.step for image in validation] == epoch_steps[1::2]  # epochs 2, 4 and 6
    # The test figures are of the checkpoint that was tested, at its step.
    best = json.loads((tmp_path / "metrics.json").read_text())["paths"]["best_checkpoint"]
    assert tested.step == torch.load(tmp_path / best, weights_only=True)["global_step"]
    assert validation[0].width > 100 and validation[0].height > 100


def test_the_screenshot_script_without_a_browser_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots.py")],
        env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "no Chromium found (looked for chromium, chromium-browser, google-chrome, chrome): "
        "install it, e.g. apt-get install chromium, to take the screenshots\n"
    )


@pytest.mark.slow
@pytest.mark.skipif(browser() is None, reason="needs Chromium (apt-get install chromium)")
def test_a_real_browser_renders_the_runs_summary_in_the_text_tab(
    trained_run: Path, tmp_path: Path
) -> None:
    from matplotlib.image import imread

    with serve_tensorboard(trained_run) as base:
        screenshot(browser(), f"{base}/#text", tmp_path / "text.png")
    pixels = imread(tmp_path / "text.png")
    assert pixels.shape[:2] == (1000, 1400)
    # A rendered page (tables of text), not a blank or an error page: many shades, and dark
    # text over at least a five-hundredth of it.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50
    assert (pixels[..., :3].mean(axis=2) < 0.3).mean() > 0.002


@pytest.fixture
def tensorboard_server(trained_run: Path) -> Iterator[str]:
    with serve_tensorboard(trained_run) as base:
        yield base


def test_tensorboard_serves_the_runs_scalars_images_and_hparams(tensorboard_server: str) -> None:
    scalars = fetch(f"{tensorboard_server}/data/plugin/scalars/tags")["."]
    assert {"train/loss", "val/loss", "test/mse", "train/lr", "params/weight_error"} <= set(scalars)
    images = fetch(f"{tensorboard_server}/data/plugin/images/tags")["."]
    assert "figures/test/predicted_vs_true" in images
    histograms = fetch(f"{tensorboard_server}/data/plugin/histograms/tags")["."]
    assert "model/standardised_effects" in histograms

    experiment = fetch(
        f"{tensorboard_server}/data/plugin/hparams/experiment", {"experimentName": ""}
    )
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"optimizer", "optimizer.lr", "data", "data.n_samples", "model", "seed"} <= hparams
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics[:3] == ["hp/objective", "hp/test/mse", "hp/test_gap"]  # as the report ranks


def test_the_scalars_hold_a_within_epoch_training_curve_and_two_ranking_metrics(
    trained_run: Path,
) -> None:
    scalars = events(trained_run)
    tags = scalars.Tags()["scalars"]
    # The final metrics are test/* scalars already: hp/* adds only what ranks runs.
    hp_tags = sorted(tag for tag in tags if tag.startswith("hp/"))
    assert hp_tags == ["hp/objective", "hp/test/mse", "hp/test_gap"]
    last_step = max(event.step for event in scalars.Scalars("test/mse"))
    assert [event.step for event in scalars.Scalars("hp/test/mse")] == [last_step]
    (best,) = scalars.Scalars("hp/objective")
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert summary["objective"]["name"] == "val/loss"
    (gap,) = scalars.Scalars("hp/test_gap")
    assert gap.value == pytest.approx(summary["metrics"]["reference/test_gap"], rel=1e-6)
    assert best.value == pytest.approx(summary["objective"]["value"])  # the tested checkpoint's
    lowest = min(e.value for e in scalars.Scalars("val/loss"))  # within 1200 rows' resolution
    assert lowest <= best.value <= lowest * (1 + (2 / 1200) ** 0.5)
    # Several training-curve points per epoch (8000 rows: 5600 / 64 = 88 batches, 6 executions).
    epochs = len(scalars.Scalars("train/epoch_loss"))
    # Written to the loggers at each execution's end, all three at Lightning's step axis.
    steps = [event.step for event in scalars.Scalars("train/loss")]
    assert steps == list(range(6 * epochs))
    assert [event.step for event in scalars.Scalars("train/lr")] == steps
    assert [event.step for event in scalars.Scalars("train/grad_norm")] == steps
    assert all(event.value > 0 for event in scalars.Scalars("train/grad_norm"))
    # What R² leaves unexplained, beside it at every step (R²'s ticks all read 0.999).
    r2, unexplained = (scalars.Scalars(f"val/{name}") for name in ("r2", "1-r2"))
    assert [e.step for e in unexplained] == [e.step for e in r2] and len(r2) == epochs
    assert [e.value for e in unexplained] == pytest.approx([1 - e.value for e in r2], abs=1e-6)
    assert 0 < unexplained[-1].value < 0.01


def test_least_squares_and_the_summary_are_in_tensorboard(trained_run: Path) -> None:
    accumulator = EventAccumulator(str(trained_run), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    summary = json.loads((trained_run / "metrics.json").read_text())
    metrics, fit = summary["metrics"], summary["least_squares_fit"]
    last_step = max(event.step for event in accumulator.Scalars("test/mse"))
    # Least squares' training MSE, from its own statistics: s² (n - p - 1) / n.
    (stats,) = fit["targets"].values()
    train_mse = stats["residual_std_error"] ** 2 * fit["dof_residual"] / fit["rows"]
    assert metrics["reference/train_mse"] == pytest.approx(train_mse, rel=1e-9)
    line = accumulator.Scalars("reference/train_mse")
    assert [event.step for event in line] == [0, last_step]  # across the whole loss chart
    assert [event.value for event in line] == pytest.approx([train_mse] * 2, rel=1e-6)
    # The floor of the training loss: no epoch's training loss is clearly below it.
    epoch_losses = [event.value for event in accumulator.Scalars("train/epoch_loss")]
    assert min(epoch_losses) > 0.97 * train_mse
    for name in ("reference/test_mse", "reference/test_gap"):
        ((event),) = accumulator.Scalars(name)
        assert (event.step, event.value) == (last_step, pytest.approx(metrics[name], rel=1e-6))
    layout = str(accumulator.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    assert "^reference/train_mse$" in layout

    (text,) = accumulator.Tensors("summary/text_summary")
    assert text.step == last_step
    markdown = text.tensor_proto.string_val[0].decode()
    (rows,) = summary["coefficients"].values()
    for name, row in rows.items():  # every coefficient, with its statistics
        cells = [name, f"{row['trained']:.6g}", f"{row['least_squares']:.6g}",
                 f"{row['std_error']:.3g}", f"{row['t']:.3f}"]  # fmt: skip
        assert "| " + " | ".join(cells) + " |" in markdown, name
    assert f"| test/mse | {metrics['test/mse']:.6g} |" in markdown
    assert f"R² {stats['r2']:.6g}" in markdown
    assert f"stopping: {summary['stopping']}" in markdown
    for note in summary["notes"]:
        assert f"- {note}" in markdown


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
    # Then where the run's story is: the Custom Scalars tab (Time Series opens on the figures).
    (story,) = [line for line in result.stdout.splitlines() if line.startswith("the run's story")]
    assert story.split()[3] == "http://localhost:6006/#custom_scalars"
    # Run from where the run was started, without an activated environment.
    version = subprocess.run([command, "--version"], cwd=ROOT, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert version.returncode == 0, version.stderr
    csv_only = run_cli([*FAST, "logger=csv"], tmp_path / "csv")
    assert csv_only.returncode == 0, csv_only.stderr
    assert "inspect with" not in csv_only.stdout and "the run's story" not in csv_only.stdout


@pytest.mark.parametrize(("n_targets", "n_features"), [(1, 8), (3, 64), (3, 1400), (12, 1400)])
def test_figures_keep_a_readable_size_for_many_targets_and_features(
    n_targets: int, n_features: int
) -> None:
    # Before: 1,400 features drew a 70,200-pixel-wide strip of bars.
    from linreg.diagnostics import figures

    rng = np.random.default_rng(0)
    learned, truth = rng.normal(size=(2, n_targets, n_features))
    rows = rng.normal(size=(2, 50, n_targets))
    drawn = [
        figures.weights_vs_truth(learned, truth),
        figures.predicted_vs_true(*rows, "test split"),
    ]
    for figure in drawn:
        width, height = figure.get_size_inches() * figure.dpi
        assert width <= 1600 and height <= 800
        assert len([axes for axes in figure.axes if axes.get_visible()]) == min(n_targets, 8)
        expected = "the first 8 of 12 targets" if n_targets > 8 else ""
        assert figure.get_suptitle() == expected
    bars = drawn[0].axes[0].patches
    assert len(bars) == (2 * n_features if n_features <= 40 else 0)  # a scatter beyond 40


def test_the_coefficients_figure_draws_standardised_effects_with_their_intervals() -> None:
    from linreg.diagnostics.figures import coefficients_figure

    # A year (sd 5) and a rate (sd 0.01): in raw units the rate's 300 dwarfs the year's 2.
    rows = {
        "(intercept)": {"trained": 9.0, "least_squares": 9.0, "ci_low": 8.0, "ci_high": 10.0},
        "rate": {"trained": 301.0, "least_squares": 300.0, "ci_low": 200.0, "ci_high": 400.0},
        "year": {"trained": 2.0, "least_squares": 2.0, "ci_low": 1.0, "ci_high": 3.0},
    }
    figure = coefficients_figure({"y": rows}, {"rate": 0.01, "year": 5.0}, {"y": 2.0})
    figure.canvas.draw()
    (axes,) = figure.axes
    assert axes.get_title() == "y: standardised effects, all features"
    assert [label.get_text() for label in axes.get_yticklabels()] == ["rate", "year"]
    exact = axes.containers[0].lines[0].get_xdata()  # the error bar's points
    trained = next(line for line in axes.lines if line.get_label() == "trained model").get_xdata()
    assert list(exact) == pytest.approx([300 * 0.01 / 2, 2 * 5 / 2])  # 1.5 and 5: comparable
    assert list(trained) == pytest.approx([301 * 0.01 / 2, 2 * 5 / 2])
    (bars,) = [c for c in axes.collections if c.get_segments()]
    assert [tuple(s[:, 0]) for s in bars.get_segments()] == [
        pytest.approx((1.0, 2.0)),
        pytest.approx((2.5, 7.5)),
    ]  # the 95 % intervals, scaled
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "least squares, with its 95 % interval" in labels
    # 64 features: the 20 largest, readable, the legend below the bars rather than over them.
    many = {f"x{i}": {"trained": 1.0, "least_squares": 1.0, "ci_low": 0.5, "ci_high": 1.5}
            for i in range(64)}  # fmt: skip
    figure = coefficients_figure({"y": many}, dict.fromkeys(many, 1.0), {"y": 1.0})
    figure.canvas.draw()
    (axes,) = figure.axes
    assert len(axes.get_yticklabels()) == 20
    assert axes.get_title() == "y: standardised effects, the 20 largest of 64 features"
    legend = axes.get_legend().get_window_extent()
    assert legend.y1 < axes.get_window_extent().y0
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= 1600 and height <= 1000


def test_figures_of_a_table_without_test_rows_say_they_show_the_training_rows(
    tmp_path: Path,
) -> None:
    from linreg.data.table import TableDataModule
    from linreg.diagnostics.insights import TensorBoardInsights
    from linreg.models.linear import LinearRegressor

    table = tmp_path / "tiny.csv"
    table.write_text("x,y\n" + "".join(f"{i},{2 * i + (i % 3)}\n" for i in range(16)))
    split = {"train_fraction": 1.0, "val_fraction": 0.0, "test_fraction": 0.0}
    datamodule = TableDataModule(path=str(table), target="y", seed=0, batch_size=8, **split)
    datamodule.setup()
    module = torch.nn.Module()
    module.net = LinearRegressor(1, 1)
    module.device = torch.device("cpu")
    module.forward = module.net.forward
    drawn = {}

    class Writer:
        def add_figure(self, tag: str, figure: object, step: int) -> None:
            drawn[tag] = figure

    TensorBoardInsights._log_figures(Writer(), module, datamodule, "test", 0)
    titles = {tag: figure.axes[0].get_title() for tag, figure in drawn.items()}
    assert titles == {
        "figures/test/predicted_vs_true": "target 0 (training rows: no test rows of its own)",
        "figures/test/residuals": "residuals (training rows: no test rows of its own)",
    }


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


def test_hparams_of_a_sweep_open_on_what_the_user_varied_with_every_optimizers_settings(
    optimizer_sweep: tuple[Path, str],
) -> None:
    sweep_dir, _ = optimizer_sweep
    with serve_tensorboard(sweep_dir) as base:
        runs = fetch(f"{base}/data/runs")
        experiment = fetch(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        layout = fetch(f"{base}/data/plugin/custom_scalars/layout")
    # Runs named by what the sweep varies (a group's choice by its name), wherever TensorBoard
    # shows a run, with no folder of their own after it.
    assert sorted(runs) == ["rmsprop", "sgd"]
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    names = list(infos)
    differing = [name for name, info in infos.items() if info.get("differs")]
    # What the user varied first (the tab ticks the first five): the optimizer by name, then its
    # settings; not the classes the choices name, nor what an optimizer sets in other sections.
    assert names[: len(differing)] == differing
    assert differing[0] == "optimizer" and "optimizer.lr" in differing
    assert not [name for name in differing if not name.startswith("optimizer")]
    assert sorted(infos["optimizer"]["domainDiscrete"]) == ["rmsprop", "sgd"]
    assert "data.min_batches_per_epoch" not in names
    assert not [name for name in names if name.endswith("_target_")]
    assert {infos[group]["domainDiscrete"][0] for group in ("data", "model")} == {
        "synthetic",
        "linear",
    }
    # Whole numbers as the user types them (HParams prints a number to five digits: 256.00).
    assert (infos["data.batch_size"]["type"], infos["data.batch_size"]["domainDiscrete"]) == (
        "DATA_TYPE_STRING",
        ["256"],
    )
    # Both optimizers' own settings, the run's folder not.
    own = {"optimizer.momentum", "optimizer.nesterov", "optimizer.alpha", "optimizer.centered"}
    assert own <= set(names)
    assert not any("dir" in name or "path" in name for name in names if name.startswith("trainer"))
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics[:3] == ["hp/objective", "hp/test/mse", "hp/test_gap"]
    # Custom Scalars tells the run's story in order: loss and lr, validation, parameters.
    categories = [category["title"] for category in layout["category"]]
    assert categories == ["1 loss and learning rate", "2 validation metrics", "3 parameters"]
    loss_chart = layout["category"][0]["chart"][0]["multiline"]["tag"]
    assert loss_chart == ["^train/loss$", "^train/epoch_loss$", "^val/loss$",
                          "^reference/train_mse$"]  # fmt: skip


def test_a_sweep_prints_one_line_per_job_and_the_report(
    optimizer_sweep: tuple[Path, str],
) -> None:
    sweep_dir, stdout = optimizer_sweep
    lines = stdout.splitlines()
    jobs = [line for line in lines if line.startswith("job ")]
    assert [line.split()[1] for line in jobs] == ["sgd", "rmsprop"]
    summary = json.loads((sweep_dir / "sgd" / "metrics.json").read_text())
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
