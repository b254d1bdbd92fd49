"""Linear regression: standardisation then `nn.Linear`, the default network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linreg.models.network import Network


class LinearRegressor(Network):
    """y = restore(W standardize(x) + b), computed with the standardisations folded into W, b."""

    def __init__(self, n_features: int, n_targets: int, **names: list[str] | None) -> None:
        super().__init__(n_features, n_targets, **names)
        self.linear = nn.Linear(n_features, n_targets)

    def forward(self, features: Tensor) -> Tensor:
        if self.training:
            # The standardisations folded into the (tiny) weights: the same function and
            # gradients, without element-wise passes over every training batch.
            return F.linear(features, *self.folded_parameters())
        # Evaluation, prediction and the exported graph standardise first: on raw values far from
        # 0 (a year, prices in the millions) the folded sum cancels large terms and loses digits
        # in float32, and two implementations (PyTorch, onnxruntime) would lose different ones.
        whitened = self.decorrelate(self.standardize(features))
        return self.target_standardize.restore(self.linear(whitened))

    def folded_parameters(self) -> tuple[Tensor, Tensor]:
        """Weight and bias in raw units: with V = W R^T / s_x, s_y V and s_y (b - V @ m_x) + m_y."""
        scale = self.target_standardize.std.unsqueeze(1)
        weight = self.linear.weight @ self.decorrelate.rotation.T / self.standardize.std
        bias = self.linear.bias - weight @ self.standardize.mean
        return scale * weight, scale.squeeze(1) * bias + self.target_standardize.mean

    @torch.no_grad()
    def coefficients(self) -> tuple[Tensor, Tensor]:
        return self.folded_parameters()
