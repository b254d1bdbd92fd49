"""How far a linear network's coefficients are from the parameters that generated the data.

Only meaningful where both exist: synthetic data (a real table has no ground truth) and a network
linear in its features (an MLP has no coefficients). Elsewhere the errors are absent, not zero.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from linreg.data.source import GroundTruth
from linreg.models.network import Network


def unavailable_reason(network: Network, truth: GroundTruth | None) -> str | None:
    """Why parameter errors cannot be computed for this network and data; None when they can."""
    if truth is None:
        return "the data source knows no ground truth"
    if network.coefficients() is None:
        return f"the {network.kind} network has no coefficients"
    return None


def parameter_error(network: Network, truth: GroundTruth) -> dict[str, float]:
    """`params/weight_error`: relative (Frobenius norm of the difference over that of w*);
    `params/bias_error`: the absolute L2 distance."""
    weight, bias = network.coefficients()
    true_weight = truth.weight.to(weight.device)
    weight_error = torch.linalg.norm(weight - true_weight) / torch.linalg.norm(true_weight)
    bias_error = torch.linalg.norm(bias - truth.bias.to(bias.device))
    return {"params/weight_error": float(weight_error), "params/bias_error": float(bias_error)}


class GroundTruthError(pl.Callback):
    """Logs `parameter_error` every epoch, and steps aside where it cannot (the run summary's notes
    say why)."""

    def __init__(self) -> None:
        self.enabled = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.enabled = unavailable_reason(pl_module.net, trainer.datamodule.ground_truth) is None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.enabled:
            return
        errors = parameter_error(pl_module.net, trainer.datamodule.ground_truth)
        pl_module.log_dict(errors, sync_dist=True)  # the same in every process: weights are synced
