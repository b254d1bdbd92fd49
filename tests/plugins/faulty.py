"""A callback that fails the way a bug would (not a user error), for the fault tests' sweeps."""

from __future__ import annotations

import lightning.pytorch as pl


class FailsAtLearningRate(pl.Callback):
    """Raises a plain ValueError in the job whose learning rate is `lr`."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        group = trainer.optimizers[0].param_groups[0]
        if group.get("initial_lr", group["lr"]) == self.lr:
            raise ValueError("a bug in a callback")
