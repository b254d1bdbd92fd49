"""Callbacks that watch a fit: stop on divergence, and track the distance to the ground truth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from linreg.data import GroundTruth
from linreg.errors import DivergenceError
from linreg.regressor import LinearRegressor


class DivergenceGuard(pl.Callback):
    """Stops the fit at the first non-finite training loss, before it reaches a checkpoint."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if bool(torch.isfinite(loss)):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        raise DivergenceError(
            f"training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}): "
            f"train/loss is {float(loss)}; the learning rate is likely too high "
            f"(optimizer.lr={lr:g}), try a smaller one"
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
        pl_module.log_dict({"params/weight_error": weight_error, "params/bias_error": bias_error})


def parameter_error(regressor: LinearRegressor, truth: GroundTruth) -> tuple[float, float]:
    """(relative weight error, absolute bias error) of a regressor against the ground truth."""
    weight, bias = regressor.raw_parameters()
    true_weight = truth.weight.to(weight.device)
    weight_error = torch.linalg.norm(weight - true_weight) / torch.linalg.norm(true_weight)
    bias_error = torch.linalg.norm(bias - truth.bias.to(bias.device))
    return float(weight_error), float(bias_error)
