"""The least-squares fit's statistics (t, p-values, intervals, R², F, condition number): the
distributions against identities nobody here chose, the whole output against statsmodels' OLS on
the same rows, with and without an intercept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import QUIET, ROOT, run_cli

from linreg.diagnostics.inference import f_p_value, t_p_value, t_quantile

ALL_ROWS = ("data.train_fraction=1", "data.val_fraction=0", "data.test_fraction=0")


def test_the_t_distribution_meets_its_closed_forms_and_the_normal_limit() -> None:
    # One degree of freedom is Cauchy: P(|T| > t) = 1 - 2 atan(t) / pi, and its 97.5 % point
    # is tan(0.475 pi); two degrees: P(|T| > t) = 1 - t / sqrt(2 + t^2).
    for t in (0.1, 1.0, 12.7, 1e3):
        assert t_p_value(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-12)
        assert t_p_value(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12)
    assert t_quantile(0.05, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    # Many degrees of freedom: the normal's 1.959963984540054 and its tail erfc(t / sqrt 2).
    assert t_quantile(0.05, 10**9) == pytest.approx(1.959963984540054, rel=1e-8)
    assert t_p_value(1.96, 10**9) == pytest.approx(math.erfc(1.96 / math.sqrt(2)), rel=1e-7)
    # A tail far below float64's epsilon keeps its digits (1 - 1e-40 would not).
    assert t_p_value(40.0, 10**9) == pytest.approx(math.erfc(40 / math.sqrt(2)), rel=1e-6)


@pytest.mark.parametrize(
    ("t", "dof", "expected"),
    [
        # From the t density integrated numerically in 50 digits (mpmath.quad): another method.
        (2.0, 140_000, 0.04550219215170456),
        (13.3, 100_000, 2.504996123506583e-40),
        (1.96, 10**9, 0.0499957905737296),
        # Below float64's range: 0, at once (the default run's t statistics, 14,000 rows).
        (55.965, 13_991, 0.0),
    ],
)
def test_many_degrees_of_freedom_keep_their_digits(t: float, dof: int, expected: float) -> None:
    # mpmath's own incomplete beta fails to converge here ("Hypergeometric series converges too
    # slowly") or cancels to a negative number.
    assert t_p_value(t, dof) == pytest.approx(expected, rel=1e-12, abs=0)
    monotone = [t_p_value(t * scale, dof) for scale in (0.5, 1, 2)]
    assert monotone == sorted(monotone, reverse=True)


def test_the_f_distribution_is_the_square_of_t_with_one_numerator_degree() -> None:
    for t, dof in ((0.5, 3), (2.0, 9), (4.0, 1000), (30.0, 100000)):
        assert f_p_value(t * t, 1, dof) == pytest.approx(t_p_value(t, dof), rel=1e-10)
    assert f_p_value(math.inf, 3, 10) == 0.0 and f_p_value(0.0, 3, 10) == 1.0


def generated_table(path: Path) -> Path:
    """200 rows of columns on very different scales, one nearly irrelevant: p-values from 1e-100
    to about 0.5."""
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.normal(50, 10, 200), rng.normal(0, 1e-3, 200), rng.normal(size=200)])
    y = 3 + x @ np.array([0.2, 150.0, 0.05]) + rng.normal(size=200)
    header = "a,b,c,y\n"
    path.write_text(header + "".join(",".join(repr(float(v)) for v in row) + "\n"
                                     for row in np.column_stack([x, y])))  # fmt: skip
    return path


@pytest.mark.slow
@pytest.mark.parametrize("intercept", [True, False], ids=["intercept", "through-origin"])
@pytest.mark.parametrize("table", ["longley", "generated"])
def test_every_statistic_is_statsmodels_ols_on_the_same_rows(
    tmp_path: Path, table: str, intercept: bool
) -> None:
    sm = pytest.importorskip("statsmodels.api", reason="the bench extra: make setup-bench")
    path = (
        ROOT / "examples" / "longley.csv"
        if table == "longley"
        else generated_table(tmp_path / "generated.csv")
    )
    target = "TOTEMP" if table == "longley" else "y"
    run_dir = tmp_path / "run"
    result = run_cli([*QUIET, "data=table", f"data.path={path}", f"data.target={target}",
                      *ALL_ROWS, "trainer.precision=64-true", "optimizer=lbfgs",
                      f"model.net.intercept={str(intercept).lower()}"], run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "metrics.json").read_text())

    names = path.read_text().split("\n")[0].split(",")
    values = np.genfromtxt(path, delimiter=",", skip_header=1)
    features = [name for name in names if name != target]
    x = values[:, [names.index(name) for name in features]]
    design = sm.add_constant(x) if intercept else x
    ols = sm.OLS(values[:, names.index(target)], design).fit()
    order = (["(intercept)"] if intercept else []) + features
    intervals = ols.conf_int(alpha=0.05)

    (rows,) = summary["coefficients"].values()
    assert sorted(rows) == sorted(order)
    for i, name in enumerate(order):
        row = rows[name]
        assert row["least_squares"] == pytest.approx(ols.params[i], rel=1e-9)
        assert row["std_error"] == pytest.approx(ols.bse[i], rel=1e-9)
        assert row["t"] == pytest.approx(ols.tvalues[i], rel=1e-9)
        assert row["p_value"] == pytest.approx(ols.pvalues[i], rel=1e-7, abs=1e-300)
        assert [row["ci_low"], row["ci_high"]] == pytest.approx(intervals[i], rel=1e-9)
    fit = summary["least_squares_fit"]
    (stats,) = fit["targets"].values()
    assert (fit["rows"], fit["dof_model"], fit["dof_residual"]) == (
        ols.nobs,
        ols.df_model,
        ols.df_resid,
    )
    assert fit["intercept"] is intercept
    assert stats["r2"] == pytest.approx(ols.rsquared, rel=1e-10)  # uncentred without intercept
    assert stats["adj_r2"] == pytest.approx(ols.rsquared_adj, rel=1e-9)
    assert stats["residual_std_error"] == pytest.approx(math.sqrt(ols.scale), rel=1e-9)
    assert stats["f_statistic"] == pytest.approx(ols.fvalue, rel=1e-8)
    assert stats["f_p_value"] == pytest.approx(ols.f_pvalue, rel=1e-6, abs=1e-300)
    assert fit["condition_number"] == pytest.approx(ols.condition_number, rel=1e-6)
    # The standardised columns' condition index (centred with an intercept), from numpy.
    centred = x - x.mean(axis=0) if intercept else x
    standardised = centred / np.sqrt((centred**2).mean(axis=0))
    index = np.linalg.cond(standardised)
    assert fit["condition_index"] == pytest.approx(index, rel=1e-6)
    ill_conditioned = any("ill-conditioned" in note for note in summary["notes"])
    assert ill_conditioned == (index > 30)
    assert ill_conditioned == (table == "longley")
    assert "P>|t|" in result.stdout and "adj. " in result.stdout


def test_split_all_fits_every_row_and_says_what_was_measured_on_what(tmp_path: Path) -> None:
    result = run_cli([*QUIET, "data=table", "data.path=examples/longley.csv", "data.target=TOTEMP",
                      "split=all", "optimizer=lbfgs", "trainer.precision=64-true"],
                     tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    fit = summary["least_squares_fit"]
    assert (fit["rows"], fit["dof_residual"]) == (16, 9)  # every row, NIST's degrees of freedom
    assert (
        "val/* and test/* are measured on the training rows (in-sample: the split gives val and "
        "test no rows); the least-squares statistics describe all 16 of them"
    ) in summary["notes"]
    # In-sample, the trained model's R² is the fit's (NIST certifies 0.995479004577296).
    assert summary["metrics"]["test/r2"] == pytest.approx(0.995479004577296, rel=1e-9)
    assert fit["targets"]["TOTEMP"]["r2"] == pytest.approx(0.995479004577296, rel=1e-12)

    synthetic = run_cli([*QUIET, "split=all"], tmp_path / "synthetic")
    assert synthetic.returncode == 1
    assert synthetic.stderr.strip() == (
        "error: data.train_fraction=1.0 is invalid: must be between 0 and 1 (this data source "
        "keeps held-out splits: split=all, every row for training, is for data=table)"
    )
    assert not (tmp_path / "synthetic").exists()
