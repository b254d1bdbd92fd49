"""Named coefficients in raw units: the trained network's next to the exact least-squares ones, with
the latter's standard errors, so a user can see how far SGD's answer is from the exact one."""

from __future__ import annotations

from typing import Any

from linreg.diagnostics.inference import (
    CONFIDENCE,
    coefficient_statistics,
    residual_dof,
    t_quantile,
)
from linreg.diagnostics.reference import LeastSquares
from linreg.models.network import Network

INTERCEPT = "(intercept)"


def coefficient_table(network: Network, fit: LeastSquares) -> dict[str, dict[str, Any]] | None:
    """{target: {name: {trained, least_squares, std_error, t, p_value, ci_low, ci_high}}}, the
    least-squares statistics null where it has no standard errors; the intercept (where the
    model has one) first and then the
    features by the size of their least-squares effect (coefficient x the feature's training
    standard deviation), largest first; None for a network without coefficients."""
    coefficients = network.coefficients()
    if coefficients is None:
        return None
    weight, bias = (values.double().cpu() for values in coefficients)
    spread = network.standardize.std.double().cpu()
    dof = residual_dof(fit)
    quantile = t_quantile(1 - CONFIDENCE, dof) if fit.weight_se is not None and dof > 0 else 0.0

    def _row(trained: Any, exact: Any, errors: Any, index: tuple[int, ...]) -> dict[str, Any]:
        error = None if errors is None else float(errors[index])
        statistics = coefficient_statistics(float(exact), error, dof, quantile)
        return {
            "trained": float(trained),
            "least_squares": float(exact),
            "std_error": error,
            **(statistics or dict.fromkeys(("t", "p_value", "ci_low", "ci_high"))),
        }

    table = {}
    for t, target in enumerate(network.target_names):
        rows = {INTERCEPT: _row(bias[t], fit.bias[t], fit.bias_se, (t,))} if fit.intercept else {}
        order = sorted(
            range(network.n_features), key=lambda j: -abs(float(fit.weight[t, j] * spread[j]))
        )
        for j in order:
            rows[network.feature_names[j]] = _row(
                weight[t, j], fit.weight[t, j], fit.weight_se, (t, j)
            )
        table[target] = rows
    return table
