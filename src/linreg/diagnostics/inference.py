"""The statistics a statistician reads beside a least-squares fit, as statsmodels' OLS and R's `lm`
give them: per coefficient its t statistic, two-sided p-value and 95 % confidence interval; per
target the fit's R², adjusted R², residual standard error and F test; the design's condition number.

The t and F distributions come from mpmath (regularised incomplete beta function, in arbitrary
precision), which PyTorch already installs: no special function is written here, and SciPy stays
out of the environment (with SciPy installed, torchmetrics imports `scipy.signal` at every start).
"""

from __future__ import annotations

import math
from typing import Any

from linreg.diagnostics.reference import LeastSquares

CONFIDENCE = 0.95
# A condition index of the standardised columns above this is strong collinearity (Belsley, Kuh
# and Welsch's rule); the raw condition number, which statsmodels notes above 1000, also grows
# with the columns' units (a year beside a rate), so it is reported, not warned about.
COLLINEAR = 30.0


# Below float64's smallest positive number (subnormals included): a p-value there is 0.
UNDERFLOW_LOG = -330 * math.log(10)


def regularized_beta(a: float, b: float, x: float, one_minus_x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, with mpmath, for any degrees of
    freedom. mpmath's series converge slowly or cancel where a is large and x near 1 (many
    residual degrees of freedom), so: a value that cannot reach float64's range is 0 at once (from
    the first term of its series, x^a (1-x)^b / (a B(a, b)), and the ratio its terms shrink by);
    x below 1/2 goes to mpmath's `betainc`; above, 1 - I_{1-x}(b, a), whose series in
    2F1(a+b, 1; b+1; 1-x) has positive terms, in as many digits as the result needs (a p-value of
    1e-40 keeps its own). `one_minus_x` is passed apart, computed without the cancellation."""
    import mpmath

    with mpmath.workdps(30):
        a_, b_, x_, y_ = (mpmath.mpf(value) for value in (a, b, x, one_minus_x))
        log_x, log_y = _logs(x_, y_)
        log_first = a_ * log_x + b_ * log_y - mpmath.log(a_) - mpmath.log(mpmath.beta(a_, b_))
        ratio = x_ * max(1, (a_ + b_) / (a_ + 1))
        if ratio < 1 and log_first - mpmath.log(1 - ratio) < UNDERFLOW_LOG:
            return 0.0
        if x <= 0.5:
            return float(mpmath.betainc(a_, b_, 0, x_, regularized=True))
    value = mpmath.mpf(0)
    for digits in (30, 120, 400, 1600):
        with mpmath.workdps(digits):
            a_, b_, x_, y_ = (mpmath.mpf(value) for value in (a, b, x, one_minus_x))
            log_x, log_y = _logs(x_, y_)
            lead = mpmath.exp(b_ * log_y + a_ * log_x - mpmath.log(b_)
                              - mpmath.log(mpmath.beta(b_, a_)))  # fmt: skip
            value = 1 - lead * mpmath.hyp2f1(a_ + b_, 1, b_ + 1, y_, maxterms=10**6)
            if value > mpmath.mpf(10) ** (20 - digits):
                break
    return float(value)


def _logs(x: Any, y: Any) -> tuple[Any, Any]:
    """log x and log(1 - x) from the smaller of x and y = 1 - x, which holds its digits: with
    a billion degrees of freedom, x^a's error is a times x's."""
    import mpmath

    if x <= y:
        return mpmath.log(x), mpmath.log1p(-x)
    return mpmath.log1p(-y), mpmath.log(y)


def t_p_value(t: float, dof: int) -> float:
    """Two-sided p-value of Student's t with `dof` degrees of freedom:
    I_{dof/(dof+t²)}(dof/2, 1/2)."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return regularized_beta(dof / 2, 0.5, dof / (dof + t * t), t * t / (dof + t * t))


def t_quantile(two_sided: float, dof: int) -> float:
    """The t such that P(|T| > t) = `two_sided` (1.96 for large `dof` at 0.05), by bisection on
    the p-value, which falls as t grows."""
    low, high = 0.0, 1.0
    while t_p_value(high, dof) > two_sided:
        low, high = high, 2 * high
    for _ in range(60):  # to float64's resolution
        middle = (low + high) / 2
        if t_p_value(middle, dof) > two_sided:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def f_p_value(f: float, dof_model: int, dof_resid: int) -> float:
    """P(F > f) for F(dof_model, dof_resid): I_{d2/(d2+d1 f)}(d2/2, d1/2)."""
    if math.isnan(f):
        return math.nan
    if math.isinf(f):
        return 0.0
    scale = dof_resid + dof_model * f
    return regularized_beta(dof_resid / 2, dof_model / 2, dof_resid / scale, dof_model * f / scale)


def residual_dof(fit: LeastSquares) -> int:
    return fit.rows - fit.rank - int(fit.intercept)


def coefficient_statistics(estimate: float, std_error: float | None, dof: int, quantile: float):
    """{t, p_value, ci_low, ci_high} of one coefficient; None without a standard error."""
    if std_error is None or dof <= 0:
        return None
    t = estimate / std_error if std_error > 0 else math.copysign(math.inf, estimate)
    half_width = quantile * std_error
    return {
        "t": t,
        "p_value": t_p_value(t, dof),
        "ci_low": estimate - half_width,
        "ci_high": estimate + half_width,
    }


def fit_statistics(fit: LeastSquares, target_names: list[str]) -> dict[str, Any]:
    """Per target the fit's statistics (R² centred with an intercept, uncentred through the
    origin, as statsmodels); the degrees of freedom and the condition number are the design's."""
    dof = residual_dof(fit)
    dof_model = fit.rank
    per_target = {}
    for t, name in enumerate(target_names):
        rss, tss = float(fit.rss[t]), float(fit.tss[t])
        r2 = 1 - rss / tss if tss > 0 else math.nan
        stats: dict[str, Any] = {"r2": r2}
        if dof > 0:
            stats["adj_r2"] = 1 - (fit.rows - int(fit.intercept)) / dof * (1 - r2)
            stats["residual_std_error"] = math.sqrt(rss / dof)
            if dof_model > 0:
                f = ((tss - rss) / dof_model) / (rss / dof) if rss > 0 else math.inf
                stats["f_statistic"] = f
                stats["f_p_value"] = f_p_value(f, dof_model, dof)
        per_target[name] = stats
    return {
        "rows": fit.rows,
        "dof_model": dof_model,
        "dof_residual": dof,
        "intercept": fit.intercept,
        "condition_number": fit.condition,
        "condition_index": fit.condition_index,
        "targets": per_target,
    }


def conditioning_note(fit: LeastSquares) -> str | None:
    """One line where the design's columns are strongly collinear; None where they are not (a
    design that does not determine the fit at all has a note of its own)."""
    index = fit.condition_index
    if not fit.unique or index is None or index <= COLLINEAR:
        return None
    return (
        f"the design is ill-conditioned: its standardised columns' condition index is "
        f"{index:.3g} (above {COLLINEAR:g}: some columns are nearly combinations of others); "
        "the coefficients and their standard errors move with small changes in the data"
    )
