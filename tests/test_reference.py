"""The least-squares reference is exact: NIST's certified datasets as the oracle, read from the
table's own float64 values whatever precision training uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from nist_strd import (
    LONGLEY_ESTIMATES,
    LONGLEY_STANDARD_ERRORS,
    WITH_INTERCEPT,
    Certified,
    correct_digits,
)

from linreg.data.table import TableSource
from linreg.diagnostics.reference import gap_to_reference, least_squares

ALL_ROWS = (1.0, 0.0, 0.0)


def reference_of(path: Path, target: str) -> tuple[list[float], list[float]]:
    """The reference's coefficients and standard errors, intercept first, from a table file."""
    table = TableSource(str(path), target, None, None, "error", ALL_ROWS, seed=0)
    table.load()
    fit = least_squares(table.full_precision("train"))
    return (
        [float(fit.bias[0]), *fit.weight[0].tolist()],
        [float(fit.bias_se[0]), *fit.weight_se[0].tolist()],
    )


@pytest.mark.parametrize("certified", WITH_INTERCEPT, ids=lambda c: c.name)
def test_the_reference_reproduces_nists_certified_values(
    certified: Certified, tmp_path: Path
) -> None:
    estimates, errors = reference_of(certified.write_csv(tmp_path / "table.csv"), "y")
    coefficient_digits = [correct_digits(e, c) for e, c in zip(estimates, certified.estimates,
                                                               strict=True)]  # fmt: skip
    error_digits = [correct_digits(e, c) for e, c in zip(errors, certified.standard_errors,
                                                         strict=True)]  # fmt: skip
    # Filip's float64 data determine 7.6 digits at most (its x**10 rounds); numpy's lstsq,
    # statsmodels and scikit-learn get none. Every other set: all the digits that matter.
    wanted = 7.5 if certified.name == "Filip" else 12.0
    assert min(coefficient_digits) >= wanted, coefficient_digits
    assert min(error_digits) >= wanted, error_digits


def test_longley_is_certified_from_the_files_values_not_the_float32_training_reads() -> None:
    estimates, errors = reference_of(ROOT / "examples" / "longley.csv", "TOTEMP")
    assert min(map(correct_digits, estimates, LONGLEY_ESTIMATES)) >= 12
    assert min(map(correct_digits, errors, LONGLEY_STANDARD_ERRORS)) >= 12
    # What training reads (float32) holds about 5 digits of the answer: not the reference.
    table = TableSource(str(ROOT / "examples" / "longley.csv"), "TOTEMP", None, None, "error",
                        ALL_ROWS, seed=0)  # fmt: skip
    rounded = least_squares([table.load()["train"]])
    assert correct_digits(float(rounded.weight[0, -1]), LONGLEY_ESTIMATES[-1]) < 7


def test_integers_beyond_float32s_range_are_read_and_the_reference_keeps_them_exact(
    tmp_path: Path,
) -> None:
    # Populations and money: 22,500,000,000 is beyond float32's 2**24 of exact integers.
    x = np.arange(1, 21, dtype=np.int64) * 1_500_000_000 + 7
    y = 3 * x + 11
    path = tmp_path / "big.csv"
    path.write_text("x,y\n" + "".join(f"{a},{b}\n" for a, b in zip(x, y, strict=True)))
    table = TableSource(str(path), "y", None, None, "error", ALL_ROWS, seed=0)
    features, _ = table.load()["train"]
    assert features.dtype == torch.float32 and float(features[14, 0]) == pytest.approx(2.25e10)
    fit = least_squares(table.full_precision("train"))
    assert float(fit.weight[0, 0]) == 3.0 and float(fit.bias[0]) == 11.0


def test_a_column_named_like_a_number_is_chosen_by_name(tmp_path: Path) -> None:
    path = tmp_path / "years.csv"
    path.write_text("year,2010,2011\n1,2,3\n2,4,7\n3,5,8\n4,1,2\n")
    table = TableSource(str(path), 2010, None, None, "error", ALL_ROWS, seed=0)
    assert table.target_names == ["2010"] and table.feature_names == ["year", "2011"]
    with pytest.raises(Exception, match=r"no column named 2012 .* quoted as "
                                        r"data.target=\"'2012'\""):  # fmt: skip
        TableSource(str(path), 2012, None, None, "error", ALL_ROWS, seed=0)


@pytest.mark.parametrize(
    ("test_mse", "reference_mse", "variance", "gap"),
    [
        (0.2525, 0.25, 4.0, 0.01),  # 1 % more error than least squares
        (1e-9, 1e-29, 4.0, 1e-9 / 4e-6),  # an exact fit: a millionth of the variance instead
        (0.0, 0.0, 0.0, 0.0),  # constant targets fitted exactly
    ],
)
def test_the_gap_to_least_squares_means_something_when_least_squares_is_exact(
    test_mse: float, reference_mse: float, variance: float, gap: float
) -> None:
    assert gap_to_reference(test_mse, reference_mse, variance) == pytest.approx(gap)
