"""predict.py: every input and output form, bounded memory on large inputs, and clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli

from linreg.models.linear import LinearRegressor
from linreg.models.network import network_from_checkpoint
from linreg.runs import load_checkpoint
from linreg.serve.export import export_model
from linreg.serve.predict import write_predictions

N_FEATURES = 8


def predict(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), None, script="predict.py", stdin=stdin)


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return (3 + 5 * np.random.default_rng(0).standard_normal((500, N_FEATURES))).astype(np.float32)


def best_checkpoint(run_dir: Path) -> Path:
    return run_dir / json.loads((run_dir / "metrics.json").read_text())["paths"]["best_checkpoint"]


def torch_predictions(checkpoint: Path, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network_from_checkpoint(load_checkpoint(checkpoint), checkpoint)(
            torch.from_numpy(rows)
        ).numpy()


def write_csv(path: Path, rows: np.ndarray, header: bool = False) -> Path:
    with path.open("w") as handle:
        if header:
            handle.write(",".join(f"x{i}" for i in range(rows.shape[1])) + "\n")
        np.savetxt(handle, rows, delimiter=",", fmt="%.9g")
    return path


@pytest.mark.parametrize("model", ["run folder", "onnx file", "last checkpoint"])
@pytest.mark.parametrize("header", [False, True])
def test_csv_in_csv_out_matches_the_pytorch_model(
    trained_run: Path, tmp_path: Path, features: np.ndarray, model: str, header: bool
) -> None:
    # The run folder means its model.onnx, which is the exported best checkpoint.
    model_path, checkpoint = {
        "run folder": (trained_run, best_checkpoint(trained_run)),
        "onnx file": (trained_run / "model.onnx", best_checkpoint(trained_run)),
        "last checkpoint": (trained_run / "checkpoints" / "last.ckpt",) * 2,
    }[model]
    csv = write_csv(tmp_path / "in.csv", features, header=header)
    out = tmp_path / "out.csv"
    result = predict(f"model={model_path}", f"input={csv}", f"output={out}", "chunk_rows=64")
    assert result.returncode == 0, result.stderr
    # A header of the model's feature names (x0, ...) is read by name; the output then names
    # the target too.
    assert (out.read_text().splitlines()[0] == "y0") == header
    predictions = np.loadtxt(out, delimiter=",", ndmin=2, skiprows=int(header))
    assert predictions.shape == (500, 1)
    expected = torch_predictions(checkpoint, features)
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-5)


def test_npy_in_npy_out_gives_float32_with_one_column_per_target(
    trained_run: Path, tmp_path: Path, features: np.ndarray
) -> None:
    npy = tmp_path / "in.npy"
    np.save(npy, features)
    out = tmp_path / "out.npy"
    result = predict(f"model={best_checkpoint(trained_run)}", f"input={npy}", f"output={out}")
    assert result.returncode == 0, result.stderr
    predictions = np.load(out)
    assert predictions.dtype == np.float32
    np.testing.assert_array_equal(
        predictions, torch_predictions(best_checkpoint(trained_run), features)
    )


def test_stdin_to_stdout_for_piping(trained_run: Path, features: np.ndarray) -> None:
    text = "\n".join(",".join(f"{v:.9g}" for v in row) for row in features[:20]) + "\n"
    result = predict(f"model={trained_run}", "input=-", stdin=text)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 20
    direct = predict(f"model={trained_run}", "input=-", "output=-", stdin=text)
    assert direct.stdout == result.stdout


def _text(rows: np.ndarray, cell: str, separator: str = ",", end: str = "\n") -> str:
    return "".join(
        separator.join(cell.format(f"{value:.9g}") for value in row) + end for row in rows
    )


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("in.csv.gz", lambda rows: __import__("gzip").compress(_text(rows, "{}").encode())),
        ("in.tsv", lambda rows: _text(rows, "{}", separator="\t").encode()),
        ("in.csv", lambda rows: _text(rows, '"{}"').encode()),  # quoted cells
        ("in.csv", lambda rows: _text(rows, " {} ", end="\r\n").encode()),  # spaces, CRLF
        (
            "in.csv",
            lambda rows: ("\n" + _text(rows[:3], "{}") + "\n\n" + _text(rows[3:], "{}")).encode(),
        ),  # blank lines are not rows
        ("in.csv", lambda rows: _text(rows, "{}").encode("utf-8-sig")),  # a byte-order mark
    ],
    ids=["gzip", "tsv", "quoted", "spaces-crlf", "blank-lines", "bom"],
)
def test_positional_csv_is_read_as_a_csv_reader_reads_it(
    trained_run: Path, tmp_path: Path, features: np.ndarray, name: str, make: object
) -> None:
    """No header: columns by position, read by pyarrow's CSV reader, so what a CSV may hold
    (quotes, tabs, gzip, CRLF, blank lines) gives the same predictions as plain rows."""
    source = tmp_path / name
    source.write_bytes(make(features[:40]))
    result = predict(f"model={trained_run}", f"input={source}", "chunk_rows=16")
    assert result.returncode == 0, result.stderr
    predictions = np.loadtxt(result.stdout.splitlines(), delimiter=",", ndmin=2)
    expected = torch_predictions(best_checkpoint(trained_run), features[:40])
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-5)


def test_header_skip_skips_a_first_line_of_numbers(trained_run: Path, features: np.ndarray) -> None:
    text = _text(features[:5], "{}")
    result = predict(f"model={trained_run}", "input=-", "header=skip", stdin=text)
    assert result.returncode == 0, result.stderr
    expected = torch_predictions(best_checkpoint(trained_run), features[1:5])
    predictions = np.loadtxt(result.stdout.splitlines(), delimiter=",", ndmin=2)
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-5)


def test_multi_target_model_writes_one_column_per_target(tmp_path: Path) -> None:
    regressor = LinearRegressor(4, 3)
    regressor.standardize.fit_(torch.randn(100, 4))
    model = export_model(regressor, tmp_path / "model.onnx", opset=20)
    rows = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    csv = write_csv(tmp_path / "in.csv", rows)
    result = predict(f"model={model}", f"input={csv}")
    predictions = np.loadtxt(result.stdout.splitlines(), delimiter=",")
    with torch.no_grad():
        expected = regressor(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(predictions, expected, rtol=1e-6, atol=1e-5)


PEAK_RSS = (
    "import resource, runpy, sys\n"
    "sys.argv = ['predict.py', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def peak_rss_kib(model: Path, csv: Path, out: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, f"model={model}", f"input={csv}", f"output={out}",
         "chunk_rows=4096"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return int(result.stderr.split("peak_kib")[-1])


def test_large_csv_streams_in_chunks_with_bounded_memory(trained_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    small = write_csv(tmp_path / "small.csv", rng.standard_normal((20_000, N_FEATURES)))
    large = write_csv(tmp_path / "large.csv", rng.standard_normal((400_000, N_FEATURES)))
    assert large.stat().st_size > 30_000_000
    small_peak = peak_rss_kib(trained_run, small, tmp_path / "small.out.csv")
    large_peak = peak_rss_kib(trained_run, large, tmp_path / "large.out.csv")
    assert sum(1 for _ in (tmp_path / "large.out.csv").open()) == 400_000
    # Holding the input as text alone would take > 30 MB more; streaming stays within a few MB.
    assert large_peak - small_peak < 15_000, (small_peak, large_peak)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n", "input={csv} line 1 has 3 columns; the model takes 8 features"),
        ("1,2,3,4,5,6,7,8\n1,2,x,4,5,6,7,8\n", "input={csv} line 2, column 3: 'x' is not a number"),
        (
            "1,2,3,4,5,6,7,8\n1,2,3,nan,5,6,7,8\n",
            "input={csv} line 2, column 4: 'nan' is not finite",
        ),
        (
            "x0,x1,x2,x3,x4,x5,x6,x7\n1,2,3,4,5,6,7,8\n1,2,3,nan,5,6,7,8\n",
            "input={csv}: column 'x3' has 1 missing values in rows 1-2",
        ),
        ("1,2,3,4,5,6,7,inf\n", "input={csv} line 1, column 8: 'inf' is not finite"),
        ("", "input={csv} is empty"),
        ("x0,x1,x2,x3,x4,x5,x6,x7\n", "input={csv} holds no data rows"),
        (
            "a,b,c,d,e,f,g,h\n1,2,3,4,5,6,7,8\n",
            "input={csv} lacks the model's columns 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', "
            "'x7'; its header has a, b, c, d, e, f, g, h (header=skip takes the columns by "
            "position)",
        ),
    ],
)
def test_bad_csv_is_one_line_exit_1_and_leaves_no_output_file(
    trained_run: Path, tmp_path: Path, content: str, message: str
) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text(content)
    out = tmp_path / "out.csv"
    result = predict(f"model={trained_run}", f"input={csv}", f"output={out}", "chunk_rows=2")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {message.format(csv=csv)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_bad_row_in_a_later_chunk_keeps_an_existing_output_intact(
    trained_run: Path, tmp_path: Path, features: np.ndarray
) -> None:
    out = tmp_path / "out.csv"
    out.write_text("previous results\n")
    rows = features.astype(str)
    rows[300, 5] = "oops"
    csv = tmp_path / "in.csv"
    csv.write_text("\n".join(",".join(row) for row in rows) + "\n")
    result = predict(f"model={trained_run}", f"input={csv}", f"output={out}", "chunk_rows=64")
    assert result.returncode == 1
    assert "line 301, column 6: 'oops' is not a number" in result.stderr
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_bad_npy_names_row_and_column(
    trained_run: Path, tmp_path: Path, features: np.ndarray
) -> None:
    bad = features.copy()
    bad[41, 2] = np.inf
    np.save(tmp_path / "in.npy", bad)
    result = predict(f"model={trained_run}", f"input={tmp_path / 'in.npy'}")
    assert result.returncode == 1
    assert "row 42, column 3: inf is not finite" in result.stderr
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    result = predict(f"model={trained_run}", f"input={tmp_path / 'wide.npy'}")
    assert "shape (3, 5); the model takes numbers of shape (rows, 8)" in result.stderr


@pytest.mark.parametrize(
    ("model_name", "content", "message"),
    [
        ("missing.onnx", None, "no such file or folder"),
        ("corrupt.onnx", b"not a model", "is not a valid ONNX model"),
        ("corrupt.ckpt", b"not a checkpoint", "is not a readable checkpoint"),
    ],
)
def test_missing_or_corrupt_model_is_one_line_exit_1(
    tmp_path: Path, features: np.ndarray, model_name: str, content: bytes | None, message: str
) -> None:
    model = tmp_path / model_name
    if content is not None:
        model.write_bytes(content)
    csv = write_csv(tmp_path / "in.csv", features[:3])
    result = predict(f"model={model}", f"input={csv}", f"output={tmp_path / 'out.csv'}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and str(model) in result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_unknown_or_missing_arguments_show_usage() -> None:
    result = predict("model=x", "inptu=y")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown argument 'inptu=y'; usage: python predict.py")


def test_long_input_shows_a_progress_bar_on_a_terminal(
    trained_run: Path, tmp_path: Path, features: np.ndarray, monkeypatch, capsys
) -> None:
    from linreg.serve import predict as predict_module

    csv = write_csv(tmp_path / "in.csv", features)
    monkeypatch.setattr(predict_module, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    args = predict_module.PredictArgs(str(trained_run), str(csv), str(tmp_path / "out.csv"), 64)
    assert predict_module.predict(args) == 500
    assert "predict: 100%" in capsys.readouterr().err


def test_target_names_with_commas_quotes_or_newlines_stay_one_header_cell_each(
    tmp_path: Path,
) -> None:
    names = ["price, usd", 'say "hi"', "two\nlines"]
    out = tmp_path / "predictions.csv"
    rows = write_predictions(iter([np.ones((2, 3), dtype=np.float32)]), str(out), 3, names)
    assert rows == 2
    with out.open(newline="") as handle:
        read = list(csv.reader(handle))
    assert read == [names, ["1", "1", "1"], ["1", "1", "1"]]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("linreg.feature_names", "not json"),
        ("linreg.feature_names", '["a", "b"]'),  # 2 names for 3 features
        ("linreg.feature_names", '["a", "a", "c"]'),
        ("linreg.feature_names", "[1, 2, 3]"),
        ("linreg.feature_names", '[["a", "b", "c"]]'),
        ("linreg.target_names", '["y", "z"]'),  # 2 names over one output
    ],
    ids=["not-json", "too-few", "duplicates", "numbers", "nested", "two-targets"],
)
def test_an_onnx_file_whose_column_names_disagree_with_its_graph_is_refused(
    tmp_path: Path, key: str, value: str
) -> None:
    import onnx

    from linreg.serve.formats import ModelFileError, load_predictor

    regressor = LinearRegressor(3, 1, feature_names=["a", "b", "c"], target_names=["y"])
    path = export_model(regressor.eval(), tmp_path / "model.onnx", opset=20)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"linreg.feature_names": '["a", "b", "c"]',
                                        "linreg.target_names": '["y"]', key: value})  # fmt: skip
    onnx.save(model, str(path))
    width = 3 if key == "linreg.feature_names" else 1
    with pytest.raises(ModelFileError) as info:
        load_predictor(path)
    assert str(info.value) == (
        f"model={path}: its {key} metadata {value} is not a list of {width} distinct names for "
        f"its {width} columns; the file was edited or damaged: export it again"
    )
