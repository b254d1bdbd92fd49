"""The regression metrics every stage reports, and the training loss summed without host syncs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


class R2OrUndefined(R2Score):
    """R², undefined (NaN: null in metrics.json) on fewer than two rows, whose variance is
    nothing to compare with, where torchmetrics raises an error: a tiny table's one test row.
    For a model through the origin (`centred=False`) it is uncentred, 1 - SSE / sum(y^2), as
    statsmodels and R report it: the centred one compares with a model the fit cannot be."""

    def __init__(self, centred: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self.centred = centred

    def compute(self) -> Tensor:
        if self.total < 2:
            return torch.tensor(float("nan"), device=self.total.device)
        if not self.centred:  # per target (torchmetrics' sums are), averaged as it averages
            return (1 - self.residual / self.sum_squared_error).mean()
        return super().compute()


class ExplainedVarianceOrUndefined(ExplainedVariance):
    """Explained variance, undefined on fewer than two rows (torchmetrics says 1.0 there)."""

    def compute(self) -> Tensor:
        if self.num_obs < 2:
            return torch.tensor(float("nan"), device=self.num_obs.device)
        return super().compute()


def undefined_metrics(metrics: Mapping[str, float], rows: Mapping[str, int]) -> list[str]:
    """A note for each stage whose split was too small for some of its metrics."""
    notes = []
    for stage, count in rows.items():
        names = [name for name, value in metrics.items()
                 if name.startswith(f"{stage}/") and math.isnan(value)]  # fmt: skip
        if names:
            notes.append(f"{' and '.join(sorted(names))} are undefined on the {count} row"
                         f"{'s' if count != 1 else ''} of the {stage} split (null)")  # fmt: skip
    return notes


def with_loss(values: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Adds `<stage>/loss`: the training objective, MSE, under the name every stage shares."""
    return {**values, f"{prefix}loss": values[f"{prefix}mse"]}


def regression_metrics(
    prefix: str, sync_on_compute: bool = True, intercept: bool = True
) -> MetricCollection:
    """MSE, MAE, R2 (uncentred for a model without `intercept`) and explained variance;
    `sync_on_compute` gathers DDP processes' states."""
    options = {"sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "mse": MeanSquaredError(**options),
            "mae": MeanAbsoluteError(**options),
            "r2": R2OrUndefined(centred=intercept, **options),
            "explained_variance": ExplainedVarianceOrUndefined(**options),
        },
        prefix=prefix,
    )


@torch.no_grad()
def evaluate(network: nn.Module, batches: Iterable[Batch], prefix: str) -> dict[str, float]:
    """A stage's metrics over a whole split, outside any trainer (and without logging), on the
    device `network` is on. Local to this process: under DDP only rank 0 calls this."""
    device = next(network.parameters()).device
    intercept = getattr(network, "intercept", True)
    metrics = regression_metrics(prefix, sync_on_compute=False, intercept=intercept).to(device)
    # Each row's loss (its squared error, the mean over targets): their spread gives the loss's
    # standard error, which says whether two runs' losses differ by more than the rows' noise.
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for features, targets in batches:
        predicted, wanted = network(features.to(device)), targets.to(device)
        metrics.update(predicted, wanted)
        row_loss = (predicted.double() - wanted.double()).square().mean(1)
        sums += torch.stack([row_loss.new_tensor(len(row_loss)), row_loss.sum(),
                             row_loss.square().sum()])  # fmt: skip
    values = {name: float(value) for name, value in with_loss(metrics.compute(), prefix).items()}
    rows, total, squares = (float(value) for value in sums)
    if rows > 1:
        variance = max(squares - total * total / rows, 0.0) / (rows - 1)
        values[f"{prefix}loss_std_error"] = math.sqrt(variance / rows)
    return values


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
