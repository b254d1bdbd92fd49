"""Your own data: tables in every supported format become splits with names kept, the exact
least-squares answer is sound on hard real data, and every bad table is one line naming it."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import QUIET, run_cli

from linreg.data.table import TableSource
from linreg.diagnostics.reference import least_squares
from linreg.errors import ConfigError

WEIGHT = np.array([2.0, -1.0, 0.5])
FRACTIONS = (0.7, 0.15, 0.15)


def rows(n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    """Three features with large offsets, a target from known weights with noise 0.1."""
    rng = np.random.default_rng(seed)
    x = rng.normal([1000.0, -50.0, 3.0], [5.0, 2.0, 1.0], size=(n, 3))
    y = x @ WEIGHT + 7.0 + 0.1 * rng.standard_normal(n)
    return {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "price": y}


def write_csv(path: Path, columns: dict[str, np.ndarray], sep: str = ",") -> Path:
    lines = [sep.join(columns)] + [
        sep.join(repr(float(v)) for v in row) for row in zip(*columns.values(), strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def source(path: Path, target="price", features=None, split_column=None, missing="error",
           fractions=FRACTIONS) -> TableSource:  # fmt: skip
    return TableSource(str(path), target, features, split_column, missing, fractions, seed=3)


def test_a_csv_written_from_known_weights_is_recovered_exactly_by_least_squares(
    tmp_path: Path,
) -> None:
    table = source(write_csv(tmp_path / "houses.csv", rows()))
    assert (table.feature_names, table.target_names) == (["a", "b", "c"], ["price"])
    assert table.ground_truth is None
    splits = table.load()
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == pytest.approx(
        [2800, 600, 600], abs=90
    )
    fit = least_squares([splits["train"]])
    np.testing.assert_allclose(fit.weight.numpy()[0], WEIGHT, atol=0.01)
    # The standard errors are what the noise implies: 0.1 / (sqrt(n) * feature std).
    np.testing.assert_allclose(
        fit.weight_se.numpy()[0], 0.1 / np.sqrt(len(splits["train"][0])) / [5, 2, 1], rtol=0.1
    )


@pytest.mark.parametrize("name", ["houses.csv", "houses.tsv", "houses.csv.gz", "houses.parquet"])
def test_every_format_gives_the_same_rows_in_the_same_splits(tmp_path: Path, name: str) -> None:
    columns = rows(300)
    reference = source(write_csv(tmp_path / "reference.csv", columns)).load()
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.table(columns), path)
    else:
        write_csv(path, columns, sep="\t" if ".tsv" in name else ",")
    loaded = source(path).load()
    for split in ("train", "val", "test"):
        for mine, theirs in zip(loaded[split], reference[split], strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_a_parquet_folder_is_one_table_and_an_npz_array_is_chosen_by_index(tmp_path: Path) -> None:
    columns = rows(300)
    whole = source(write_csv(tmp_path / "whole.csv", columns)).load()
    folder = tmp_path / "parts"
    folder.mkdir()
    table = pa.table(columns)
    pq.write_table(table.slice(0, 100), folder / "part-0.parquet")
    pq.write_table(table.slice(100), folder / "part-1.parquet")
    np.testing.assert_array_equal(source(folder).load()["train"][0], whole["train"][0])

    np.savez(tmp_path / "rows.npz", rows=np.column_stack(list(columns.values())))
    npz = source(tmp_path / "rows.npz", target=-1)
    assert npz.feature_names == ["column_0", "column_1", "column_2"]
    assert npz.target_names == ["column_3"]
    np.testing.assert_allclose(npz.load()["test"][1], whole["test"][1])


def test_a_split_depends_on_the_seed_and_the_row_position_only(tmp_path: Path) -> None:
    columns = rows(1000)
    first = source(write_csv(tmp_path / "a.csv", columns)).load()
    shorter = {name: values[:500] for name, values in columns.items()}
    prefix = source(write_csv(tmp_path / "b.csv", shorter)).load()
    # The first 500 rows land where they landed in the longer table.
    train = first["train"][0].numpy()
    assert np.isin(prefix["train"][0].numpy()[:, 0], train[:, 0]).all()
    other_seed = TableSource(str(tmp_path / "a.csv"), "price", None, None, "error", FRACTIONS, 4)
    assert not np.array_equal(other_seed.load()["train"][0].numpy(), train)


def test_a_split_column_decides_the_split_and_is_not_a_feature(tmp_path: Path) -> None:
    columns = rows(9)
    labels = np.array(["train"] * 5 + ["val"] * 2 + ["test"] * 2)
    pq.write_table(pa.table({**columns, "part": labels}), tmp_path / "t.parquet")
    table = source(tmp_path / "t.parquet", split_column="part")
    assert table.feature_names == ["a", "b", "c"]
    splits = table.load()
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [5, 2, 2]
    np.testing.assert_allclose(splits["val"][1].numpy()[:, 0], columns["price"][5:7], rtol=1e-6)


def test_missing_values_are_an_error_naming_the_first_or_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,b,price\n1,2,3\n4,,6\n7,8,9\n10,NaN,1\n2,5,7\n3,3,3\n")
    with pytest.raises(ConfigError) as info:
        source(path).load()
    assert str(info.value) == (
        f"data.path={path}: 2 rows have missing values, the first is row 2 (line 3) "
        "(column 'b'); drop them with data.missing=drop"
    )
    kept = source(path, missing="drop", fractions=(1.0, 0.0, 0.0))
    splits = kept.load()
    assert len(splits["train"][0]) == 4
    assert kept.measured_on_training_rows == ("val", "test")
    assert splits["test"][0] is splits["train"][0]


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,b,price\n1,2,3\n", {"target": "cost"},
         "data.target=cost: no such column in {path}; its columns are a, b, price"),
        ("a,day,price\n1,2020-01-01,3\n2,2020-01-02,4\n", {},
         "data.features: column 'day' of {path} holds date32[day] values, not numbers; leave it "
         "out, or encode it (data.categorical=[day])"),
        ("a,b,price\n1,5,3\n2,5,4\n3,5,6\n", {},
         "data.features: 'b' of {path} holds one value in every row"),
        ("a,a,price\n1,5,3\n", {}, "data.path={path} has duplicate column names: a"),
        ("a,b,price\n1,5,3\n2,inf,4\n", {},
         "data.path={path}: row 2 (line 3), column 'b' is inf, not a finite float32 number"),
        ("a,b,price\n1,,3\n2,,4\n", {"missing": "drop"},
         "data.missing=drop: every row of {path} has a missing value"),
        ("a,b,price\n1,2,3\n", {"features": ["a", "price"]},
         "data.features: price is also the target or split"),
        ("a,b,price\n1,2,3\n", {"split_column": "price"},
         "data.split_column=price is also the target; a split column holds train/val/test"),
    ],
    ids=["unknown-target", "date-column", "constant", "duplicates", "infinite", "all-dropped",
         "target-as-feature", "target-as-split"],
)  # fmt: skip
def test_a_bad_table_is_one_clear_error_naming_it(
    tmp_path: Path, content: str, options: dict, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        source(path, **options).load()
    assert str(info.value).startswith(message.format(path=path))


def test_parquet_files_of_one_folder_must_share_a_schema(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1.0], "price": [2.0]}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"a": [1.0], "cost": [2.0]}), tmp_path / "1.parquet")
    with pytest.raises(ConfigError, match=r"1\.parquet has other columns than 0\.parquet"):
        source(tmp_path)


def test_a_parquet_folder_converts_numeric_types_per_file_and_names_any_other_difference(
    tmp_path: Path,
) -> None:
    pq.write_table(pa.table({"a": pa.array([1, 2, 3], pa.int32()), "price": [2.0, 4.0, 6.5]}),
                   tmp_path / "0.parquet")  # fmt: skip
    pq.write_table(pa.table({"a": [4.5, 5.5, 6.5], "price": pa.array([8, 10, 13], pa.int64())}),
                   tmp_path / "1.parquet")  # fmt: skip
    features, targets = source(tmp_path, fractions=(1.0, 0.0, 0.0)).load()["train"]
    assert features[:, 0].tolist() == [1, 2, 3, 4.5, 5.5, 6.5]
    assert targets[:, 0].tolist() == [2, 4, 6.5, 8, 10, 13]
    pq.write_table(pa.table({"a": ["x"], "price": [1.0]}), tmp_path / "2.parquet")
    with pytest.raises(ConfigError) as info:
        source(tmp_path)
    assert str(info.value) == (
        f"data.path={tmp_path}: column 'a' is string in 2.parquet but int32 in 0.parquet; every "
        "file of a folder needs the same type in each column (numbers of any type convert)"
    )


def test_an_npz_of_several_arrays_is_refused_naming_them(tmp_path: Path) -> None:
    np.savez(tmp_path / "two.npz", x=np.ones((3, 2)), y=np.ones(3))
    with pytest.raises(ConfigError, match=r"holds 2 arrays \(x, y\)"):
        source(tmp_path / "two.npz", target=-1)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `train.py data=table` run on a CSV of known weights; its console output is kept in
    the folder's `stdout.txt`."""
    folder = tmp_path_factory.mktemp("table")
    path = write_csv(folder / "houses.csv", rows())
    run_dir = folder / "run"
    result = run_cli([*QUIET, "data=table", f"data.path={path}", "data.target=price"], run_dir)
    assert result.returncode == 0, result.stderr
    (run_dir / "stdout.txt").write_text(result.stdout)
    return run_dir


def test_training_on_a_table_records_named_coefficients_next_to_least_squares(
    table_run: Path,
) -> None:
    summary = json.loads((table_run / "metrics.json").read_text())
    # 2,798 training rows: epochs of 32 batches drawn in 2.93 passes reach least squares.
    assert abs(summary["test_mse_gap_to_reference"]) < 0.01
    coefficients = summary["coefficients"]["price"]
    assert list(coefficients) == ["(intercept)", "a", "b", "c"]  # largest effect first
    for name, true in zip("abc", WEIGHT, strict=True):
        assert coefficients[name]["least_squares"] == pytest.approx(true, abs=0.01)
        assert coefficients[name]["trained"] == pytest.approx(true, abs=0.01)
        assert coefficients[name]["std_error"] > 0
    assert not any(name.startswith("params/") for name in summary["metrics"])
    assert summary["notes"] == [
        "each epoch trained on 32 batches of up to 256 rows, drawn in 2.93 passes over the "
        "2,798-row training split (data.min_batches_per_epoch=32; null for one pass of 11)",
        "params/* not computed: the data source knows no ground truth",
    ]
    console = (table_run / "stdout.txt").read_text()
    assert "coefficients of price" in console
    assert "[INFO]" not in console  # the notes say it once, in the summary


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.path=nowhere.csv", "data.target=y"],
         "error: data.path='nowhere.csv' is invalid: no such file or folder"),
        (["data.path=README.md", "data.target=y"],
         "error: data.path='README.md' is invalid: unsupported file type"),
        (["data.path=examples/longley.csv", "data.target=PRICE"],
         "error: data.target=PRICE: no such column in examples/longley.csv; its columns are "
         "TOTEMP, GNPDEFL"),
    ],
    ids=["missing-file", "unsupported", "unknown-column"],
)  # fmt: skip
def test_a_bad_table_stops_the_cli_with_one_line_and_no_run_folder(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(["data=table", *args], tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def run_predict(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), None, script="predict.py")


@pytest.mark.parametrize("model", ["model.onnx", "checkpoints/last.ckpt"])
def test_predict_picks_the_models_columns_by_name_in_any_order(
    table_run: Path, tmp_path: Path, model: str
) -> None:
    columns = rows(50, seed=9)
    # The training table's own layout, shuffled, with an extra column and the target present.
    shuffled = {"note": np.arange(50.0), "c": columns["c"], "price": columns["price"],
                "a": columns["a"], "b": columns["b"]}  # fmt: skip
    write_csv(tmp_path / "new.csv", shuffled)
    pq.write_table(pa.table(shuffled), tmp_path / "new.parquet")
    expected = None
    for name in ("new.csv", "new.parquet"):
        out = tmp_path / f"{name}.out.csv"
        result = run_predict(f"model={table_run / model}", f"input={tmp_path / name}",
                             f"output={out}")  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = out.read_text().splitlines()
        assert lines[0] == "price"
        predicted = np.array([float(line) for line in lines[1:]])
        # Within the model's own error; a column taken by position would be hundreds off.
        np.testing.assert_allclose(predicted, columns["price"], atol=1.0)
        expected = predicted if expected is None else expected
        np.testing.assert_allclose(predicted, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("c,bb,a", "lacks the model's columns 'b' (closest: 'bb'); its header has c, bb, a "
                   "(header=skip takes the columns by position)"),
        ("A,b,c", "lacks the model's columns 'a' (closest: 'A'); its header has A, b, c "
                  "(header=skip takes the columns by position)"),
        ("a,b,a,c", "has duplicate column names: a; rename them"),
    ],
    ids=["misnamed", "other-case", "duplicates"],
)  # fmt: skip
def test_predict_never_reads_a_header_that_misnames_the_models_columns_by_position(
    table_run: Path, tmp_path: Path, header: str, message: str
) -> None:
    # As wide as the model's features: such a header used to be skipped, and the columns taken
    # by position (wrong predictions, exit 0).
    path = tmp_path / "misnamed.csv"
    width = len(header.split(","))
    path.write_text(header + "\n" + ",".join(["1.0"] * width) + "\n")
    piped = [("input=-", path.read_text())] if width == 3 else []  # wider: a width error first
    for source, stdin in [(f"input={path}", None), *piped]:
        result = run_cli([f"model={table_run}", source], None, script="predict.py", stdin=stdin)
        assert result.returncode == 1
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_predict_matches_names_with_spaces_and_a_piped_header_by_name(
    table_run: Path, tmp_path: Path
) -> None:
    columns = rows(20, seed=11)
    plain = write_csv(tmp_path / "plain.csv", {k: columns[k] for k in ("a", "b", "c")})
    expected = run_predict(f"model={table_run}", f"input={plain}")
    assert expected.returncode == 0, expected.stderr
    lines = plain.read_text().splitlines()
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("\n".join([" a , b ,c ", *lines[1:]]) + "\n")
    reordered = "\n".join(["c,a,b"] + [",".join(np.array(line.split(","))[[2, 0, 1]])
                                          for line in lines[1:]]) + "\n"  # fmt: skip
    for source, stdin in ((f"input={spaced}", None), ("input=-", reordered)):
        result = run_cli([f"model={table_run}", source], None, script="predict.py", stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-20:] == expected.stdout.splitlines()[-20:]
    skipped = run_predict(f"model={table_run}", f"input={tmp_path / 'plain.csv'}", "header=skip")
    assert skipped.stdout.splitlines() == expected.stdout.splitlines()[1:]


def test_predict_names_the_columns_a_table_lacks(table_run: Path, tmp_path: Path) -> None:
    write_csv(tmp_path / "partial.csv", {"a": np.ones(3), "c": np.ones(3)})
    result = run_predict(f"model={table_run}", f"input={tmp_path / 'partial.csv'}")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: input={tmp_path / 'partial.csv'} lacks the model's columns 'b'; its header has "
        "a, c (header=skip takes the columns by position)"
    )


def test_the_onnx_file_records_the_column_names(table_run: Path) -> None:
    session = onnxruntime.InferenceSession(str(table_run / "model.onnx"))
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["linreg.feature_names"]) == ["a", "b", "c"]
    assert json.loads(metadata["linreg.target_names"]) == ["price"]


def test_eval_scores_a_table_model_on_every_row_of_another_table(
    table_run: Path, tmp_path: Path
) -> None:
    columns = rows(300, seed=11)
    other = write_csv(tmp_path / "other.csv", {"c": columns["c"], "extra": np.zeros(300),
                                               "price": columns["price"], "b": columns["b"],
                                               "a": columns["a"]})  # fmt: skip
    result = run_cli([f"ckpt_path={table_run}", f"data.path={other}"], tmp_path / "eval",
                     script="eval.py")  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (evaluated["data"], evaluated["rows"]) == (str(other), 300)
    # What predict.py gives on the same rows, scored by hand.
    predicted = tmp_path / "predicted.csv"
    assert (
        run_predict(f"model={table_run}", f"input={other}", f"output={predicted}").returncode == 0
    )
    errors = np.loadtxt(predicted, skiprows=1) - columns["price"]
    assert evaluated["metrics"]["test/mse"] == pytest.approx(np.mean(errors**2), rel=1e-3)


@pytest.mark.slow
def test_eval_on_another_table_needs_a_model_trained_on_a_table(
    trained_run: Path, tmp_path: Path
) -> None:
    other = write_csv(tmp_path / "other.csv", rows(20))
    result = run_cli([f"ckpt_path={trained_run}", f"data.path={other}"], tmp_path / "eval",
                     script="eval.py")  # fmt: skip
    assert result.returncode == 1
    assert "not on a table; score a table model" in result.stderr


# ------------------------------------------------------------------------------------- streamed


def parquet_in_pieces(folder: Path, columns: dict[str, np.ndarray], group_rows: int = 64) -> Path:
    """A folder of two Parquet files of small row groups: many pieces to stream."""
    folder.mkdir()
    table = pa.table(columns)
    half = len(table) // 2
    pq.write_table(table.slice(0, half), folder / "part-0.parquet", row_group_size=group_rows)
    pq.write_table(table.slice(half), folder / "part-1.parquet", row_group_size=group_rows)
    return folder


def streamed_rows(table: TableSource, split: str, **loader: object) -> np.ndarray:
    stream = table.stream(batch_size=16)[split]
    batches = list(stream.loader(loader.pop("seed", None), torch.device("cpu"), **loader))
    return np.concatenate([np.column_stack([f.numpy(), t.numpy()]) for f, t in batches])


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("layout", ["csv", "parquet folder", "npy"])
def test_a_streamed_table_serves_the_same_rows_in_each_split_as_in_memory(
    tmp_path: Path, layout: str
) -> None:
    columns = rows(1000)
    if layout == "csv":
        path = write_csv(tmp_path / "t.csv", columns)
    elif layout == "npy":
        path = tmp_path / "t.npy"
        np.save(path, np.column_stack(list(columns.values())))
    else:
        path = parquet_in_pieces(tmp_path / "parts", columns)
    target = -1 if layout == "npy" else "price"
    table = source(path, target=target)
    in_memory = table.load()
    for split in ("train", "val", "test"):
        expected = np.column_stack([t.numpy() for t in in_memory[split]])
        assert table.stream(16)[split].n_rows == len(expected)
        np.testing.assert_array_equal(
            sorted_rows(streamed_rows(table, split)), sorted_rows(expected)
        )
    # The reference is the same answer however the rows arrive.
    streamed = least_squares(
        (torch.from_numpy(r[:, :3]), torch.from_numpy(r[:, 3:]))
        for r in [streamed_rows(table, "train")]
    )
    whole = least_squares([in_memory["train"]])
    torch.testing.assert_close(streamed.weight, whole.weight, rtol=1e-9, atol=0)


def test_a_csv_read_in_small_blocks_gives_pieces_of_piece_rows_and_the_same_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "t.csv", rows(1000))
    whole = source(path).load()
    monkeypatch.setattr("linreg.data.table.CSV_BLOCK_BYTES", 512)  # about 8 lines a block
    monkeypatch.setattr("linreg.data.table.PIECE_ROWS", 100)
    table = source(path)
    pieces = list(table.pieces(epoch=None))
    assert [index for index, *_ in pieces] == list(range(len(pieces)))
    lengths = [len(values) for _, _, values, _ in pieces]
    assert [start for _, start, *_ in pieces] == [sum(lengths[:i]) for i in range(len(pieces))]
    assert all(100 <= length < 120 for length in lengths[:-1])
    assert sum(lengths) == 1000
    for split, (features, targets) in table.load().items():
        torch.testing.assert_close(features, whole[split][0], rtol=0, atol=0)
        torch.testing.assert_close(targets, whole[split][1], rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["parquet folder", "csv"])
def test_streamed_epochs_shuffle_by_seed_and_epoch_and_processes_share_every_row(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if layout == "csv":
        table = source(write_csv(tmp_path / "t.csv", rows(1000)))
    else:
        table = source(parquet_in_pieces(tmp_path / "parts", rows(1000)))
    stream = table.stream(batch_size=16)["train"]
    read: list[int] = []
    pieces = table.pieces

    def counted(epoch: int | None, only: set[int] | None = None):
        for piece in pieces(epoch, only):
            read.append(piece[0])
            yield piece

    monkeypatch.setattr(table, "pieces", counted)

    def epoch_rows(epoch: int, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
        loader = stream.loader(3, torch.device("cpu"), rank, world_size)
        loader.sampler.set_epoch(epoch)
        return [np.column_stack([f.numpy(), t.numpy()]) for f, t in loader]

    first, again, second = epoch_rows(0), epoch_rows(0), epoch_rows(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    assert len(first) == len(stream.loader(3, torch.device("cpu")))
    # Two processes: equal numbers of batches, disjoint rows, every training row once; from
    # Parquet each reads only its own row groups (about half of them), a CSV is read by both.
    shares, reads = [], []
    for rank in (0, 1):
        read.clear()
        shares.append(epoch_rows(1, rank, 2))
        reads.append(set(read))
    assert len(shares[0]) == len(shares[1]) == len(stream.loader(3, torch.device("cpu"), 0, 2))
    together = np.concatenate([np.concatenate(share) for share in shares])
    np.testing.assert_array_equal(sorted_rows(together), sorted_rows(np.concatenate(second)))
    if layout == "csv":
        assert reads[0] == reads[1]
    else:
        assert not reads[0] & reads[1]
        assert abs(len(reads[0]) - len(reads[1])) <= 2


def test_a_streamed_table_still_names_its_first_missing_value_and_counts_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,b,price\n1,2,3\n4,,6\n7,8,9\n10,NaN,1\n2,5,7\n3,3,3\n")
    with pytest.raises(ConfigError, match=r"2 rows have missing values, the first is row 2"):
        source(path).stream(16)


@pytest.mark.slow
def test_a_streamed_parquet_run_matches_the_in_memory_reference(tmp_path: Path) -> None:
    folder = parquet_in_pieces(tmp_path / "parts", rows(3000), group_rows=256)
    summaries = []
    for streaming in ("false", "true"):
        run_dir = tmp_path / f"run-{streaming}"
        result = run_cli([*QUIET, "data=table", f"data.path={folder}", "data.target=price",
                          f"data.streaming={streaming}", "trainer.max_epochs=3", "logger=none"],
                         run_dir)  # fmt: skip
        assert result.returncode == 0, result.stderr
        summaries.append(json.loads((run_dir / "metrics.json").read_text()))
    memory, streamed = (s["metrics"]["reference/test_mse"] for s in summaries)
    assert streamed == pytest.approx(memory, rel=1e-9)
    assert streamed > 0


@pytest.mark.slow
def test_fewer_training_rows_than_coefficients_still_trains_and_says_the_reference_is_not_unique(
    tmp_path: Path,
) -> None:
    path = tmp_path / "short.csv"
    path.write_text("a,b,c,d,price\n1,2,3,5,1\n2,1,0,4,2\n3,5,1,1,4\n")
    result = run_cli([*QUIET, "data=table", f"data.path={path}", "data.target=price",
                      "data.train_fraction=1", "data.val_fraction=0", "data.test_fraction=0",
                      "logger=none"], tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert "the least-squares reference is not unique (3 training rows, rank 2 of 4 features)" in (
        " ".join(notes)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("a,b,price\n1,2,x\n2,3,y\n", [], "data.target: column 'price' of {path} holds string"),
        ("a,b,price\n1,5,3\n2,5,4\n3,5,6\n", [], "data.features: 'b' of {path} holds one value"),
        ("a,a,price\n1,5,3\n", [], "data.path={path} has duplicate column names: a"),
        ("a,b,price\n1,5,3\n2,inf,4\n", [], "data.path={path}: row 2 (line 3), column 'b' is inf"),
        ("a,b,price\n1,,3\n2,5,4\n", [], "data.path={path}: 1 rows have missing values"),
        ("a,b,price\n1,,3\n2,,4\n", ["data.missing=drop"], "data.missing=drop: every row of"),
        ("a,b,price\n1,5,3\n", ["data.features=[a,nope]"], "data.features=nope: no such column"),
        ("a,b,price\n1,5,3\n", ["data.missing=maybe"], "data.missing='maybe' is invalid"),
        ("a,b,price\n1,5,3\n", ["data.split_column=price"],
         "data.split_column=price is also the target"),
    ],
    ids=["text-target", "constant", "duplicates", "infinite", "missing", "all-dropped",
         "no-feature", "missing-choice", "target-as-split"],
)  # fmt: skip
def test_every_bad_table_stops_the_real_cli_with_one_line(
    tmp_path: Path, content: str, options: list[str], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = run_cli(["data=table", f"data.path={path}", "data.target=price", *options],
                     tmp_path / "run")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: " + message.format(path=path)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_parquet_folder_of_mixed_schemas_stops_the_real_cli_with_one_line(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1.0, 2.0], "price": [2.0, 3.0]}), folder / "0.parquet")
    pq.write_table(pa.table({"a": [1.0], "cost": [2.0]}), folder / "1.parquet")
    result = run_cli(["data=table", f"data.path={folder}", "data.target=price"], tmp_path / "run")
    assert result.returncode == 1
    assert "1.parquet has other columns than 0.parquet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_streamed_table_trains_under_ddp_with_each_process_on_its_own_row_groups(
    tmp_path: Path,
) -> None:
    folder = parquet_in_pieces(tmp_path / "parts", rows(4000), group_rows=200)
    # Two processes of 256 rows: 5 steps an epoch, so 30 epochs to converge.
    result = run_cli([*QUIET, "trainer=ddp", "data=table", f"data.path={folder}",
                      "data.target=price", "data.streaming=true", "trainer.max_epochs=30",
                      "logger=none"], tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["test_mse_gap_to_reference"] < 0.05
    for name, true in zip("abc", WEIGHT, strict=True):
        assert summary["coefficients"]["price"][name]["trained"] == pytest.approx(true, abs=0.05)


def plain_values_only(value: object, where: str = "checkpoint") -> None:
    """What `torch.load(weights_only=True)` loads without complaint: no config containers."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str | int), f"{where}: key {key!r}"
            plain_values_only(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            plain_values_only(item, f"{where}[{index}]")
    else:
        assert value is None or isinstance(value, str | int | float | bool | torch.Tensor), (
            f"{where} is a {type(value).__name__}"
        )


def test_every_list_valued_key_goes_through_train_eval_predict_and_resume(tmp_path: Path) -> None:
    # Lists from the command line: two targets, chosen features, an MLP's widths, Adam's betas.
    # Each used to end the run after its last epoch: the checkpoints held omegaconf lists.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 3))
    columns = {"a": x[:, 0], "b": x[:, 1], "unused": x[:, 2],
               "y1": x[:, :2] @ [2.0, -1.0] + 0.01 * rng.standard_normal(400),
               "y2": x[:, :2] @ [0.5, 3.0] + 1.0}  # fmt: skip
    path = write_csv(tmp_path / "two.csv", columns)
    run_dir = tmp_path / "run"
    lists = ["data.target=[y1,y2]", "data.features=[a,b]", "model=mlp",
             "model.net.hidden_sizes=[8,4]", "optimizer=adam",
             "optimizer.betas=[0.9,0.99]"]  # fmt: skip
    trained = run_cli([*QUIET, "data=table", f"data.path={path}", *lists, "scheduler=none",
                       "trainer.max_epochs=2"], run_dir)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "completed" and summary["paths"]["model"] == "model.onnx"
    for checkpoint in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        plain_values_only(torch.load(checkpoint, weights_only=True), checkpoint.name)

    evaluated = run_cli([f"ckpt_path={run_dir}"], tmp_path / "eval", script="eval.py")
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert scored["test/mse"] == summary["metrics"]["test/mse"]

    for model in ("model.onnx", "checkpoints/last.ckpt"):
        out = tmp_path / f"{Path(model).stem}.csv"
        predicted = run_predict(f"model={run_dir / model}", f"input={path}", f"output={out}")
        assert predicted.returncode == 0, predicted.stderr
        lines = out.read_text().splitlines()
        assert lines[0] == "y1,y2" and len(lines) == 401

    resumed = run_cli([f"ckpt_path={run_dir}", "trainer.max_epochs=3"], None)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3


def test_a_16_row_table_trains_with_the_defaults_and_a_one_row_split_reports_r2_as_null(
    tmp_path: Path,
) -> None:
    # Longley with every default: 13 training rows, 1 validation row (R² undefined), 2 test rows.
    result = run_cli([*QUIET, "data=table", "data.path=examples/longley.csv",
                      "data.target=TOTEMP", "trainer.max_epochs=2"], tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        summary["metrics"]["val/r2"] is None
        and summary["metrics"]["val/explained_variance"] is None
    )
    assert summary["metrics"]["test/r2"] is not None
    assert (
        "val/explained_variance and val/r2 are undefined on the 1 row of the val split (null)"
        in (summary["notes"])
    )


def test_a_table_too_small_for_its_held_out_splits_is_refused_naming_the_way_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ten.csv"
    write_csv(path, rows(10, seed=2))
    result = run_cli(["data=table", f"data.path={path}", "data.target=price",
                      "data.train_fraction=0.4", "data.val_fraction=0.3",
                      "data.test_fraction=0.3"], tmp_path / "run")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: data.train_fraction=0.4: the training split of ")
    assert (
        "fewer than the 5 that 3 features need (features + 2); raise data.train_fraction, or "
        "fit on every row with data.train_fraction=1 data.val_fraction=0 data.test_fraction=0"
        in (result.stderr)
    )
    assert len(result.stderr.strip().splitlines()) == 1
    # Nothing about a run that does not happen: no `config <run folder>/...` line, no folder.
    assert result.stdout == "" and not (tmp_path / "run").exists()


def test_an_exact_fit_trains_tests_and_reports_a_finite_gap(tmp_path: Path) -> None:
    path = tmp_path / "exact.csv"
    path.write_text("x,y\n" + "".join(f"{x},{3 + 2 * x}\n" for x in range(12)))
    result = run_cli([*QUIET, "data=table", f"data.path={path}", "data.target=y",
                      "data.train_fraction=1", "data.val_fraction=0", "data.test_fraction=0",
                      "optimizer=lbfgs"], tmp_path / "run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["metrics"]["reference/test_mse"] == 0.0
    # Measured against a millionth of the targets' variance (47.67): finite and small.
    gap = summary["test_mse_gap_to_reference"]
    assert gap == pytest.approx(summary["metrics"]["test/mse"] / (1e-6 * 572 / 12), rel=1e-6)
    assert 0 <= gap < 1
    assert any(note.startswith("least squares fits the test rows (nearly) exactly")
               for note in summary["notes"])  # fmt: skip
    assert summary["coefficients"]["y"]["x"]["least_squares"] == 2.0
    assert (tmp_path / "run" / "model.onnx").is_file()


def test_a_table_too_wide_for_memory_is_refused_from_its_header_before_any_row_is_read(
    tmp_path: Path,
) -> None:
    # 100,000 columns: the least-squares and decorrelation matrices alone would take 480 GB
    # (the run used to grow for minutes; finding duplicate names alone took 6 minutes).
    from linreg.config.validation import physical_memory_bytes

    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + ",y\n" + "1," * 100_000 + "2\n")
    with pytest.raises(ConfigError) as info:
        source(path, target="y")
    assert str(info.value) == (
        f"data.features: {path} has 100,000 feature columns; a model that wide needs about 480 "
        "GB for its feature-by-feature matrices (least squares, decorrelation), and this machine "
        f"has {physical_memory_bytes() / 1e9:.3g} GB: choose fewer columns with "
        "data.features=[...]"
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("quoted.csv", '\ufeff"price, usd",x,"a ""b"""\n1,2,3\n4,5,6\n'),
        ("tabs.tsv", 'price, usd\tx\ta "b"\n1\t2\t3\n4\t5\t6\n'),
        ("packed.csv.gz", '"price, usd",x,"a ""b"""\n1,2,3\n4,5,6\n'),
    ],
)
def test_a_header_is_read_alone_as_pyarrow_reads_it(
    tmp_path: Path, name: str, content: str
) -> None:
    # The names come from the first record alone (pyarrow's reader would infer every column's
    # type first: seconds for a wide header); they must be the names pyarrow reads.
    import pyarrow.csv as csv

    from linreg.data.table import _csv_header, _csv_options

    path = tmp_path / name
    data = content.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with csv.open_csv(path, **_csv_options(path)) as reader:
        assert _csv_header(path) == reader.schema.names == ["price, usd", "x", 'a "b"']


def test_a_csv_with_no_header_to_read_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        source(path)


@pytest.mark.parametrize("layout", ["csv", "npy"])
def test_a_table_changed_while_streamed_is_one_line_naming_it_and_the_way_back(
    tmp_path: Path, layout: str
) -> None:
    # Another schema written over the CSV, the .npy cut short: an ArrowKeyError and a memory-map
    # ValueError used to end the run as tracebacks.
    if layout == "csv":
        path = write_csv(tmp_path / "houses.csv", rows(200))
        table = source(path)
        streams = table.stream(16)
        path.write_text("x,y\n1,2\n")
        what = "Column 'a' in include_columns does not exist in CSV file"
    else:
        path = tmp_path / "houses.npy"
        np.save(path, np.random.default_rng(0).normal(size=(1000, 3)))
        table = source(path, target=-1)
        streams = table.stream(16)
        path.write_bytes(path.read_bytes()[:4000])
        what = "mmap length is greater than file size"
    with pytest.raises(ConfigError) as info:
        list(streams["train"].loader(0, torch.device("cpu")))
    assert str(info.value) == (
        f"data.path={path} changed while the run read it ({what}): put back the table the run "
        "started with, then resume it (ckpt_path=<its folder>)"
    )
