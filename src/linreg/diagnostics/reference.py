"""The closed-form least-squares fit: the reference every trained model is judged by.

It reads the data as a stream of (features, targets) batches, in float64 from the source's own
values (a table's file, not the float32 that training reads). A table small enough
(`rational.EXACT_LIMIT`) is solved exactly in rational arithmetic: every digit its data determine,
NIST's hardest certified sets included. Otherwise it keeps the column means and the *centred*
cross-products, merged batch by batch (Chan, Golub and LeVeque's update), so it works as well on a
split too large for memory as on one tensor, and large offsets (a year column, prices in the
millions) cost no digits; it then solves the scaled, centred normal equations by an
eigen-decomposition: collinear columns give the minimum-norm solution, not noise. Standard errors
follow the textbook formula (statsmodels' `bse`), where they are defined.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from linreg.diagnostics.rational import EXACT_LIMIT, exact_least_squares

Batch = tuple[Tensor, Tensor]


class CentredMoments:
    """Row count, column means and centred cross-products of features x and targets y; for a fit
    through the origin (`centre=False`), the plain cross-products (the means taken as 0)."""

    def __init__(self, centre: bool = True) -> None:
        self.centre = centre
        self.rows = 0
        self.mean_x = self.mean_y = self.xx = self.xy = self.yy = None

    def add(self, features: Tensor, targets: Tensor) -> None:
        x, y = features.double(), targets.double()
        rows = len(x)
        if rows == 0:
            return
        if self.centre:
            mean_x, mean_y = x.mean(0), y.mean(0)
        else:
            mean_x, mean_y = x.new_zeros(x.shape[1]), y.new_zeros(y.shape[1])
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
    bias: Tensor  # (n_targets,): 0 for a fit through the origin
    weight_se: Tensor | None
    bias_se: Tensor | None  # None for a fit through the origin
    rows: int
    rank: int
    intercept: bool = True
    # Per target: the residual sum of squares and the total one (about the mean, or about 0
    # through the origin); what R², the F statistic and the residual error come from.
    rss: Tensor | None = None
    tss: Tensor | None = None
    # The design's condition number (its columns, and the constant one with an intercept, as
    # statsmodels reports it): from the rows where they were kept, else from the moments.
    condition: float | None = None
    # The condition index of the standardised columns (centred too, with an intercept): the
    # square root of their correlation matrix's eigenvalue ratio. Unlike the condition number it
    # does not grow with the columns' units, only with collinearity (Belsley, Kuh and Welsch).
    condition_index: float | None = None

    @property
    def unique(self) -> bool:
        """Whether the training rows determine one answer (else: the minimum-norm one)."""
        return self.rank == self.weight.shape[1] and self.rows > self.rank


def least_squares(batches: Iterable[Batch], intercept: bool = True) -> LeastSquares:
    """The least-squares fit of the rows (read once), with an intercept or through the origin:
    exact, in rational arithmetic, where the table is small enough (`EXACT_LIMIT`) and its
    columns independent; else from the centred (or plain), scaled moments in float64."""
    moments = CentredMoments(centre=intercept)
    kept: list[Batch] | None = []  # float64 rows, while the exact solve can afford them
    for features, targets in batches:
        x, y = features.cpu().double(), targets.cpu().double()
        moments.add(x, y)
        if kept is not None:
            kept.append((x, y))
            if moments.rows * (x.shape[1] + 1) ** 2 > EXACT_LIMIT:
                kept = None
    if moments.rows == 0:
        raise ValueError("least squares needs at least one row")
    if kept:
        x = torch.cat([x for x, _ in kept]).numpy()
        exact = exact_least_squares(x, torch.cat([y for _, y in kept]).numpy(), intercept=intercept)
        design = np.hstack([x, np.ones((len(x), 1))]) if intercept else x
        condition = float(np.linalg.cond(design))
        if exact is not None:
            return LeastSquares(
                *(None if value is None else torch.from_numpy(value) for value in (
                    exact.weight, exact.bias, exact.weight_se, exact.bias_se)),
                rows=moments.rows, rank=exact.weight.shape[1], intercept=intercept,
                rss=torch.from_numpy(exact.rss), tss=torch.diagonal(moments.yy).clone(),
                condition=condition,
                condition_index=_index(torch.linalg.eigvalsh(_scaled_gram(moments)[1])),
            )  # fmt: skip
        return dataclasses.replace(moments_least_squares(moments), condition=condition)
    return moments_least_squares(moments)


def moments_least_squares(moments: CentredMoments) -> LeastSquares:
    """The fit from centred moments: the scaled, centred normal equations solved by an
    eigen-decomposition (collinear columns: the minimum-norm answer)."""
    scale, gram = _scaled_gram(moments)
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
    residual_dof = moments.rows - rank - int(moments.centre)
    rss = (torch.diagonal(moments.yy) - (scaled_beta * scaled_xy).sum(0)).clamp(min=0)
    if rank == n_features and residual_dof > 0:
        sigma2 = rss / residual_dof  # (n_targets,)
        weight_se = torch.sqrt(sigma2[:, None] * (torch.diagonal(inverse) / scale**2)[None, :])
        if moments.centre:
            centre = moments.mean_x / scale
            bias_se = torch.sqrt(sigma2 * (1 / moments.rows + centre @ inverse @ centre))
    index = _index(eigenvalues)
    return LeastSquares(weight, bias, weight_se, bias_se, moments.rows, rank, moments.centre,
                        rss=rss, tss=torch.diagonal(moments.yy).clone(),
                        condition=moments_condition(moments), condition_index=index)  # fmt: skip


def _scaled_gram(moments: CentredMoments) -> tuple[Tensor, Tensor]:
    """The columns' scales and their Gram matrix scaled to a unit diagonal (their correlation
    matrix, with an intercept), whose eigenvalues measure collinearity alone."""
    scale = torch.sqrt(torch.diagonal(moments.xx))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, moments.xx / torch.outer(scale, scale)


def _index(eigenvalues: Tensor) -> float:
    """The square root of a symmetric matrix's eigenvalue ratio, to float64's resolution."""
    largest = float(eigenvalues.max())
    smallest = max(float(eigenvalues.min()), largest * torch.finfo(torch.float64).eps)
    return math.sqrt(largest / smallest) if largest > 0 else math.inf


def moments_condition(moments: CentredMoments) -> float:
    """The design's condition number from its Gram matrix (with the constant column where the fit
    has an intercept): the square root of its eigenvalues' ratio. float64 resolves that ratio up
    to about 1e16, so a number above about 1e8 says only that the design is ill-conditioned;
    with the rows at hand (small tables) the condition number is computed from them instead."""
    n = moments.rows
    raw = moments.xx + n * torch.outer(moments.mean_x, moments.mean_x)
    if moments.centre:
        column = n * moments.mean_x
        raw = torch.cat([
            torch.cat([raw, column[:, None]], dim=1),
            torch.cat([column, raw.new_tensor([float(n)])])[None, :],
        ])  # fmt: skip
    return _index(torch.linalg.eigvalsh(raw))


def mse_of(fit: LeastSquares, test: Iterable[Batch]) -> float:
    """The fit's mean squared error over a split, every target and row weighted alike."""
    return error_and_variance(fit, test)[0]


def error_and_variance(fit: LeastSquares, test: Iterable[Batch]) -> tuple[float, float]:
    """In one pass over a split: the fit's mean squared error (every target and row weighted
    alike) and the targets' variance (the mean over targets), in float64."""
    squared, count = 0.0, 0
    moments = CentredMoments()
    for features, targets in test:
        x, y = features.double(), targets.double()
        errors = x @ fit.weight.T + fit.bias - y
        squared += float((errors**2).sum())
        count += errors.numel()
        moments.add(y[:, :0], y)
    variance = float(torch.diagonal(moments.yy).mean() / moments.rows) if moments.rows else 0.0
    return squared / count, variance


# Below this fraction of the targets' variance, least squares fits (nearly) exactly, and the gap is
# measured against that fraction instead: a float32 model cannot resolve errors much smaller.
EXACT_FIT_FRACTION = 1e-6


def gap_to_reference(test_mse: float, reference_mse: float, target_variance: float) -> float:
    """How much larger the trained model's test MSE is than least squares', as a fraction of
    least squares' (+0.01 = 1 % more error); where least squares fits (nearly) exactly, a
    fraction of `EXACT_FIT_FRACTION` x the test targets' variance instead, so that an exact fit
    (reference MSE 1e-29) gives a number that means something, not 1e16 or a division by zero."""
    floor = EXACT_FIT_FRACTION * target_variance
    scale = max(reference_mse, floor)
    return (test_mse - reference_mse) / scale if scale > 0 else 0.0


def reference_mse(train: Iterable[Batch], test: Iterable[Batch]) -> float:
    """Test MSE of the least-squares fit to the training split."""
    return mse_of(least_squares(train), test)
