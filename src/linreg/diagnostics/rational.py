"""Least squares in exact rational arithmetic, for tables small enough to afford it.

Every float64 is a dyadic rational, m * 2**e with an integer m of 53 bits. Shifted to its smallest
exponent, each column of the design is a column of Python integers, so X'X and X'y are exact
integers, and solving the normal equations over the rationals gives the least-squares answer of
the data exactly as stored: the most digits any computation can reach (the result is rounded once,
to float64, at the end). On NIST's Filip, where numpy, statsmodels and scikit-learn get no digit
right, that is every digit the float64 data determine. The cost grows as rows x coefficients² in
Python integers, hence `EXACT_LIMIT`; larger tables use the centred, scaled float64 solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# rows x coefficients² at most: 82 rows x 11 coefficients take 50 ms; 400,000 about 0.3 s.
EXACT_LIMIT = 400_000


@dataclass(frozen=True)
class ExactFit:
    """Coefficients (n_targets, n_features), intercepts and their standard errors (None where
    there are no residual degrees of freedom), and each target's residual sum of squares, each
    rounded once to float64."""

    weight: np.ndarray
    bias: np.ndarray
    weight_se: np.ndarray | None
    bias_se: np.ndarray | None
    rss: np.ndarray


def integer_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`values` (float64, rows x columns) as Python integers and one exponent per column:
    values[:, j] == ints[:, j] * 2**exponents[j], exactly."""
    mantissa, exponent = np.frexp(values)
    mantissa = (mantissa * 2.0**53).astype(np.int64)  # exact: a float64 has 53 bits
    exponent = exponent.astype(np.int64) - 53
    exponent = np.where(mantissa == 0, np.iinfo(np.int64).max, exponent)
    lowest = exponent.min(axis=0)
    lowest = np.where(lowest == np.iinfo(np.int64).max, 0, lowest)
    shifts = np.where(mantissa == 0, 0, exponent - lowest)
    # As Python integers (object arrays), which shift and multiply without overflow.
    return mantissa.astype(object) << shifts.astype(object), lowest


def _scaled(value: Fraction, power: int) -> Fraction:
    """value x 2**power, exactly."""
    return value * (1 << power) if power >= 0 else value / (1 << -power)


def exact_least_squares(
    features: np.ndarray, targets: np.ndarray, intercept: bool = True
) -> ExactFit | None:
    """The exact least-squares fit of float64 rows, with an intercept or through the origin;
    None where the design is singular (a column a combination of the others: the caller's
    minimum-norm solve answers). Without an intercept, its value is 0 and its error None."""
    from sympy import QQ
    from sympy.polys.matrices import DomainMatrix
    from sympy.polys.matrices.exceptions import DMNonInvertibleMatrixError

    rows, n_features = features.shape
    columns = [features, np.ones((rows, 1))] if intercept else [features]
    design, design_exp = integer_columns(np.hstack(columns))
    response, response_exp = integer_columns(targets)
    coefficients = design.shape[1]

    def rational(matrix: np.ndarray) -> DomainMatrix:
        return DomainMatrix([[QQ(int(v)) for v in row] for row in matrix], matrix.shape, QQ)

    try:
        inverse = rational(design.T @ design).inv()
    except DMNonInvertibleMatrixError:
        return None
    cross = design.T @ response  # (coefficients, targets)
    gamma = (inverse * rational(cross)).to_list()
    inverse_rows = inverse.to_list()
    inverse_diagonal = [inverse_rows[j][j] for j in range(coefficients)]
    dof = rows - coefficients
    estimates = np.empty((targets.shape[1], coefficients))
    errors = np.empty_like(estimates)
    rss = np.empty(targets.shape[1])
    for target in range(targets.shape[1]):
        solution = [Fraction(int(g[target].numerator), int(g[target].denominator)) for g in gamma]
        shift = int(response_exp[target])
        estimates[target] = [
            float(_scaled(value, shift - int(exp)))
            for value, exp in zip(solution, design_exp, strict=True)
        ]
        column = response[:, target]
        residual = int(column @ column) - sum(
            value * int(c) for value, c in zip(solution, cross[:, target], strict=True)
        )
        rss[target] = float(_scaled(Fraction(residual), 2 * shift))
        if dof > 0:
            variance = _scaled(Fraction(residual), 2 * shift) / dof
            errors[target] = [
                math.sqrt(float(
                    _scaled(variance * Fraction(int(d.numerator), int(d.denominator)), -2 * int(e))
                ))
                for d, e in zip(inverse_diagonal, design_exp, strict=True)
            ]  # fmt: skip
    standard_errors = errors if dof > 0 else None
    if not intercept:
        return ExactFit(estimates, np.zeros(targets.shape[1]), standard_errors, None, rss)
    return ExactFit(
        estimates[:, :n_features],
        estimates[:, n_features],
        None if standard_errors is None else standard_errors[:, :n_features],
        None if standard_errors is None else standard_errors[:, n_features],
        rss,
    )
