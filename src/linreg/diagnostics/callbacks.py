"""Callbacks that watch a fit: stop on divergence, and track the distance to the ground truth."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from linreg.data.synthetic import GroundTruth
from linreg.errors import DivergenceError
from linreg.models.linear import LinearRegressor

FIGURE_ROWS = 20_000  # enough for every picture; all of a default split
SQUARABLE = math.sqrt(torch.finfo(torch.float32).max)  # larger values overflow the squared error


class DivergenceGuard(pl.Callback):
    """Stops the fit at the first non-finite training loss or parameter, before any epoch-end
    callback, checkpoint or figure sees it.

    Checked once per Lightning step (one host sync), over all the losses of an execution and the
    parameters its last optimizer step left. The message blames the data, not the learning rate,
    when the batch itself is non-finite or too large to square in float32.
    """

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.lr = math.nan

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The schedules step per epoch, the last one inside the epoch's last step: the rate in
        # force for the epoch's steps is the one it starts with (read once, not per step).
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        losses = (outputs["loss"] if isinstance(outputs, Mapping) else outputs).reshape(-1)
        # One sum over the losses and every parameter: a NaN or inf anywhere makes it non-finite.
        total = losses.sum() + sum(parameter.detach().sum() for parameter in pl_module.parameters())
        if bool(torch.isfinite(total)):
            return
        # An execution is a list of (features, targets) batches; one step's batch is a pair.
        executed = isinstance(batch, list) and isinstance(batch[0], tuple | list)
        batches = batch if executed else [batch]
        finite = torch.isfinite(losses)
        first = int((~finite).nonzero()[0]) if not finite.all() else len(batches) - 1
        index = batch_idx * getattr(pl_module, "steps_per_execution", 1) + first
        where = (
            f"training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {index}): "
        )
        what = (
            f"train/loss is {float(losses[first])}"
            if not finite.all()
            else f"the weights became non-finite in the optimizer step on that batch "
            f"(its train/loss was {float(losses[first]):.4g})"
        )
        raise DivergenceError(where + what + "; " + _likely_cause(batches[first], self.lr))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Finite weights can still be absurd (1e20 after one bad step): their validation loss
        # overflows. Caught here, before the epoch's checkpoints are written.
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or bool(torch.isfinite(value)):
            return
        largest = max(float(p.detach().abs().max()) for p in pl_module.parameters())
        raise DivergenceError(
            f"training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"validation): {self.monitor} is "
            f"{float(value)} (the largest weight is {largest:.3g}); the learning rate is likely "
            f"too high (optimizer.lr={self.lr:g} in that epoch), try a smaller one"
        )


def _likely_cause(batch: tuple[Tensor, Tensor], lr: float) -> str:
    """The data when it is non-finite or too large for float32's squares, else the lr."""
    for name, values in zip(("features", "targets"), batch, strict=True):
        if not bool(torch.isfinite(values).all()):
            return f"the batch's {name} hold non-finite values: the data, not the learning rate"
        largest = float(values.abs().max())
        if largest > SQUARABLE:
            return (
                f"the batch's {name} reach {largest:.3g}, whose square overflows float32 "
                f"(above {SQUARABLE:.2g}): rescale the data; the learning rate is not the cause"
            )
    return (
        f"the learning rate is likely too high (optimizer.lr={lr:g} at that step), "
        "try a smaller one"
    )


class GroundTruthError(pl.Callback):
    """Logs how far the learned raw-feature weights and bias are from the data's ground truth.

    `params/weight_error` is relative (Frobenius norm of the difference over that of w*);
    `params/bias_error` is the absolute L2 distance.
    """

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        weight_error, bias_error = parameter_error(
            pl_module.regressor, trainer.datamodule.ground_truth
        )
        errors = {"params/weight_error": weight_error, "params/bias_error": bias_error}
        pl_module.log_dict(errors, sync_dist=True)  # the same in every process: weights are synced


def parameter_error(regressor: LinearRegressor, truth: GroundTruth) -> tuple[float, float]:
    """(relative weight error, absolute bias error) of a regressor against the ground truth."""
    weight, bias = regressor.raw_parameters()
    true_weight = truth.weight.to(weight.device)
    weight_error = torch.linalg.norm(weight - true_weight) / torch.linalg.norm(true_weight)
    bias_error = torch.linalg.norm(bias - truth.bias.to(bias.device))
    return float(weight_error), float(bias_error)


class TensorBoardInsights(pl.Callback):
    """The model graph once, weight histograms every epoch, and pictures of the fit (predicted vs
    true, residuals, learned vs ground-truth weights) at the end of fit on the test split and every
    `figures_every_n_epochs` epochs on the validation split. Does nothing without TensorBoard.

    The graph is added here rather than by `TensorBoardLogger(log_graph=True)`, which adds it again
    at every trainer stage.
    """

    def __init__(self, figures_every_n_epochs: int | None = None) -> None:
        self.figures_every_n_epochs = figures_every_n_epochs

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is not None and trainer.global_step == 0:
            writer.add_graph(pl_module.regressor, pl_module.example_input_array)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is None:
            return
        for name, parameter in pl_module.regressor.named_parameters():
            values = parameter.detach().float().cpu()  # numpy has no bfloat16
            # bins="auto": TensorBoard's default buckets end near 1e12 and fail beyond.
            writer.add_histogram(f"weights/{name}", values, trainer.global_step, bins="auto")
        every = self.figures_every_n_epochs
        if every and (trainer.current_epoch + 1) % every == 0 and trainer.is_global_zero:
            self._log_figures(writer, trainer, pl_module, "val")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is not None and trainer.is_global_zero:
            self._log_figures(writer, trainer, pl_module, "test")

    @staticmethod
    def _log_figures(
        writer: Any, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str
    ) -> None:
        from linreg import figures  # matplotlib costs ~0.4 s to import: only when drawing

        datamodule = trainer.datamodule
        features, targets = datamodule.sample(split, FIGURE_ROWS)
        with torch.no_grad():
            predicted = pl_module(features.to(pl_module.device)).float().cpu().numpy()
        true = targets.numpy()
        learned, _ = pl_module.regressor.raw_parameters()
        step = trainer.global_step
        noise_std = datamodule.hparams.noise_std
        drawn = {
            "predicted_vs_true": figures.predicted_vs_true(predicted, true, split),
            "residuals": figures.residual_histogram(predicted - true, noise_std, split),
            "weights_vs_truth": figures.weights_vs_truth(
                learned.float().cpu().numpy(), datamodule.ground_truth.weight.numpy()
            ),
        }
        for name, figure in drawn.items():
            writer.add_figure(f"figures/{name}", figure, step)


def _tensorboard_writer(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
