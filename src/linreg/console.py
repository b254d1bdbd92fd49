"""What a run prints: the config tree at the start, progress during fit, a summary at the end; a
sweep's job prints one line when it ends (the sweep prints its report)."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from linreg.cli import in_sweep

CONFIG_SECTIONS = ("data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks",
                   "paths", "export")  # fmt: skip


# A stage still running after this long says so: a wide table's reading must not look like a hang.
SLOW_STAGE_S = 3.0


@contextmanager
def progress(doing: str, after_s: float = SLOW_STAGE_S) -> Iterator[None]:
    """Says `doing ...` once the block has run `after_s` seconds, and then how long it took;
    a quicker block prints nothing, and so does a sweep's job (its line comes at its end)."""
    if in_sweep():
        yield
        return
    start = time.perf_counter()
    announced = threading.Event()

    def announce() -> None:
        announced.set()
        print(f"{'working':<17}{doing} ...", flush=True)

    timer = threading.Timer(after_s, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if announced.is_set():
            print(f"{'working':<17}{doing}: {time.perf_counter() - start:.1f} s", flush=True)


def config_tree(cfg: DictConfig) -> Tree:
    """The composed config, one branch per group, as `rich` draws it."""
    tree = Tree("config", guide_style="dim")
    for section in (*CONFIG_SECTIONS, *(k for k in cfg if k not in CONFIG_SECTIONS)):
        if section not in cfg:
            continue
        value = cfg[section]
        if isinstance(value, DictConfig):
            body = OmegaConf.to_yaml(value, resolve=True).rstrip() or "{}"
            tree.add(f"[bold]{section}[/bold]").add(body)
        else:
            tree.add(f"[bold]{section}[/bold]: {value}")
    return tree


@rank_zero_only
def show_config(cfg: DictConfig, output_dir: Path) -> None:
    """Save the config tree in the run folder and say where: a hundred lines of settings on the
    console would bury the run's own output (`python train.py --cfg job` prints them)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "config_tree.txt"
    with path.open("w") as handle:
        Console(file=handle, width=100, no_color=True, color_system=None).print(config_tree(cfg))
    if not in_sweep():
        print(f"config           {path}", flush=True)


GROUND_TRUTH_ROWS = (("params/weight_error", " (relative)"), ("params/bias_error", ""))


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The run summary's (metric, value) rows, as the console and TensorBoard's Text tab show."""
    metrics = summary["metrics"]
    return [
        (f"{summary['objective']['name']} (best)", summary["objective"]["value"]),
        ("test/mse", metrics["test/mse"]),
        ("reference/test_mse (least squares)", metrics["reference/test_mse"]),
        ("gap to reference", f"{100 * summary['test_mse_gap_to_reference']:+.2f}%"),
        ("test/r2", metrics["test/r2"]),
        ("test/mae", metrics["test/mae"]),
        # Absent where the data has no ground truth or the network no coefficients (see notes).
        *[
            (f"{name}{label}", metrics[name])
            for name, label in GROUND_TRUTH_ROWS
            if name in metrics
        ],
        ("epochs", summary["epochs"]),
        ("time after start-up", f"{summary['wall_time_s']:.1f} s"),
    ]


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="run summary", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, shown(value))
    return table


def summary_markdown(summary: dict[str, Any]) -> str:
    """The console's summary as Markdown (TensorBoard's Text tab): the metrics, every coefficient
    with its statistics, the least-squares fit, how training stopped, and the notes."""
    lines = ["| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {shown(value)} |" for name, value in summary_rows(summary)]
    fit = summary.get("least_squares_fit")
    header = ("name", "trained", "least squares", "std error", "t", "P>\\|t\\|", "95% CI")
    for target, rows in (summary.get("coefficients") or {}).items():
        lines += ["", f"**coefficients of {target}**", "", "| " + " | ".join(header) + " |",
                  "|---" + "|---:" * (len(header) - 1) + "|"]  # fmt: skip
        for name, row in rows.items():
            cells = [f"{row['trained']:.6g}", f"{row['least_squares']:.6g}",
                     *_inference_cells(row)]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if fit:
            lines += ["", f"least squares: {fit_line(fit, target)}"]
    if "stopping" in summary:
        lines += ["", f"stopping: {summary['stopping']}"]
    lines += ["", *(f"- {note}" for note in summary.get("notes", []))]
    return "\n".join(lines).rstrip() + "\n"


def shown(value: Any) -> str:
    """A metric for the console: 6 significant digits; NaN (a statistic one row cannot give,
    null in metrics.json) as `undefined`."""
    if isinstance(value, float):
        return "undefined" if math.isnan(value) else f"{value:.6g}"
    return str(value)


COEFFICIENT_TABLE_WIDTH = 110


def coefficient_tables(
    coefficients: dict[str, Any], intercept: bool = True, limit: int = 10
) -> dict[str, Table]:
    """Per target: the intercept (the first row, where the model has one) and the `limit`
    largest effects, trained against least squares with its standard error, t, p-value and 95 %
    interval."""
    tables = {}
    for target, rows in coefficients.items():
        shown_rows = limit + int(intercept)
        more = len(rows) - shown_rows
        title = f"coefficients of {target}" + (
            f" ({more} smaller in metrics.json)" if more > 0 else ""
        )
        table = Table(title=title, show_header=True, header_style="bold")
        columns = ("name", "trained", "least squares", "std error", "t", "P>|t|", "95% CI")
        for column in columns:
            table.add_column(column, justify="left" if column == "name" else "right")
        for name, row in list(rows.items())[:shown_rows]:
            table.add_row(name, f"{row['trained']:.6g}", f"{row['least_squares']:.6g}",
                          *_inference_cells(row))  # fmt: skip
        tables[target] = table
    return tables


def _inference_cells(row: dict[str, Any]) -> list[str]:
    if row.get("t") is None:  # no standard errors: no residual degrees of freedom, or rank
        return ["-"] * 4
    return [f"{row['std_error']:.3g}", f"{row['t']:.3f}", f"{row['p_value']:.3g}",
            f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}]"]  # fmt: skip


def fit_line(fit: dict[str, Any], target: str) -> str:
    """The least-squares fit's statistics in one line (`fit`: metrics.json's
    `least_squares_fit`), as statsmodels' summary heads them."""
    stats = fit["targets"][target]
    r2 = "R²" if fit["intercept"] else "R² (uncentred)"
    parts = [f"{r2} {shown(stats['r2'])}"]
    if "adj_r2" in stats:
        parts += [f"adj. {shown(stats['adj_r2'])}",
                  f"residual std error {shown(stats['residual_std_error'])}"]  # fmt: skip
    if "f_statistic" in stats:
        parts.append(f"F {shown(stats['f_statistic'])} (p {stats['f_p_value']:.3g})")
    parts.append(f"{fit['rows']} rows, {fit['dof_residual']} residual df")
    if fit.get("condition_number") is not None:
        parts.append(f"condition number {fit['condition_number']:.3g}")
    if fit.get("condition_index") is not None:
        parts.append(f"condition index {fit['condition_index']:.3g} (standardised columns)")
    return ", ".join(parts)


def show_summary(summary: dict[str, Any], output_dir: Path, with_tensorboard: bool) -> None:
    if in_sweep():
        print(job_line(summary, output_dir), flush=True)
        return
    # Wide enough for the coefficient table's seven columns where output is not a terminal (a
    # log, a pipe: rich would assume 80).
    console = Console(width=max(Console().width, COEFFICIENT_TABLE_WIDTH))
    console.print(summary_table(summary))
    fit = summary.get("least_squares_fit")
    intercept = fit["intercept"] if fit else True
    for target, table in coefficient_tables(summary.get("coefficients") or {}, intercept).items():
        console.print(table)
        if fit:
            console.print(f"{'least squares':<17}{fit_line(fit, target)}", highlight=False,
                          soft_wrap=True)  # fmt: skip
    if "stopping" in summary:
        console.print(f"stopping         {summary['stopping']}", highlight=False, soft_wrap=True)
    for note in summary.get("notes", []):
        console.print(f"note             {note}", highlight=False, soft_wrap=True)
    console.print(f"run folder       {output_dir}", highlight=False, soft_wrap=True)
    for name, path in summary["paths"].items():
        if path:
            console.print(f"{name:<16} {output_dir / path}", highlight=False, soft_wrap=True)
    if with_tensorboard:  # the Custom Scalars tab first: Time Series opens on the figures
        console.print(
            f"inspect with     {tensorboard_command()} --logdir {output_dir}\n"
            f"the run's story  {STORY_URL} (loss against least squares, lr, validation)",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def show_evaluation(summary: dict[str, Any], output_dir: Path) -> None:
    """eval.py's result: the test metrics as a table, then what was scored on what, and where the
    record went."""
    console = Console()
    table = Table(title="evaluation", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(summary["metrics"].items()):
        table.add_row(name, shown(value))
    console.print(table)
    rows = f"{summary['rows']:,} rows of " if summary.get("rows") is not None else ""
    for name, value in (
        ("checkpoint", summary["checkpoint"]),
        ("scored on", f"{rows}{summary['data']}"),
        ("metrics.json", output_dir / "metrics.json"),
    ):
        console.print(f"{name:<16} {value}", highlight=False, soft_wrap=True)


def job_line(summary: dict[str, Any], output_dir: Path) -> str:
    """A sweep job's one line: which job, its objective, how far from least squares, how long."""
    objective = summary["objective"]
    gap = 100 * summary["test_mse_gap_to_reference"]
    return (
        f"job {output_dir.name}  {objective['name']} {objective['value']:.5g}  test/mse "
        f"{summary['metrics']['test/mse']:.5g} ({gap:+.2f} % vs least squares)  "
        f"{summary['epochs']} epochs  {summary['wall_time_s']:.1f} s"
    )


# TensorBoard's address (its default port) opened on the Custom Scalars tab, where
# `linreg.diagnostics.tensorboard.STORY_LAYOUT` tells a run's story in order.
STORY_URL = "http://localhost:6006/#custom_scalars"


def tensorboard_command() -> str:
    """TensorBoard as this interpreter's environment installs it (`.venv/bin/tensorboard`), so
    the hint runs as printed whether or not the environment is activated."""
    beside = Path(sys.executable).parent / "tensorboard"
    if not beside.is_file():
        return "tensorboard"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


class EpochLines(ProgressBar):
    """Progress for logs, not terminals: one plain line per epoch instead of a redrawn bar, with
    the epoch's own mean training loss and, when it validated, its validation loss. A run of many
    epochs prints at most about `MAX_LINES`: every k-th epoch, and the last one."""

    MAX_LINES = 20

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch_started = 0.0
        self._validated = False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, before the module logs its epoch values: the
        # training loss is read from the module (RegressionModule.epoch_loss).
        epoch, epochs = trainer.current_epoch + 1, trainer.max_epochs
        every = -(-epochs // self.MAX_LINES) if epochs and epochs > 0 else 1
        last = epoch == epochs or trainer.should_stop
        if not self._enabled or (epoch % every and not last):
            return
        shown = []
        if (loss := getattr(pl_module, "epoch_loss", None)) is not None:
            shown.append(f"train/epoch_loss {float(loss):.5g}")
        if self._validated and "val/loss" in trainer.callback_metrics:
            shown.append(f"val/loss {float(trainer.callback_metrics['val/loss']):.5g}")
        elapsed = time.perf_counter() - self._epoch_started
        print(f"epoch {epoch}/{epochs}  {'  '.join(shown)}  ({elapsed:.2f} s)", flush=True)


def progress_bar(refresh_rate: int = 10, enabled: bool = True) -> ProgressBar | None:
    """A bar redrawn every `refresh_rate` steps on a terminal; plain epoch lines otherwise (CI);
    nothing in a sweep's job (a disabled bar: without one Lightning would add its own)."""
    if not enabled:
        return None
    if in_sweep():
        silent = EpochLines()
        silent.disable()
        return silent
    if sys.stdout.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return EpochLines()
