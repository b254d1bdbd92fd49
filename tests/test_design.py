"""Categorical columns and formulas: the design (data/design.py) fitted on training rows, saved
as plain values and applied alike by training, eval, predict and the ONNX file; statsmodels'
formula OLS, on the same rows, as the oracle for every coefficient and statistic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from conftest import QUIET, ROOT, run_cli, tree_digest

from linreg.data.table import TableSource, split_codes
from linreg.errors import ConfigError

ALL_ROWS = ("data.train_fraction=1", "data.val_fraction=0", "data.test_fraction=0")
FRACTIONS = (0.7, 0.15, 0.15)
REGION_EFFECT = {"east": 0.0, "north": 4.0, "south": -3.0, "west": 1.5}


def houses(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """price = 10 + 2 area + a region's effect (east the reference) + 1.5 garden + noise."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(1, 5, rows)
    region = rng.choice(sorted(REGION_EFFECT), rows)
    garden = rng.random(rows) < 0.4
    price = (10 + 2 * area + np.array([REGION_EFFECT[r] for r in region]) + 1.5 * garden
             + rng.normal(0, 0.1, rows))  # fmt: skip
    lines = ["area,region,garden,price"] + [
        f"{float(a)!r},{r},{str(g).lower()},{float(p)!r}"
        for a, r, g, p in zip(area, region, garden, price, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def source(path: Path, **options: object) -> TableSource:
    target = options.pop("target", "price")
    return TableSource(str(path), target, None, None, "error", FRACTIONS, 3, **options)


# -------------------------------------------------------------------------------------- numbers


def test_a_table_of_numbers_has_no_design(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("a,b,price\n" + "".join(f"{i},{i * i % 7},{i * 2}\n" for i in range(30)))
    assert source(numbers).table_design is None  # its columns go to the network as they are


def test_a_table_without_a_target_or_a_formula_says_how_to_give_one(tmp_path: Path) -> None:
    table = houses(tmp_path / "houses.csv", rows=20)
    with pytest.raises(ConfigError) as error:
        TableSource(str(table), None, None, None, "error", FRACTIONS, 3)
    assert str(error.value) == (
        "data.target: no value given; name the target column (data.target=price) or write a "
        "formula (data.formula='price ~ area + C(region)')"
    )


# ---------------------------------------------------------------------------------- the design


def test_text_and_boolean_columns_are_treatment_coded_against_their_first_training_level(
    tmp_path: Path,
) -> None:
    table = source(houses(tmp_path / "houses.csv"))
    assert table.input_names == ["area", "region", "garden"]
    assert table.feature_names == [
        "area", "region[T.north]", "region[T.south]", "region[T.west]", "C(garden)[T.True]",
    ]  # fmt: skip
    splits = table.load()
    features, targets = (t.numpy() for t in splits["train"])
    # Every training row holds one 1 among its region's columns, or none for the reference.
    assert set(features[:, 1:4].sum(axis=1)) == {0.0, 1.0}
    assert table.table_design.levels == {"region": ["east", "north", "south", "west"],
                                   "C(garden)": [False, True]}  # fmt: skip
    # Least squares on the matrix recovers the generating effects.
    design = np.column_stack([np.ones(len(features)), features]).astype(np.float64)
    fitted = np.linalg.lstsq(design, targets[:, 0].astype(np.float64), rcond=None)[0]
    assert fitted == pytest.approx([10, 2, 4, -3, 1.5, 1.5], abs=0.05)


def test_a_design_saved_as_plain_values_encodes_new_rows_as_the_fitted_one(tmp_path: Path) -> None:
    formula = "price ~ np.log(area) + center(area):region + poly(area, 2)"
    table = source(houses(tmp_path / "houses.csv"), formula=formula)
    design = table.table_design
    assert design.names == [
        "np.log(area)", "poly(area, 2)[1]", "poly(area, 2)[2]", "center(area):region[east]",
        "center(area):region[north]", "center(area):region[south]", "center(area):region[west]",
    ]  # fmt: skip
    record = json.loads(json.dumps(design.to_record()))  # what the checkpoint and ONNX hold
    saved = type(design).from_record(record, "model")
    rows = pa.table({"area": [1.5, 2.0, 4.5], "region": ["west", "east", "north"]})
    refitted = saved.matrix(rows, np.float64, str)
    assert np.array_equal(refitted, design.matrix(rows, np.float64, str))
    # center() learnt the training rows' mean, not these three rows'.
    training_mean = record["transform_state"]["center(area)"]["center"]
    assert refitted[1, 3] == pytest.approx(2.0 - training_mean)
    assert training_mean != pytest.approx(rows["area"].to_numpy().mean())


def test_an_unseen_level_is_one_line_naming_the_row_and_the_levels(tmp_path: Path) -> None:
    path = houses(tmp_path / "houses.csv", rows=200)
    held_out = int(np.flatnonzero(split_codes(0, 200, FRACTIONS, 3) != 0)[5])
    lines = path.read_text().splitlines()
    cells = lines[held_out + 1].split(",")
    lines[held_out + 1] = ",".join([cells[0], "central", *cells[2:]])
    path.write_text("\n".join(lines) + "\n")
    table = source(path)
    with pytest.raises(ConfigError) as error:
        table.load()
    assert str(error.value) == (
        f"data.path={path}: row {held_out + 1} (line {held_out + 2}) holds region='central', "
        "a level the training rows "
        "do not have (they have east, north, south, west); a model predicts only levels it was "
        "trained on"
    )


def test_an_empty_text_cell_is_a_missing_value_not_a_level(tmp_path: Path) -> None:
    path = houses(tmp_path / "houses.csv", rows=100)
    lines = path.read_text().splitlines()
    cells = lines[4].split(",")
    lines[4] = ",".join([cells[0], "", *cells[2:]])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as error:
        source(path).load()
    assert str(error.value) == (
        f"data.path={path}: 1 rows have missing values, the first is row 4 (line 5) (column "
        "'region[T.north]'); drop them with data.missing=drop"
    )
    dropped = TableSource(str(path), "price", None, None, "drop", FRACTIONS, 3)
    assert dropped.table_design.levels["region"] == ["east", "north", "south", "west"]
    splits = dropped.load()
    assert sum(len(targets) for _, targets in splits.values()) == 99


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_and_in_memory_designs_and_rows_are_the_same(tmp_path: Path, suffix: str) -> None:
    path = houses(tmp_path / "houses.csv", rows=300)
    if suffix == ".parquet":  # a dictionary column (pandas' categorical) with an unused value
        table = pa.csv.read_csv(path)
        levels = ["east", "north", "south", "west", "nowhere"]
        codes = [levels.index(r) for r in table["region"].to_pylist()]
        region = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(levels))
        path = tmp_path / "houses.parquet"
        pq.write_table(table.set_column(1, "region", region), path, row_group_size=64)
    in_memory, streamed = source(path), source(path, streaming=True)
    assert in_memory.feature_names == streamed.feature_names
    assert "region[T.nowhere]" not in in_memory.feature_names  # levels come from the rows
    loaded = in_memory.load()
    streams = streamed.stream(batch_size=1000)
    for split in ("train", "val", "test"):
        rows = np.concatenate(list(streams[split].rows(epoch=None)))
        features, targets = loaded[split]
        expected = np.column_stack([features.numpy(), targets.numpy()])
        assert np.array_equal(rows, expected)


def test_a_streamed_formula_refuses_a_stateful_transform_and_keys_are_checked(
    tmp_path: Path,
) -> None:
    path = houses(tmp_path / "houses.csv", rows=60)
    with pytest.raises(ConfigError) as error:
        source(path, formula="price ~ center(area) + region", streaming=True)
    assert str(error.value) == (
        "data.formula=center(area) + region: center(area) learns from the rows it is given, and "
        "a streamed table (data.streaming=true) is never held whole; train in memory, or "
        "transform the column in the table"
    )
    wrong = {
        "price ~ area - 1": "data.formula=area - 1 removes the intercept; fit through the "
        "origin with model.net.intercept=false, which removes it from the formula too",
        "price ~ area + nowhere": "data.formula=area + nowhere: Unable to evaluate factor "
        "`nowhere`. [NameError: `nowhere` is not present in the dataset or evaluation context.]",
        "area + region": "data.formula=area + region: no target; write it on the left "
        "(price ~ ...) or give data.target",
    }
    for formula, message in wrong.items():
        with pytest.raises(ConfigError) as error:
            TableSource(str(path), None, None, None, "error", FRACTIONS, 3, formula=formula)
        assert str(error.value) == message
    with pytest.raises(ConfigError, match=r"^data.formula=price ~ area: data.features=\['area'\]"):
        TableSource(str(path), None, ["area"], None, "error", FRACTIONS, 3, formula="price ~ area")
    # A column made categorical by name.
    coded = TableSource(str(path), "price", ["garden", "region"], None, "error", FRACTIONS, 3,
                        categorical=["garden"])  # fmt: skip
    assert coded.feature_names[0] == "C(garden)[T.True]"


# --------------------------------------------------------------------------- the whole workflow


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streamed"])
@pytest.mark.first_case_by_default
def test_a_categorical_table_trains_evaluates_and_predicts_from_raw_text(
    tmp_path: Path, streaming: bool
) -> None:
    table = houses(tmp_path / "houses.csv")
    run_dir = tmp_path / "run"
    trained = run_cli([*QUIET, "data=table", f"data.path={table}", "data.target=price",
                       f"data.streaming={str(streaming).lower()}"], run_dir)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["design"]["columns"] == ["area", "region", "garden"]
    (rows,) = summary["coefficients"].values()
    expected = {"(intercept)": 10, "area": 2, "region[T.north]": 4, "region[T.south]": -3,
                "region[T.west]": 1.5, "C(garden)[T.True]": 1.5}  # fmt: skip
    assert {name: row["least_squares"] for name, row in rows.items()} == pytest.approx(
        expected, abs=0.05
    )
    for row in rows.values():  # the trained model reaches least squares, within noise
        assert row["trained"] == pytest.approx(row["least_squares"], abs=2 * row["std_error"])
    described = (
        "the features are the 5 columns of the formula area + region + C(garden) (region: 4 "
        "levels, 'east' the reference; C(garden): 2 levels, False the reference)"
    )
    assert any(note.startswith(described) for note in summary["notes"]), summary["notes"]

    # New rows, raw text, columns in another order: ONNX and the checkpoint agree.
    new = tmp_path / "new.csv"
    new.write_text("garden,price,region,area\ntrue,0,north,2.0\nfalse,0,east,3.0\n")
    expected_rows = [10 + 4 + 4 + 1.5, 10 + 6]
    for model in (run_dir, run_dir / "checkpoints" / "last.ckpt"):
        predicted = run_cli([f"model={model}", f"input={new}"], None, "predict.py")
        assert predicted.returncode == 0, predicted.stderr
        header, *values = predicted.stdout.splitlines()
        assert header == "price"
        assert [float(v) for v in values] == pytest.approx(expected_rows, abs=0.1)
    # The ONNX file says what it takes.
    import onnx

    metadata = {p.key: p.value for p in onnx.load(run_dir / "model.onnx").metadata_props}
    assert json.loads(metadata["linreg.design"])["columns"] == ["area", "region", "garden"]
    assert json.loads(metadata["linreg.feature_names"])[1] == "region[T.north]"

    # eval.py scores another table from its raw columns.
    scored = run_cli([f"ckpt_path={run_dir}", f"data.path={table}"], None, "eval.py")
    assert scored.returncode == 0, scored.stderr
    assert "scored on        400 rows" in scored.stdout

    # A level the model never saw: one line, exit 1, no output file.
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("area,region,garden\n2.0,north,true\n3.0,central,false\n")
    output = tmp_path / "predictions.csv"
    before = tree_digest(tmp_path / "run")
    refused = run_cli([f"model={run_dir}", f"input={unseen}", f"output={output}"], None,
                      "predict.py")  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: input={unseen} row 2 holds region='central', a level the training rows do not "
        "have (they have east, north, south, west); a model predicts only levels it was trained on"
    )
    assert not output.exists() and tree_digest(tmp_path / "run") == before
    positional = run_cli([f"model={run_dir}", "input=-"], None, "predict.py", stdin="2,north,1\n")
    assert positional.returncode == 1
    assert positional.stderr.startswith(
        "error: model=" + str(run_dir) + " encodes the columns area, region, garden"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("formula", "intercept"),
    [
        ("invest ~ value + capital + firm", True),
        # Through the origin, a categorical column whose every level is a column holds the
        # constant implicitly: statsmodels then reports R² and F as with an intercept, R (and
        # linreg) as without one. Here no column combination is constant.
        ("invest ~ value + capital + capital:firm", False),
        ("invest ~ np.log(value) + capital * C(year > 1945)", True),
    ],
    ids=["fixed-effects", "through-origin", "transform-and-interaction"],
)
def test_every_statistic_of_a_formula_is_statsmodels_formula_ols(
    tmp_path: Path, formula: str, intercept: bool
) -> None:
    smf = pytest.importorskip("statsmodels.formula.api", reason="the bench extra: make setup-bench")
    import pandas as pd

    path = ROOT / "examples" / "grunfeld.csv"
    run_dir = tmp_path / "run"
    result = run_cli([*QUIET, "data=table", f"data.path={path}", f"data.formula='{formula}'",
                      *ALL_ROWS, "trainer.precision=64-true", "optimizer=lbfgs",
                      f"model.net.intercept={str(intercept).lower()}"], run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "metrics.json").read_text())
    ols = smf.ols(formula + ("" if intercept else " - 1"), pd.read_csv(path)).fit()

    (rows,) = summary["coefficients"].values()
    names = {"Intercept": "(intercept)"}
    assert sorted(rows) == sorted(names.get(name, name) for name in ols.params.index)
    intervals = ols.conf_int(alpha=0.05)
    for name in ols.params.index:
        row = rows[names.get(name, name)]
        assert row["least_squares"] == pytest.approx(ols.params[name], rel=1e-7), name
        assert row["trained"] == pytest.approx(ols.params[name], rel=1e-4, abs=1e-6), name
        assert row["std_error"] == pytest.approx(ols.bse[name], rel=1e-7), name
        assert row["t"] == pytest.approx(ols.tvalues[name], rel=1e-7), name
        assert row["p_value"] == pytest.approx(ols.pvalues[name], rel=1e-5, abs=1e-300), name
        assert [row["ci_low"], row["ci_high"]] == pytest.approx(list(intervals.loc[name]), rel=1e-7)
    fit = summary["least_squares_fit"]
    (stats,) = fit["targets"].values()
    assert (fit["rows"], fit["dof_model"], fit["dof_residual"]) == (
        ols.nobs, ols.df_model, ols.df_resid,
    )  # fmt: skip
    assert stats["r2"] == pytest.approx(ols.rsquared, rel=1e-9)
    assert stats["adj_r2"] == pytest.approx(ols.rsquared_adj, rel=1e-9)
    assert stats["f_statistic"] == pytest.approx(ols.fvalue, rel=1e-7)
    assert stats["f_p_value"] == pytest.approx(ols.f_pvalue, rel=1e-5, abs=1e-300)
