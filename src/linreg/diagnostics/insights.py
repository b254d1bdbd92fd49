"""What TensorBoard shows beyond scalars: the graph, weight histograms, figures of the fit."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from linreg.diagnostics.ground_truth import unavailable_reason

FIGURE_ROWS = 20_000  # enough for every picture; all of a default split


class TensorBoardInsights(pl.Callback):
    """The model graph once, weight histograms every epoch, and pictures of the fit (predicted vs
    true, residuals, learned vs ground-truth weights): of the tested model on the test split
    (`figures/test/*`, at the step of the checkpoint tested), and every `figures_every_n_epochs`
    epochs on the validation split (`figures/val/*`). Does nothing without TensorBoard.

    The graph is added here rather than by `TensorBoardLogger(log_graph=True)`, which adds it again
    at every trainer stage.
    """

    def __init__(self, figures_every_n_epochs: int | None = None) -> None:
        self.figures_every_n_epochs = figures_every_n_epochs

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is not None and trainer.global_step == 0:
            writer.add_graph(pl_module.net, pl_module.example_input_array)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is None:
            return
        # Lightning logs a step's values at the step's index (from 0), the epoch's validation at
        # its last step's: the epoch's pictures go beside them, not one step later.
        step = max(0, trainer.global_step - 1)
        self._log_weights(writer, pl_module.net, step)
        every = self.figures_every_n_epochs
        if every and (trainer.current_epoch + 1) % every == 0 and trainer.is_global_zero:
            self._log_figures(writer, pl_module, trainer.datamodule, "val", step)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the test loop: the module holds the checkpoint that was tested (the best one).
        writer = _tensorboard_writer(trainer)
        if writer is not None and trainer.is_global_zero:
            self._log_figures(writer, pl_module, trainer.datamodule, "test", trainer.global_step)

    @staticmethod
    def _log_weights(writer: Any, net: Any, step: int) -> None:
        """What a reader compares with the coefficients figure: a linear network's standardised
        effects (raw coefficient x the feature's standard deviation / the target's) as a
        histogram, and its intercepts in raw units as scalars (a histogram of one value draws a
        block that reads as another); a network without coefficients, its own parameters. Named
        `model/...`: TensorBoard's HParams tab lists every scalar as a metric, by name, and the
        ranking ones (`hp/...`) must come first."""
        # bins="auto": TensorBoard's default buckets end near 1e12 and fail beyond.
        coefficients = net.coefficients()
        if coefficients is None:
            for name, parameter in net.named_parameters():
                values = parameter.detach().float().cpu()  # numpy has no bfloat16
                writer.add_histogram(f"weights/{name}", values, step, bins="auto")
            return
        weight, bias = (values.detach().double().cpu() for values in coefficients)
        feature_sd = net.standardize.std.double().cpu()
        target_sd = net.target_standardize.std.double().cpu()[:, None]
        effects = weight * feature_sd / target_sd
        writer.add_histogram("model/standardised_effects", effects, step, bins="auto")
        if net.intercept:
            for target, value in zip(net.target_names, bias.tolist(), strict=True):
                writer.add_scalar(f"model/intercept/{target}", value, step)

    @staticmethod
    def _log_figures(
        writer: Any, pl_module: pl.LightningModule, datamodule: Any, split: str, step: int
    ) -> None:
        from linreg.diagnostics import (
            figures,  # matplotlib costs ~0.4 s to import: only when drawing
        )

        features, targets = datamodule.sample(split, FIGURE_ROWS)
        with torch.no_grad():
            predicted = pl_module(features.to(pl_module.device)).float().cpu().numpy()
        true = targets.numpy()
        truth = datamodule.ground_truth
        # A tiny table's val and test stages measure its training rows: the figures say so.
        in_sample = split in datamodule.source.measured_on_training_rows
        rows = f"training rows: no {split} rows of its own" if in_sample else f"{split} split"
        drawn = {
            "predicted_vs_true": figures.predicted_vs_true(predicted, true, rows),
            "residuals": figures.residual_histogram(
                predicted - true, truth.noise_std if truth else None, rows
            ),
        }
        if unavailable_reason(pl_module.net, truth) is None:
            learned, _ = pl_module.net.coefficients()
            drawn["weights_vs_truth"] = figures.weights_vs_truth(
                learned.float().cpu().numpy(), truth.weight.numpy()
            )
        for name, figure in drawn.items():
            writer.add_figure(f"figures/{split}/{name}", figure, step)


def _tensorboard_writer(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
