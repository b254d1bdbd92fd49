"""Linear regression: standardisation then `nn.Linear`, the default network."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from linreg.models.network import Network


class LinearRegressor(Network):
    """y = restore(W decorrelate(standardize(x)) + b): a linear map of the raw features; with
    `intercept=False`, y = W x exactly (a line through the origin: calibration, NIST's NoInt)."""

    def __init__(
        self, n_features: int, n_targets: int, intercept: bool = True, **names: Any
    ) -> None:
        super().__init__(n_features, n_targets, intercept=intercept, **names)
        self.linear = nn.Linear(n_features, n_targets, bias=intercept)

    def forward(self, features: Tensor) -> Tensor:
        # Evaluation, prediction and the exported graph transform the features first: on raw
        # values far from 0 (a year, prices in the millions) a folded sum cancels large terms
        # and loses digits in float32, and PyTorch and onnxruntime would lose different ones.
        return self.target_standardize.restore(self.standardized(features))

    def standardized(self, features: Tensor) -> Tensor:
        if self.training:
            # The feature transforms folded into the (tiny) weights: the same function and
            # gradients, without element-wise passes over every training batch.
            return F.linear(features, *self.standardized_fold())
        return self.linear(self.decorrelate(self.standardize(features)))

    def standardized_fold(self) -> tuple[Tensor, Tensor]:
        """Weight and bias from raw features to standardised targets: W M and b - W c, where
        M = R^T / s holds both feature transforms and c = M m."""
        transform, offset = self._feature_transform()
        weight, bias = self.linear.weight, self.linear.bias
        if bias is None:  # through the origin: no offset either (the features are not centred)
            return weight @ transform, weight.new_zeros(self.n_targets)
        return weight @ transform, torch.addmv(bias, weight, offset, alpha=-1)  # one node, not two

    def _feature_transform(self) -> tuple[Tensor, Tensor]:
        """M and c, computed again only when a buffer they come from has changed (fitted, loaded,
        moved): per training step they would be two more operations on the critical path."""
        sources = (self.decorrelate.rotation, self.standardize.std, self.standardize.mean)
        key = tuple((tensor.data_ptr(), tensor._version) for tensor in sources)
        if getattr(self, "_transform_key", None) != key:
            rotation, std, mean = sources
            transform = rotation.T / std
            self._transform = (transform, transform @ mean)
            self._transform_key = key
        return self._transform

    @torch.no_grad()
    def coefficients(self) -> tuple[Tensor, Tensor]:
        """Weight and bias in raw units: the standardised fold, times s_y, plus m_y."""
        weight, bias = self.standardized_fold()
        scale = self.target_standardize.std
        return scale.unsqueeze(1) * weight, scale * bias + self.target_standardize.mean
