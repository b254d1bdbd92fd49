"""The closed-form least-squares fit: the noise-floor reference every trained model is judged by."""

from __future__ import annotations

import torch
from torch import Tensor


def least_squares(features: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Weight (n_targets, n_features) and bias (n_targets,) of the least-squares fit, in float64."""
    design = torch.cat(
        [features.double(), torch.ones(len(features), 1, dtype=torch.float64)], dim=1
    )
    solution = torch.linalg.lstsq(design, targets.double(), driver="gelsd").solution
    return solution[:-1].T, solution[-1]


def reference_mse(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> float:
    """Test MSE of the least-squares fit to the training split."""
    weight, bias = least_squares(*train)
    features, targets = test
    predictions = features.double() @ weight.T + bias
    return float(torch.mean((predictions - targets.double()) ** 2))
