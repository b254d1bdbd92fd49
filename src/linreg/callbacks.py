"""Callbacks that watch a fit: stop on divergence, and track the distance to the ground truth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from linreg.data import GroundTruth
from linreg.errors import DivergenceError
from linreg.regressor import LinearRegressor

FIGURE_ROWS = 20_000  # enough for every picture; all of a default split


class DivergenceGuard(pl.Callback):
    """Stops the fit at the first non-finite training loss, before it reaches a checkpoint.

    Checked once per Lightning step (one host sync), over all the losses of an execution.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        losses = (outputs["loss"] if isinstance(outputs, Mapping) else outputs).reshape(-1)
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return
        first = int((~finite).nonzero()[0])
        batch = batch_idx * getattr(pl_module, "steps_per_execution", 1) + first
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        raise DivergenceError(
            f"training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {batch}): train/loss is {float(losses[first])}; the learning rate is likely "
            f"too high (optimizer.lr={lr:g}), try a smaller one"
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
            writer.add_histogram(f"weights/{name}", values, trainer.global_step)
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
