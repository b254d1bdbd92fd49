"""Stopping when done: a run ends once its objective has stopped moving, and says so."""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning.pytorch as pl


class ConvergenceStop(pl.Callback):
    """Ends the fit once `monitor` has changed by less than `min_relative_delta` (of its value)
    over the last `patience` epochs: the weights have stopped moving, as a full-batch L-BFGS
    does in a few epochs, or a schedule that has annealed its rate away.

    It deliberately does not stop on "no new best for `patience` epochs": a stochastic optimizer
    at its noise floor scatters around the answer, a lucky low sets a best that the next epochs
    do not beat, and stopping there would skip the annealing that brings it within a hundredth
    of a per cent of least squares. Relative, so one setting serves a loss of 1e-6 and of 1e8.
    """

    def __init__(self, monitor: str, min_relative_delta: float = 1e-4, patience: int = 3) -> None:
        if min_relative_delta < 0:
            raise ValueError(f"min_relative_delta={min_relative_delta} must be >= 0")
        if patience < 1:
            raise ValueError(f"patience={patience} must be >= 1")
        self.monitor = monitor
        self.min_relative_delta = min_relative_delta
        self.patience = patience
        self.recent: deque[float] = deque(maxlen=patience + 1)
        self.stopped_at: int | None = None  # the last epoch trained, counted from 1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.recent.append(float(trainer.callback_metrics[self.monitor]))
        low, high = min(self.recent), max(self.recent)
        flat = high - low <= self.min_relative_delta * abs(low)
        # The same metric on every process (validation metrics are synced): all stop together.
        last_epoch = trainer.current_epoch + 1 >= trainer.max_epochs
        if len(self.recent) > self.patience and flat and not last_epoch:
            trainer.should_stop = True
            self.stopped_at = trainer.current_epoch + 1

    def outcome(self) -> str:
        """What the summary says about when training ended."""
        if self.stopped_at is None:
            return "ran all epochs"
        return (
            f"stopped at epoch {self.stopped_at}: {self.monitor} changed less than "
            f"{self.min_relative_delta:.2%} over {self.patience} epochs"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recent.extend(state_dict["recent"])
