"""A benchmark sized to the device: where a GPU pays, and how close an epoch comes to its memory.

    python -m linreg.bench --device cuda --scale [--scale-rows 5e7] [--features 64]
                           [--batch-sizes 65536] [--budget 60]

A table of float32 rows is generated on the device (a known linear answer plus noise), never
copied to or from the host. Measured there, each step capped at `budget` seconds:

- the device's copy bandwidth (a device-to-device copy of the features), the ceiling of an epoch;
- one epoch of the project's module and in-memory loader (default steps per execution, plain
  SGD) in a bare Trainer: rows per second, and the table's bytes read per second as a fraction
  of that bandwidth;
- least squares in closed form, from float64 moments accumulated on the device, as the run's
  reference computes them;
- time to least squares: epochs of the project's module until its MSE over the whole table is
  within 1 % of the closed form's (the MSE passes between epochs are not counted).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from linreg.diagnostics.reference import CentredMoments, LeastSquares, moments_least_squares
from linreg.workloads import synchronize, write_table_files

NOISE_STD = 0.5
CHUNK_ROWS = 1 << 20  # generation and the moments go through the table in pieces of this size
WITHIN = 0.01  # time to least squares: the training MSE within this fraction of the closed form's
SCALE_LR = 0.4  # the project's default SGD rate: unit-scale decorrelated features allow it


def generated(rows: int, features: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Features (rows, features) and targets (rows, 1) in float32, drawn on `device` in pieces."""
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.empty(rows, features, device=device)
    y = torch.empty(rows, 1, device=device)
    weight = torch.randn(features, 1, generator=generator, device=device)
    for start, stop in _pieces(rows):
        torch.randn(stop - start, features, generator=generator, device=device, out=x[start:stop])
        noise = torch.randn(stop - start, 1, generator=generator, device=device)
        torch.addmm(noise.mul_(NOISE_STD), x[start:stop], weight, out=y[start:stop])
    return x, y


def _pieces(rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, rows, CHUNK_ROWS):
        yield start, min(start + CHUNK_ROWS, rows)


def _timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    result = work()
    synchronize(device)
    return time.perf_counter() - start, result


def copy_bandwidth(x: Tensor, copies: int = 5) -> float:
    """Bytes per second a device-to-device copy of `x` reads: the best of a few copies, after one
    that pays for the allocation."""
    target = torch.empty_like(x)
    target.copy_(x)
    best = min(_timed(x.device, lambda: target.copy_(x))[0] for _ in range(copies))
    return x.numel() * x.element_size() / best


def closed_form(x: Tensor, y: Tensor) -> tuple[float, float, Tensor, Tensor]:
    """(seconds, MSE, weight, bias) of least squares from float64 moments on the device, solved
    as the run's reference solves them."""

    def solve() -> LeastSquares:
        moments = CentredMoments()
        for start, stop in _pieces(len(x)):
            moments.add(x[start:stop], y[start:stop])
        return moments_least_squares(moments)

    seconds, fit = _timed(x.device, solve)
    return seconds, table_mse(x, y, fit.weight, fit.bias), fit.weight, fit.bias


@torch.no_grad()
def table_mse(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor) -> float:
    """The mean squared error of y ~ x @ weight.T + bias over the table, summed in float64."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start, stop in _pieces(len(x)):
        predicted = torch.addmm(bias.to(x.dtype), x[start:stop], weight.to(x.dtype).T)
        total += (predicted - y[start:stop]).double().square().sum()
    return float(total) / len(x)


@dataclass
class Training:
    """What `train_to_least_squares` saw: each epoch's seconds, and the training seconds (the sum
    of the epochs) at which the MSE first came within `WITHIN` of least squares, if it did."""

    epoch_seconds: list[float] = field(default_factory=list)
    reached_after_s: float | None = None


def train_to_least_squares(
    x: Tensor, y: Tensor, batch_size: int, steps_per_execution: int, target_mse: float,
    budget_s: float,
) -> Training:  # fmt: skip
    """Epochs of the project's module (LinearRegressor, its standardisation fitted on a sample of
    the table) over the project's in-memory loader in a bare Trainer, until the MSE over the
    table is within `WITHIN` of `target_mse` (and at least two epochs, so that one is timed
    without Lightning's first-fit costs) or `budget_s` seconds of epochs have run."""
    import lightning.pytorch as pl

    from linreg.data.loaders import EpochShuffler, WholeBatchLoader
    from linreg.execution import Executions
    from linreg.models.linear import LinearRegressor
    from linreg.models.module import RegressionModule

    network = LinearRegressor(x.shape[1], y.shape[1]).to(x.device)
    sample = torch.randperm(len(x), device=x.device)[:CHUNK_ROWS]
    network.fit_standardization(x[sample], y[sample])
    module = RegressionModule(
        network,
        optimizer=lambda parameters: torch.optim.SGD(parameters, lr=SCALE_LR),
        steps_per_execution=steps_per_execution,
    )
    loader = WholeBatchLoader(x, y, batch_size, EpochShuffler(len(x), 0))
    if steps_per_execution > 1:
        loader = Executions(loader, steps_per_execution)
    seen = Training()

    class Watch(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, _: pl.LightningModule) -> None:
            synchronize(x.device)
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            synchronize(x.device)
            seen.epoch_seconds.append(time.perf_counter() - self.started)
            trained_s = sum(seen.epoch_seconds)
            if seen.reached_after_s is None:
                weight, bias = pl_module.net.coefficients()
                if table_mse(x, y, weight, bias) <= (1 + WITHIN) * target_mse:
                    seen.reached_after_s = trained_s
            done = seen.reached_after_s is not None and len(seen.epoch_seconds) >= 2
            trainer.should_stop = done or trained_s >= budget_s

    trainer = pl.Trainer(
        max_epochs=-1, accelerator="gpu" if x.device.type == "cuda" else "cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[Watch()],
    )  # fmt: skip
    trainer.fit(module, loader)
    return seen


def streamed_parquet(rows: int, batch_size: int, device_name: str, checkout: Path) -> list[str]:
    """Lines of the report on a Parquet table of `rows` rows x 16 float32 features written to a
    temporary folder: its training split read alone by the project's streamed loader onto the
    device, then `python train.py data=table data.streaming=true`, one epoch; the fit reads the
    file twice (training, then validation), so reading bounds it where the fit takes little more
    than two reads."""
    from hydra import compose, initialize_config_dir

    from linreg.run.build import build_datamodule
    from linreg.trial import train_run

    device = torch.device(device_name)
    overrides = ["data=table", "data.target=y", "data.streaming=true",
                 f"data.batch_size={batch_size}", "trainer.max_epochs=1", "logger=none",
                 "export.enabled=false"]  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="linreg-bench-scale-"))
    try:
        written_s, paths = _timed(
            device, lambda: write_table_files(rows, folder, kinds=("Parquet",))
        )
        path = paths["Parquet"]
        overrides.append(f"data.path={path}")
        with initialize_config_dir(config_dir=str(checkout / "conf"), version_base="1.3"):
            datamodule = build_datamodule(compose(config_name="train", overrides=overrides).data)
        datamodule.setup()
        stream = datamodule.streams["train"]
        read_s, _ = _timed(device, lambda: sum(len(x) for x, _ in stream.loader(0, device)))
        _, _, _, summary = train_run(overrides, device_name, checkout)
        size = path.stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    fit_s = summary["stage_times_s"]["fit"]
    bound = "reading" if fit_s <= 1.25 * 2 * read_s else "training"
    return [
        "",
        f"Streamed Parquet: {rows:,} rows x 16 float32 features, written in {written_s:.0f} s; "
        f"batch {batch_size}, onto {device_name}",
        "",
        "| part | seconds | training rows/s | file read (GB/s) |",
        "|---|---|---|---|",
        f"| the training split read alone | {read_s:.1f} | {stream.n_rows / read_s:,.0f} | "
        f"{size / read_s / 1e9:.2f} |",
        f"| `train.py data.streaming=true`, fit (one epoch and its validation) | {fit_s:.1f} | "
        f"{stream.n_rows / fit_s:,.0f} | {2 * size / fit_s / 1e9:.2f} |",
        "",
        f"{bound.capitalize()} bounds the streamed epoch (the fit took {fit_s / read_s:.1f} reads "
        "of the file; it makes 2).",
    ]


def scale(
    rows: int, features: int, batch_sizes: list[int], device_name: str, budget_s: float,
    parquet_rows: int = 0, checkout: Path | None = None, steps_per_execution: int = 16,
) -> str:  # fmt: skip
    """The Markdown report of the benchmark (see the module's docstring)."""
    device = torch.device(device_name)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    seconds, (x, y) = _timed(device, lambda: generated(rows, features, device))
    table_bytes = (x.numel() + y.numel()) * x.element_size()
    bandwidth = copy_bandwidth(x)
    closed_seconds, closed_mse, _, _ = closed_form(x, y)
    lines = [
        f"Scale: {rows:,} rows x {features} features in float32 ({table_bytes / 1e9:.2f} GB), "
        f"generated on {name} in {seconds:.1f} s; torch {torch.__version__}",
        "",
        f"- copy bandwidth of the device: {bandwidth / 1e9:.1f} GB/s (a device-to-device copy)",
        f"- least squares in closed form (float64 moments on the device): {closed_seconds:.2f} s, "
        f"MSE {closed_mse:.5f} (noise floor {NOISE_STD**2:.5f})",
        "",
        "| batch size | epoch (s) | rows/s | table read (GB/s) | of copy bandwidth | "
        f"to within {WITHIN:.0%} of least squares |",
        "|---|---|---|---|---|---|",
    ]
    for batch_size in batch_sizes:
        seen = train_to_least_squares(x, y, batch_size, steps_per_execution, closed_mse, budget_s)
        epoch_s = min(seen.epoch_seconds[1:] or seen.epoch_seconds)
        rate = table_bytes / epoch_s
        epochs = len(seen.epoch_seconds)
        outcome = (
            f"not within {budget_s:.0f} s of epochs ({epochs})"
            if seen.reached_after_s is None
            else f"{seen.reached_after_s:.2f} s of epochs"
        )
        lines.append(
            f"| {batch_size} | {epoch_s:.3f} | {len(x) / epoch_s:,.0f} | {rate / 1e9:.1f} | "
            f"{rate / bandwidth:.0%} | {outcome} |"
        )
        print(lines[-1], flush=True)
    if parquet_rows:
        del x, y  # the device's memory back for the streamed run, a process of its own
        if device.type == "cuda":
            torch.cuda.empty_cache()
        streamed = streamed_parquet(parquet_rows, max(batch_sizes), device_name, checkout or Path())
        lines += streamed
        print("\n".join(streamed), flush=True)
    return "\n".join(lines) + "\n"
