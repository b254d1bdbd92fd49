"""The closed-form least-squares fit: the reference every trained model is judged by.

It reads the data as a stream of (features, targets) batches and keeps, in float64, the column
means and the *centred* cross-products, merged batch by batch (Chan, Golub and LeVeque's update),
so it works as well on a split too large for memory as on one tensor, and large offsets (a year
column, prices in the millions) cost no digits. It then solves the scaled, centred normal
equations by an eigen-decomposition: collinear columns give the minimum-norm solution, not noise.
Standard errors follow the textbook formula (statsmodels' `bse`), where they are defined.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


class CentredMoments:
    """Row count, column means and centred cross-products of features x and targets y."""

    def __init__(self) -> None:
        self.rows = 0
        self.mean_x = self.mean_y = self.xx = self.xy = self.yy = None

    def add(self, features: Tensor, targets: Tensor) -> None:
        x, y = features.double(), targets.double()
        rows = len(x)
        if rows == 0:
            return
        mean_x, mean_y = x.mean(0), y.mean(0)
        xc, yc = x - mean_x, y - mean_y
        xx, xy, yy = xc.T @ xc, xc.T @ yc, yc.T @ yc
        if self.rows == 0:
            self.rows, self.mean_x, self.mean_y, self.xx, self.xy, self.yy = (
                rows, mean_x, mean_y, xx, xy, yy
            )  # fmt: skip
            return
        total = self.rows + rows
        dx, dy = mean_x - self.mean_x, mean_y - self.mean_y
        weight = self.rows * rows / total
        self.xx = self.xx + xx + weight * torch.outer(dx, dx)
        self.xy = self.xy + xy + weight * torch.outer(dx, dy)
        self.yy = self.yy + yy + weight * torch.outer(dy, dy)
        self.mean_x = self.mean_x + dx * rows / total
        self.mean_y = self.mean_y + dy * rows / total
        self.rows = total


@dataclass(frozen=True)
class LeastSquares:
    """The fit y = x @ weight.T + bias, in float64, with its standard errors where defined (more
    rows than coefficients, and no column a combination of the others); else None."""

    weight: Tensor  # (n_targets, n_features)
    bias: Tensor  # (n_targets,)
    weight_se: Tensor | None
    bias_se: Tensor | None
    rows: int
    rank: int

    @property
    def unique(self) -> bool:
        """Whether the training rows determine one answer (else: the minimum-norm one)."""
        return self.rank == self.weight.shape[1] and self.rows > self.rank


def least_squares(batches: Iterable[Batch]) -> LeastSquares:
    moments = CentredMoments()
    for features, targets in batches:
        moments.add(features.cpu(), targets.cpu())
    if moments.rows == 0:
        raise ValueError("least squares needs at least one row")
    # Scaled to unit diagonal, the Gram matrix's eigenvalues measure collinearity alone.
    scale = torch.sqrt(torch.diagonal(moments.xx))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    gram = moments.xx / torch.outer(scale, scale)
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    n_features = len(scale)
    tolerance = eigenvalues.max().clamp(min=0) * n_features * torch.finfo(torch.float64).eps
    kept = eigenvalues > tolerance
    rank = int(kept.sum())
    inverse = eigenvectors[:, kept] @ torch.diag(1 / eigenvalues[kept]) @ eigenvectors[:, kept].T
    scaled_xy = moments.xy / scale[:, None]
    scaled_beta = inverse @ scaled_xy  # (n_features, n_targets)
    weight = (scaled_beta / scale[:, None]).T
    bias = moments.mean_y - weight @ moments.mean_x
    weight_se = bias_se = None
    residual_dof = moments.rows - rank - 1
    if rank == n_features and residual_dof > 0:
        residual = torch.diagonal(moments.yy) - (scaled_beta * scaled_xy).sum(0)
        sigma2 = residual.clamp(min=0) / residual_dof  # (n_targets,)
        weight_se = torch.sqrt(sigma2[:, None] * (torch.diagonal(inverse) / scale**2)[None, :])
        centre = moments.mean_x / scale
        bias_se = torch.sqrt(sigma2 * (1 / moments.rows + centre @ inverse @ centre))
    return LeastSquares(weight, bias, weight_se, bias_se, moments.rows, rank)


def mse_of(fit: LeastSquares, test: Iterable[Batch]) -> float:
    """The fit's mean squared error over a split, every target and row weighted alike."""
    squared, count = 0.0, 0
    for features, targets in test:
        errors = features.double() @ fit.weight.T + fit.bias - targets.double()
        squared += float((errors**2).sum())
        count += errors.numel()
    return squared / count


def reference_mse(train: Iterable[Batch], test: Iterable[Batch]) -> float:
    """Test MSE of the least-squares fit to the training split."""
    return mse_of(least_squares(train), test)
