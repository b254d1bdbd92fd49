"""Stop a fit at the first sign of divergence, naming the step and the likely cause."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from linreg.errors import DivergenceError

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
        # The rate the user set (a schedule keeps it as `initial_lr` and moves `lr` around it).
        group = trainer.optimizers[0].param_groups[0]
        self.lr = group.get("initial_lr", group["lr"])

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
        index = pl_module.execution.first_batch(batch_idx) + first
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
            f"too high (optimizer.lr={self.lr:g}), try a smaller one"
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
    return f"the learning rate is likely too high (optimizer.lr={lr:g}), try a smaller one"
