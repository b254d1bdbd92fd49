"""The regression metrics every stage reports, and the training loss summed without host syncs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.regression import (
    ExplainedVariance,
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
)

from linreg.batches import Batch, to_device


def with_loss(values: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Adds `<stage>/loss`: the training objective, MSE, under the name every stage shares."""
    return {**values, f"{prefix}loss": values[f"{prefix}mse"]}


def regression_metrics(prefix: str, sync_on_compute: bool = True) -> MetricCollection:
    """MSE, MAE, R2 and explained variance; `sync_on_compute` gathers DDP processes' states."""
    options = {"sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "mse": MeanSquaredError(**options),
            "mae": MeanAbsoluteError(**options),
            "r2": R2Score(**options),
            "explained_variance": ExplainedVariance(**options),
        },
        prefix=prefix,
    )


@torch.no_grad()
def evaluate(network: nn.Module, batches: Iterable[Batch], prefix: str) -> dict[str, float]:
    """A stage's metrics over a whole split, outside any trainer (and without logging), on the
    device `network` is on. Local to this process: under DDP only rank 0 calls this."""
    device = next(network.parameters()).device
    metrics = regression_metrics(prefix, sync_on_compute=False).to(device)
    for features, targets in batches:
        metrics.update(network(features.to(device)), targets.to(device))
    values = with_loss(metrics.compute(), prefix)
    return {name: float(value) for name, value in values.items()}


class RunningLoss:
    """Row-weighted sums of the training loss, kept as float32 device tensors: no host sync per
    step, and no stalled sums under bf16/fp16 (a low-precision sum stops growing long before an
    epoch ends)."""

    def __init__(self) -> None:
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.epoch_sum: Tensor | float = 0.0
        self.window_sum: Tensor | float = 0.0
        self.epoch_rows = self.window_rows = 0

    def add(self, losses: Tensor, rows: Sequence[int]) -> None:
        """Batches' mean losses (1-d) over `rows[i]` rows each: a few device ops per call."""
        losses = losses.detach().float()
        if len(set(rows)) == 1:  # a Python factor: nothing is copied to the device
            weighted = losses.sum() * rows[0]
        else:  # a split's last, shorter batch, once per epoch: copied without waiting for it
            weighted = (
                losses * to_device(torch.tensor(rows, dtype=torch.float32), losses.device)
            ).sum()
        self.epoch_sum = self.epoch_sum + weighted
        self.window_sum = self.window_sum + weighted
        self.epoch_rows += sum(rows)
        self.window_rows += sum(rows)

    def window_mean(self) -> Tensor:
        mean = self.window_sum / self.window_rows
        self.window_sum, self.window_rows = 0.0, 0
        return mean

    def epoch_mean(self) -> Tensor:
        return self.epoch_sum / self.epoch_rows
