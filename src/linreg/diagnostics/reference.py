"""The closed-form least-squares fit: the noise-floor reference every trained model is judged by.

It reads the data as a stream of (features, targets) batches and accumulates the normal equations in
float64, so it works as well on a split too large for memory as on one in-memory tensor.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


def _with_bias_column(features: Tensor) -> Tensor:
    ones = torch.ones(len(features), 1, dtype=torch.float64, device=features.device)
    return torch.cat([features.double(), ones], dim=1)


def least_squares(batches: Iterable[Batch]) -> tuple[Tensor, Tensor]:
    """Weight (n_targets, n_features) and bias (n_targets,) of the least-squares fit, in float64."""
    gram = moment = None
    for features, targets in batches:
        design = _with_bias_column(features)
        gram = design.T @ design if gram is None else gram + design.T @ design
        cross = design.T @ targets.double()
        moment = cross if moment is None else moment + cross
    solution = torch.linalg.solve(gram, moment)
    return solution[:-1].T, solution[-1]


def reference_mse(train: Iterable[Batch], test: Iterable[Batch]) -> float:
    """Test MSE of the least-squares fit to the training split."""
    weight, bias = least_squares(train)
    squared, count = 0.0, 0
    for features, targets in test:
        errors = features.double() @ weight.T + bias - targets.double()
        squared += float((errors**2).sum())
        count += errors.numel()
    return squared / count
