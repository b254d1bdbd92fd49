"""Training-loop benchmark: the project against hand-written PyTorch and naive Lightning.

    python -m linreg.bench [--rows 1000000] [--features 16] [--batch-sizes 1024 65536]
                           [--repeats 5] [--device cpu|cuda] [--out outputs/bench/<time>.md]
    python -m linreg.bench --convergence | --accuracy | --streaming-rows N..
    python -m linreg.bench --tables N.. [--precision 32-true|64-true]
    python -m linreg.bench --device cuda --scale [--scale-rows 5e7] [--features 64] [--budget 60]
                           [--scale-parquet-rows 1e8]

For every batch size, one epoch of SGD is timed for each path, the paths interleaved in one
process and repeated; medians are printed with their ratio to the hand-written randperm loop and
written as a Markdown table. The closed-form least-squares solve is the time-to-solution and
accuracy limit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import torch
from torch import Tensor, nn

from linreg.cli import tidy_lightning_output
from linreg.trial import optimizer_options, train_run
from linreg.workloads import synchronize, write_table_files

Epoch = Callable[[], float]
SGD_LR = 0.01


def _sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()


def hand_randperm(x: Tensor, y: Tensor, batch_size: int) -> Epoch:
    """What a careful user writes by hand: a fresh permutation, then a gather per batch."""
    model = nn.Linear(x.shape[1], y.shape[1]).to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR)

    def epoch() -> float:
        synchronize(x.device)
        start = time.perf_counter()
        order = torch.randperm(len(x), device=x.device)
        for i in range(0, len(x), batch_size):
            index = order[i : i + batch_size]
            _sgd_step(model, optimizer, x[index], y[index])
        synchronize(x.device)
        return time.perf_counter() - start

    return epoch


def hand_contiguous(x: Tensor, y: Tensor, batch_size: int) -> Epoch:
    """No shuffling, contiguous views: the memory-bandwidth floor of any epoch."""
    model = nn.Linear(x.shape[1], y.shape[1]).to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR)

    def epoch() -> float:
        synchronize(x.device)
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            _sgd_step(model, optimizer, x[i : i + batch_size], y[i : i + batch_size])
        synchronize(x.device)
        return time.perf_counter() - start

    return epoch


class _EpochTimer:
    """Times the training part of each epoch (validation excluded) from inside a Trainer."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        timer = self

        class Timer(pl.Callback):
            def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
                synchronize(module.device)
                timer.started = time.perf_counter()

            def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
                if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
                    synchronize(trainer.strategy.root_device)
                    timer.seconds.append(time.perf_counter() - timer.started)

        self.callback = Timer()
        self.started = 0.0
        self.seconds: list[float] = []


def _fit_one_epoch(build: Callable[[list], tuple], timer: _EpochTimer) -> float:
    trainer, module, data = build([timer.callback])
    # The project's epoch line is written (its cost is part of the stack) but not shown: the
    # benchmark prints its figures only.
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(module, **data)
    return timer.seconds[-1]


def _lightning_epoch(x: Tensor, y: Tensor, loader: Iterable) -> Epoch:
    """One epoch of the project's module over `loader` in a bare Trainer (no callbacks, logger,
    progress or validation)."""
    import lightning.pytorch as pl

    from linreg.models.linear import LinearRegressor
    from linreg.models.module import RegressionModule

    timer = _EpochTimer()

    def build(callbacks: list) -> tuple:
        module = RegressionModule(
            LinearRegressor(x.shape[1], y.shape[1]),
            optimizer=lambda p: torch.optim.SGD(p, lr=SGD_LR),
        )
        trainer = pl.Trainer(
            max_epochs=1, accelerator=x.device.type, devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, callbacks=callbacks,
        )  # fmt: skip
        return trainer, module, {"train_dataloaders": loader}

    return lambda: _fit_one_epoch(build, timer)


def lightning_naive(x: Tensor, y: Tensor, batch_size: int) -> Epoch:
    """What most templates do: TensorDataset + DataLoader(shuffle=True), per-sample collation."""
    from torch.utils.data import DataLoader, TensorDataset

    dataset = TensorDataset(x.cpu(), y.cpu())
    return _lightning_epoch(x, y, DataLoader(dataset, batch_size=batch_size, shuffle=True))


def lightning_bare(x: Tensor, y: Tensor, batch_size: int) -> Epoch:
    """The project's whole-batch loader in a bare Trainer: what remains is Lightning's own loop."""
    from linreg.data.loaders import EpochShuffler, WholeBatchLoader

    return _lightning_epoch(x, y, WholeBatchLoader(x, y, batch_size, EpochShuffler(len(x), 0)))


def project_config(
    n_rows: int,
    n_features: int,
    batch_size: int,
    device: str,
    output_dir: Path,
    checkout: Path,
    extra_overrides: Iterable[str] = (),
):
    """The real `conf/train.yaml` defaults, sized for the benchmark and switched to plain SGD."""
    from hydra import compose, initialize_config_dir

    n_samples = math.ceil(n_rows / 0.98)
    overrides = [
        f"data.n_samples={n_samples}", f"data.n_features={n_features}",
        f"data.batch_size={batch_size}", "data.train_fraction=0.98", "data.val_fraction=0.01",
        "data.test_fraction=0.01", "data.max_batches_per_epoch=null",
        "data.min_batches_per_epoch=null", "optimizer=sgd",
        f"optimizer.lr={SGD_LR}", "model.lr_reference_features=null",
        "optimizer.momentum=0", "scheduler=none", "trainer.max_epochs=1",
        "trainer.enable_model_summary=false",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"paths.output_dir={output_dir}", *extra_overrides,
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(checkout / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def project(cfg, datamodule) -> Epoch:
    """`python train.py`'s own stack: its data module, callbacks, TensorBoard logger, progress."""
    from linreg.run.build import build_module, build_trainer

    timer = _EpochTimer()

    def build(callbacks: list) -> tuple:
        trainer = build_trainer(cfg)
        trainer.callbacks.extend(callbacks)
        return trainer, build_module(cfg, datamodule), {"datamodule": datamodule}

    return lambda: _fit_one_epoch(build, timer)


def closed_form(x: Tensor, y: Tensor) -> tuple[float, float]:
    """(seconds, training MSE) of the least-squares solve in float64: the time-to-solution limit."""
    from linreg.diagnostics.reference import least_squares

    synchronize(x.device)
    start = time.perf_counter()
    fit = least_squares([(x.cpu(), y.cpu())])
    weight, bias = fit.weight, fit.bias
    seconds = time.perf_counter() - start
    mse = float(torch.mean((x.cpu().double() @ weight.T + bias - y.cpu().double()) ** 2))
    return seconds, mse


def run(
    rows: int, features: int, batch_sizes: list[int], repeats: int, device: str, checkout: Path
) -> str:
    """Time every path at every batch size; returns the Markdown report. The runs' folders are
    temporary."""
    workdir = Path(tempfile.mkdtemp(prefix="linreg-bench-"))
    try:
        return _run_paths(rows, features, batch_sizes, repeats, device, checkout, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_paths(
    rows: int, features: int, batch_sizes: list[int], repeats: int, device: str, checkout: Path,
    workdir: Path,
) -> str:  # fmt: skip
    from linreg.run.build import build_datamodule

    lines = [
        f"N={rows:,} rows x {features} features, float32, SGD (lr {SGD_LR}), one epoch, "
        f"device {device}, median of {repeats} interleaved repeats "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)",
        "",
        "| batch size | path | epoch (s) | vs hand-written randperm |",
        "|---|---|---|---|",
    ]
    for batch_size in batch_sizes:
        cfg = project_config(
            rows, features, batch_size, device, workdir / f"b{batch_size}", checkout
        )
        automatic = project_config(
            rows, features, batch_size, device, workdir / f"b{batch_size}-automatic", checkout,
            ["model.steps_per_execution=1"],
        )  # fmt: skip
        datamodule = build_datamodule(cfg.data)
        raw, y = datamodule.split("train")
        x = ((raw - raw.mean(0)) / raw.std(0)).to(device)
        y = y.to(device)
        paths = {
            "hand-written, randperm + gather per batch": hand_randperm(x, y, batch_size),
            "hand-written, contiguous slices (floor)": hand_contiguous(x, y, batch_size),
            "Lightning, TensorDataset + DataLoader(shuffle)": lightning_naive(x, y, batch_size),
            "Lightning bare: project loader, no callbacks/logger": lightning_bare(x, y, batch_size),
            "project, model.steps_per_execution=1 (one step per Lightning step)": project(
                automatic, build_datamodule(automatic.data)
            ),
            f"project (train.py defaults: {cfg.model.steps_per_execution} steps per execution)": (
                project(cfg, datamodule)
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for epoch in paths.values():  # warm-up: first-call costs are not the loop's
            epoch()
        for _ in range(repeats):
            for name, epoch in paths.items():
                times[name].append(epoch())
        baseline = statistics.median(times["hand-written, randperm + gather per batch"])
        for name, seconds in times.items():
            median = statistics.median(seconds)
            lines.append(f"| {batch_size} | {name} | {median:.3f} | {median / baseline:.2f}x |")
            print(lines[-1], flush=True)
    seconds, mse = closed_form(x, y)
    lines += ["", f"Closed-form least squares on the same rows: {seconds:.3f} s, MSE {mse:.4f} "
              f"(noise floor {datamodule.ground_truth.noise_std ** 2:.4f})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def streaming(rows_list: list[int], device: str, checkout: Path) -> str:
    """Peak memory and time of whole `train.py data.streaming=true` runs (one epoch) against N."""
    lines = [
        "Streaming data: `python train.py data.streaming=true data.n_features=16 "
        "data.batch_size=4096 trainer.max_epochs=1`, one process per N",
        "",
        "| rows N | as float32 arrays | wall time (s) | peak RSS (MB) | test/mse | least squares |",
        "|---|---|---|---|---|---|",
    ]
    for rows in rows_list:
        overrides = [
            "data.streaming=true", f"data.n_samples={rows}", "data.n_features=16",
            "data.batch_size=4096", "trainer.max_epochs=1",
        ]  # fmt: skip
        seconds, peak_mb, _, summary = train_run(overrides, device, checkout)
        metrics = summary["metrics"]
        lines.append(
            f"| {rows:.0e} | {rows * 17 * 4 / 1e9:.2f} GB | {seconds:.1f} | {peak_mb:.0f} | "
            f"{metrics['test/mse']:.4f} | {metrics['reference/test_mse']:.4f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def tables(rows_list: list[int], device: str, checkout: Path, precision: str) -> str:
    """Reading a table: rows per second of fit and peak memory, CSV and Parquet, in memory and
    streamed, next to the synthetic streaming path, one `train.py` process each."""
    lines = [
        "Tables: `python train.py data=table data.path=<file> data.target=y data.batch_size=4096 "
        f"trainer.max_epochs=1 trainer.precision={precision}` (16 float32 features), one process "
        "per cell; fit rows/s counts the training rows of the epoch over the fit stage's time",
        "",
        "| rows N | data | read | fit rows/s | wall time (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    common = ["data.batch_size=4096", "data.max_batches_per_epoch=null",
              "data.min_batches_per_epoch=null", "trainer.max_epochs=1",
              "logger=none", "export.enabled=false",
              f"trainer.precision={precision}"]  # fmt: skip
    for rows in rows_list:
        folder = Path(tempfile.mkdtemp(prefix="linreg-bench-tables-"))
        try:
            paths = write_table_files(rows, folder)
            cells = [
                (f"{kind} file", read, ["data=table", f"data.path={path}", "data.target=y",
                                        f"data.streaming={read == 'streamed'}"])
                for kind, path in paths.items()
                for read in ("in memory", "streamed")
            ]  # fmt: skip
            synthetic = ["data.streaming=true", f"data.n_samples={rows}", "data.n_features=16"]
            cells.append(("synthetic", "streamed", synthetic))
            text = write_table_files(rows, folder, text_column=True)["Parquet"]  # encoding's cost
            cells += [
                ("Parquet, a text column", read, ["data=table", f"data.path={text}",
                                                  "data.target=y",
                                                  f"data.streaming={read == 'streamed'}"])
                for read in ("in memory", "streamed")
            ]  # fmt: skip
            for data, read, overrides in cells:
                seconds, peak_mb, _, summary = train_run([*overrides, *common], device, checkout)
                rate = 0.7 * rows / summary["stage_times_s"]["fit"]  # the training split
                cell = f"{rate:,.0f} | {seconds:.1f} | {peak_mb:.0f}"
                lines.append(f"| {rows:.0e} | {data} | {read} | {cell} |")
                print(lines[-1], flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return "\n".join(lines) + "\n"


def accuracy(device: str, checkout: Path) -> str:
    """Every shipped optimizer config, as shipped, on the default data: test MSE against the
    closed-form least-squares reference."""
    lines = [
        "Every optimizer option with its default lr and scheduler: `python train.py "
        "optimizer=<name>` (default data, max_epochs, seed), test split",
        "",
        "| optimizer | lr | test/mse | least squares | gap | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for option in optimizer_options(checkout):
        seconds, _, config, summary = train_run([f"optimizer={option}"], device, checkout)
        metrics = summary["metrics"]
        lr = config.optimizer.lr
        lines.append(
            f"| {option} | {lr:g} | {metrics['test/mse']:.6f} | "
            f"{metrics['reference/test_mse']:.6f} | "
            f"{summary['test_mse_gap_to_reference']:+.3%} | {seconds:.1f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def quiet_lightning() -> None:
    """The benchmark prints its figures only: no product tips, device notes, model summaries or
    advice about settings it chose on purpose (no validation, one epoch), once per fit."""
    import lightning.pytorch  # noqa: F401  (its import sets its logger to INFO: then lower it)

    tidy_lightning_output()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"lightning\.")


def main() -> None:
    quiet_lightning()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 8192, 65536])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--streaming-rows", type=float, nargs="+", default=None,
        help="instead: peak memory and time of streaming runs with these N (e.g. 1e6 1e7 1e8)",
    )  # fmt: skip
    parser.add_argument(
        "--tables", type=float, nargs="+", default=None,
        help="instead: reading CSV and Parquet tables, in memory and streamed, with these N",
    )  # fmt: skip
    parser.add_argument(
        "--precision", default="32-true",
        help="with --tables: the runs' trainer.precision (64-true reads and trains in float64)",
    )  # fmt: skip
    parser.add_argument(
        "--accuracy", action="store_true",
        help="instead: test MSE of every optimizer option against least squares",
    )  # fmt: skip
    parser.add_argument(
        "--convergence", action="store_true",
        help="instead: every optimizer on many data shapes against least squares, and linreg "
        "against scikit-learn on --rows x --features",
    )  # fmt: skip
    parser.add_argument(
        "--scale", action="store_true",
        help="instead: a table generated on the device (--scale-rows x --features): copy "
        "bandwidth, epoch rows/s and its share of it, time to least squares (linreg.scale)",
    )  # fmt: skip
    parser.add_argument("--scale-rows", type=float, default=5e7)
    parser.add_argument(
        "--scale-parquet-rows", type=float, default=0,
        help="with --scale: also a Parquet table of this many rows x 16 features, streamed onto "
        "the device: read alone, then trained on (which one bounds the epoch)",
    )  # fmt: skip
    parser.add_argument(
        "--budget", type=float, default=60.0,
        help="with --scale: the seconds of epochs each batch size may train for",
    )  # fmt: skip
    parser.add_argument(
        "--checkout", type=Path, default=Path.cwd(),
        help="the linreg checkout whose train.py and conf/ are measured (default: this folder)",
    )  # fmt: skip
    args = parser.parse_args()
    if not (args.checkout / "train.py").is_file() or not (args.checkout / "conf").is_dir():
        parser.error(
            f"--checkout {args.checkout}: no train.py and conf/ there; run from the checkout"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU found")
    if args.convergence:
        from linreg.convergence import against_scikit_learn, matrix

        comparison = against_scikit_learn(args.rows, args.features, args.device, args.checkout)
        print(comparison, flush=True)
        report = comparison + "\n" + matrix(args.device, args.checkout)
    elif args.scale:
        from linreg.scale import scale

        report = scale(
            int(args.scale_rows), args.features, args.batch_sizes, args.device, args.budget,
            int(args.scale_parquet_rows), args.checkout,
        )  # fmt: skip
    elif args.accuracy:
        report = accuracy(args.device, args.checkout)
    elif args.tables:
        report = tables([int(n) for n in args.tables], args.device, args.checkout, args.precision)
    elif args.streaming_rows:
        report = streaming([int(n) for n in args.streaming_rows], args.device, args.checkout)
    else:
        report = run(
            args.rows, args.features, args.batch_sizes, args.repeats, args.device, args.checkout
        )
    out = args.out or Path("outputs/bench") / f"{datetime.now():%Y-%m-%d_%H-%M-%S}-{args.device}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report, end="")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
