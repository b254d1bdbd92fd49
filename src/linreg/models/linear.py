"""The inference model: standardisation plus `nn.Linear`, in plain PyTorch (no Lightning).

Serving code (`predict.py`) imports only this module, so it starts without Lightning's import cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# LinearRegressionModule keeps its regressor in `.regressor`: the prefix of its checkpoint keys.
CHECKPOINT_PREFIX = "regressor."


class Standardize(nn.Module):
    """(x - mean) / std with statistics fitted on the training split, stored as buffers.

    Buffers travel with the state_dict and the ONNX graph, so saved models take raw features.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit_(self, features: Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        # A constant feature would divide by zero; it carries no signal, so scale it by 1.
        std = features.std(dim=0)
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std


class LinearRegressor(nn.Module):
    """The whole inference model: raw features in, predictions out."""

    def __init__(self, n_features: int, n_targets: int) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        self.linear = nn.Linear(n_features, n_targets)

    def forward(self, features: Tensor) -> Tensor:
        # linear(standardize(x)) with the standardisation folded into the (tiny) weights: the same
        # function and gradients, without two element-wise passes over every batch.
        return F.linear(features, *self.folded_parameters())

    def folded_parameters(self) -> tuple[Tensor, Tensor]:
        """Weight and bias in raw-feature units: W / std and b - (W / std) @ mean."""
        weight = self.linear.weight / self.standardize.std
        bias = self.linear.bias - weight @ self.standardize.mean
        return weight, bias

    @torch.no_grad()
    def raw_parameters(self) -> tuple[Tensor, Tensor]:
        """The folded weight and bias, detached: comparable with the data's ground truth."""
        return self.folded_parameters()


def regressor_from_checkpoint(checkpoint: Mapping[str, Any]) -> LinearRegressor:
    """The trained regressor of a Lightning checkpoint dict (as `torch.load` returns it)."""
    hparams = checkpoint["hyper_parameters"]
    regressor = LinearRegressor(hparams["n_features"], hparams.get("n_targets", 1))
    state = {
        key.removeprefix(CHECKPOINT_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(CHECKPOINT_PREFIX)
    }
    regressor.load_state_dict(state)
    return regressor.eval()
