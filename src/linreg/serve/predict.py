"""Batch prediction from a saved model, streamed in chunks with bounded memory.

    python predict.py model=<run folder | model.onnx | file.ckpt>
                      input=<file.csv | .tsv | .csv.gz | .parquet | file.npy | ->
                      [output=<file.csv | file.npy | ->] [chunk_rows=65536]
                      [header=auto|yes|no|skip]

A model is loaded through the registry of model formats (`serve/formats.py`): ONNX models run on
onnxruntime and import neither torch, Lightning nor Hydra, so they start fast; checkpoints run on
plain PyTorch. Rows are read in the model's precision (float32, or float64). Output has one column
per target. A file output is written to a temporary file and renamed at the end, so a failed run
never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from linreg.cli import exit_on_user_error
from linreg.errors import LinregError, first_line
from linreg.files import atomic_path
from linreg.formats import CSV_SUFFIXES, PARQUET_SUFFIXES, parquet_files, table_suffix
from linreg.runs import read_summary, require_usable
from linreg.serve.formats import Predictor, load_predictor

USAGE = (
    "usage: python predict.py model=<run folder|model.onnx|file.ckpt> "
    "input=<file.csv|.tsv|.csv.gz|.parquet|file.npy|-> "
    "[output=<file.csv|file.npy|->] [chunk_rows=65536] [header=auto|yes|no|skip]"
)
HEADER_CHOICES = ("auto", "yes", "no", "skip")
CSV_BLOCK_BYTES = 1 << 20  # CSV text parsed at a time; a row of numbers never comes near it
PROGRESS_MIN_BYTES = 50_000_000
STOPPED_STATUSES = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # the shell's statuses for them


class PredictError(LinregError):
    """Bad arguments, input or model file for predict.py."""


@dataclass(frozen=True)
class PredictArgs:
    model: str
    input: str
    output: str = "-"
    chunk_rows: int = 65_536
    header: str = "auto"


def parse_args(argv: Sequence[str]) -> PredictArgs:
    """`key=value` arguments, like the other entry points; unknown keys are named, not ignored."""
    values: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in PredictArgs.__dataclass_fields__:
            raise PredictError(f"unknown argument {arg!r}; {USAGE}")
        values[key] = value
    missing = [key for key in ("model", "input") if key not in values]
    if missing:
        raise PredictError(f"missing {' and '.join(missing)}; {USAGE}")
    chunk_rows = values.get("chunk_rows", str(PredictArgs.chunk_rows))
    if not chunk_rows.isdigit() or int(chunk_rows) < 1:
        raise PredictError(f"chunk_rows={chunk_rows!r} is invalid: must be a positive integer")
    header = values.get("header", "auto")
    if header not in HEADER_CHOICES:
        raise PredictError(
            f"header={header!r} is invalid: choose one of {', '.join(HEADER_CHOICES)}"
        )
    output = values.get("output", "-")
    return PredictArgs(values["model"], values["input"], output, int(chunk_rows), header)


# ---------------------------------------------------------------------------------------- models


def load_model(spec: str) -> Predictor:
    """A model file, or a run folder's exported model (its record names the file)."""
    path = Path(spec)
    if not path.exists():
        raise PredictError(f"model={spec}: no such file or folder")
    if path.is_dir():
        require_usable(path, "model")
        exported = ((read_summary(path) or {}).get("paths") or {}).get("model") or "model.onnx"
        path = path / exported
        if not path.is_file():
            raise PredictError(
                f"model={spec}: the run folder has no {exported}; pass a .ckpt instead"
            )
    return load_predictor(path)


# ----------------------------------------------------------------------------------------- input


def read_chunks(
    args: PredictArgs,
    n_features: int,
    dtype: type = np.float32,
    predictor: Predictor | None = None,
) -> Iterator[np.ndarray]:
    """Chunks of at most `chunk_rows` rows in the model's `dtype` (float32, or float64), columns
    taken by position: a .npy array, or a CSV (a file, optionally .gz, or stdin) read by pyarrow.
    CSV text is UTF-8 (a byte-order mark is allowed); blank lines are not rows. A header read here
    (standard input's) is checked against `predictor`'s feature names and its columns reordered
    by them; without a predictor it is skipped."""
    if args.input == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise PredictError(
                "input=-: standard input is closed; give input=<file> or pipe rows in"
            )
        yield from _positional_csv_chunks(
            sys.stdin.buffer, "stdin", ",", n_features, args, dtype, predictor
        )
        return
    path = Path(args.input)
    if not path.is_file():
        raise PredictError(f"input={args.input}: no such file")
    if path.stat().st_size == 0:
        raise PredictError(f"input={args.input} is empty")
    if path.suffix == ".npy":
        yield from _npy_chunks(path, n_features, args.chunk_rows, dtype)
        return
    import pyarrow as pa

    suffix = table_suffix(path) or ".csv"
    with path.open("rb") as raw, _progress(path.stat().st_size) as advance:
        text = pa.CompressedInputStream(raw, "gzip") if suffix.endswith(".gz") else raw
        delimiter = "\t" if suffix.startswith(".tsv") else ","
        read = 0
        chunks = _positional_csv_chunks(
            text, args.input, delimiter, n_features, args, dtype, predictor
        )
        for chunk in chunks:
            advance(raw.tell() - read)
            read = raw.tell()
            yield chunk


def _positional_csv_chunks(
    source: IO[bytes],
    name: str,
    delimiter: str,
    n_features: int,
    args: PredictArgs,
    dtype: np.dtype,
    predictor: Predictor | None,
) -> Iterator[np.ndarray]:
    """A CSV's rows, the model's features by position (or by a header's names, see read_chunks).
    pyarrow reads the cells as text in blocks, serially (so that its errors name the line); they
    are converted here, so that a cell that is not a number is named by its line and column.
    Lines are counted as pyarrow counts them: the header is one, blank lines are none."""
    import pyarrow as pa
    import pyarrow.csv as csv

    columns = [f"column {i}" for i in range(1, n_features + 1)]
    header_lines = int(args.header == "skip")
    options = {
        "read_options": csv.ReadOptions(
            column_names=columns, skip_rows=header_lines,
            block_size=CSV_BLOCK_BYTES, use_threads=False,
        ),
        "parse_options": csv.ParseOptions(delimiter=delimiter),
        "convert_options": csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string())),
    }  # fmt: skip
    rows = 0  # data rows read before the current block
    order = None  # the header's position of each feature, where a header names them
    try:
        with csv.open_csv(source, **options) as reader:
            for batch in reader:
                if (
                    rows == 0
                    and not header_lines
                    and len(batch)
                    and (args.header == "yes" or (args.header == "auto" and _is_header(batch)))
                ):
                    order = _header_order(batch, predictor, args)
                    batch, header_lines = batch.slice(1), 1
                if order is not None:
                    batch = batch.select(order)
                chunk = _numbers_of(batch, header_lines + rows, name, dtype)
                for start in range(0, len(chunk), args.chunk_rows):
                    yield chunk[start : start + args.chunk_rows]
                rows += len(chunk)
    except pa.ArrowInvalid as err:
        raise _unreadable_csv(err, header_lines + rows, name, n_features) from None
    if rows == 0:
        raise PredictError(f"input={name} holds no data rows")


def _header_order(batch: Any, predictor: Predictor | None, args: PredictArgs) -> list[int] | None:
    """Where each of the model's features is in a header read with the rows (checked as a file's
    header is); None without a predictor (the header is then only skipped)."""
    if predictor is None:
        return None
    cells = [column[0].as_py().strip() for column in batch.columns]
    check_header(cells, predictor, args)
    return [cells.index(feature) for feature in predictor.feature_names]


def _is_header(batch: Any) -> bool:
    """With header=auto, a first line is a header only when it is one: every cell a name, none a
    number. A first row with one bad cell is a bad row (named as such), never a header."""
    if not len(batch):
        return False
    cells = [column[0].as_py().strip() for column in batch.columns]
    return all(cell and not _is_number(cell) for cell in cells)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers_of(batch: Any, lines_before: int, name: str, dtype: np.dtype) -> np.ndarray:
    """The batch's cells (text) as `dtype`; the first cell that is not a finite number is named
    by its line and column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    as_type = pa.from_numpy_dtype(dtype)
    values = []
    for index, column in enumerate(batch.columns):
        trimmed = pc.utf8_trim_whitespace(column)
        try:
            values.append(pc.cast(trimmed, as_type).to_numpy(zero_copy_only=False))
        except pa.ArrowInvalid:
            row = _first_not_a_number(trimmed, as_type)
            raise PredictError(
                f"input={name} line {lines_before + row + 1}, column {index + 1}: "
                f"{trimmed[row].as_py()!r} is not a number"
            ) from None
    chunk = np.column_stack(values)
    bad = np.argwhere(~np.isfinite(chunk))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        text = pc.utf8_trim_whitespace(batch.column(column))[row].as_py()
        raise PredictError(
            f"input={name} line {lines_before + row + 1}, column {column + 1}: "
            f"{text!r} is not finite"
        )
    return chunk


def _first_not_a_number(column: Any, as_type: Any) -> int:
    """The index of the first cell pyarrow cannot convert, by halving: each try is one cast."""
    import pyarrow as pa
    import pyarrow.compute as pc

    low, high = 0, len(column)  # the first bad cell lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            pc.cast(column.slice(low, middle - low), as_type)
        except pa.ArrowInvalid:
            high = middle
        else:
            low = middle
    return low


def _unreadable_csv(error: Exception, lines: int, name: str, n_features: int) -> PredictError:
    """pyarrow's parse error as one line a user can act on; `lines`: those read before it."""
    message = str(error)
    if "UTF8" in message or "\ufffd" in message or "\x00" in message:
        return PredictError(
            f"input={name} is not UTF-8 text (a UTF-16 file or a binary one?): save it as UTF-8 CSV"
        )
    width = re.search(r"(?:Row #(\d+): )?Expected \d+ columns, got (\d+)", message)
    if width:
        where = f"line {width[1]}" if width[1] else f"a line after line {lines}"
        return PredictError(
            f"input={name} {where} has {width[2]} columns; the model takes {n_features} features"
        )
    if "straddl" in message:
        return PredictError(
            f"input={name}: a line from line {lines + 1} on is longer than "
            f"{CSV_BLOCK_BYTES >> 20} MB; a row holds the model's {n_features} features"
        )
    return PredictError(f"input={name} is not a readable CSV: {first_line(error)}")


def _npy_chunks(
    path: Path, n_features: int, chunk_rows: int, dtype: np.dtype
) -> Iterator[np.ndarray]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise PredictError(f"input={path} is not a readable .npy file: {first_line(err)}") from err
    if not isinstance(array, np.ndarray):  # np.load opens a .npz archive whatever its name
        names = ", ".join(array.files)
        array.close()
        raise PredictError(
            f"input={path} is a .npz archive of arrays ({names}), not a .npy array: save the "
            "features with np.save"
        )
    if array.ndim != 2 or array.shape[1] != n_features or array.dtype.kind not in "fiu":
        raise PredictError(
            f"input={path} holds a {array.dtype} array of shape {array.shape}; "
            f"the model takes numbers of shape (rows, {n_features})"
        )
    if len(array) == 0:
        raise PredictError(f"input={path} holds no data rows")
    with _progress(len(array)) as advance:
        for start in range(0, len(array), chunk_rows):
            chunk = np.ascontiguousarray(array[start : start + chunk_rows], dtype=dtype)
            bad = np.argwhere(~np.isfinite(chunk))
            if len(bad):
                row, column = bad[0]
                raise PredictError(
                    f"input={path} row {start + row + 1}, column {column + 1}: "
                    f"{chunk[row, column]} is not finite"
                )
            advance(len(chunk))
            yield chunk


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], object]]:
    """A progress bar on stderr for long inputs, only when a person is watching the terminal."""
    if not sys.stderr.isatty() or total < PROGRESS_MIN_BYTES:
        yield lambda _: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit_scale=True, file=sys.stderr, desc="predict") as bar:
        yield bar.update


# ------------------------------------------------------------------------- input, by column name


def _by_name(args: PredictArgs, predictor: Predictor) -> bool:
    """Whether to choose the input's columns by name: a Parquet table always, a CSV file with a
    header always (`header=skip` skips its first line and takes the columns by position)."""
    names = _header_names(Path(args.input), args)
    if names is None:
        return False
    check_header(names, predictor, args)
    return True


def check_header(names: list[str], predictor: Predictor, args: PredictArgs) -> None:
    """A header holds every feature of the model once, in any order, among other columns (the
    target, say); one that does not is an error naming what it lacks and the header's closest
    name for it, never read by position (a misnamed column would be predicted from silently)."""
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise PredictError(
            f"input={args.input} has duplicate column names: {', '.join(duplicates)}; rename "
            "them so that each column is found by name"
        )
    wanted = predictor.input_names
    if not wanted:
        raise PredictError(
            f"input={args.input} has columns by name, but model={args.model} records no names: "
            f"give its {predictor.n_features} features by position (header=skip)"
        )
    missing = [name for name in wanted if name not in names]
    if not missing:
        return
    others = {name.lower(): name for name in names if name not in wanted}
    lacking = []
    for name in missing:
        close = difflib.get_close_matches(name.lower(), list(others), n=1, cutoff=0.6)
        lacking.append(f"{name!r} (closest: {others[close[0]]!r})" if close else repr(name))
    raise PredictError(
        f"input={args.input} lacks the model's columns {', '.join(lacking)}; its header has "
        f"{', '.join(names[:20])}{', ...' if len(names) > 20 else ''} (header=skip takes the "
        "columns by position)"
    )


def _header_names(path: Path, args: PredictArgs) -> list[str] | None:
    """The input's column names, where it has them: Parquet's schema, a CSV file's header."""
    if args.input == "-" or not path.exists():
        return None
    suffix = table_suffix(path)
    if suffix in PARQUET_SUFFIXES or suffix == "":
        import pyarrow.parquet as pq

        files = parquet_files(path)
        if not files:
            raise PredictError(f"input={args.input} is a folder with no .parquet files")
        return list(pq.read_schema(files[0]).names)
    if suffix not in CSV_SUFFIXES or args.header in ("no", "skip") or path.stat().st_size == 0:
        return None
    names = _csv_header(path, "\t" if suffix.startswith(".tsv") else ",")
    if names is None:
        return None
    if args.header == "yes" or all(name and not _is_number(name) for name in names):
        return names
    return None


def _csv_header(path: Path, delimiter: str) -> list[str] | None:
    """The cells of a CSV's first line, as pyarrow reads a header; None where it cannot (the
    positional reader then names the problem)."""
    import pyarrow as pa
    import pyarrow.csv as csv

    try:
        with csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=csv.ParseOptions(delimiter=delimiter),
        ) as reader:
            return [name.strip() for name in reader.schema.names]
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError):
        return None


def read_named_chunks(path: Path, predictor: Predictor, chunk_rows: int) -> Iterator[np.ndarray]:
    """Chunks of the model's features in its dtype, read by pyarrow in pieces: the named columns
    in the model's order, or the model matrix its design builds from them (raw text, say)."""
    import pyarrow as pa

    names, design, dtype = predictor.input_names or [], predictor.design, predictor.dtype
    rows = 0
    try:
        for batch in _record_batches(path, names, chunk_rows, as_numbers=design is None):
            columns = [batch.column(name) for name in names]
            for name, column in zip(names, columns, strict=True):
                if column.null_count:
                    raise PredictError(
                        f"input={path}: column {name!r} has {column.null_count} missing values "
                        f"in rows {rows + 1}-{rows + len(batch)}"
                    )
            if design is None:
                chunk = np.column_stack([c.to_numpy(zero_copy_only=False) for c in columns])
                chunk = chunk.astype(dtype, copy=False)
            else:
                chunk = design.matrix(batch, dtype, functools.partial(_input_row, path, rows))
            if not np.isfinite(chunk).all():
                row, column = np.argwhere(~np.isfinite(chunk))[0]
                shown = (design.names if design else names)[column]
                raise PredictError(
                    f"input={path} row {rows + row + 1}, column {shown!r}: "
                    f"{chunk[row, column]} is not finite"
                )
            rows += len(chunk)
            if len(chunk):
                yield chunk
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise PredictError(f"input={path}: {first_line(err)}") from err
    if rows == 0:
        raise PredictError(f"input={path} holds no data rows")


def _input_row(path: Path, rows_before: int, row: int) -> str:
    return f"input={path} row {rows_before + row + 1}"


def _record_batches(
    path: Path, names: list[str], chunk_rows: int, as_numbers: bool
) -> Iterator[object]:
    """The named columns in pieces; `as_numbers`: a CSV's cells read as float64 (otherwise as
    pyarrow infers them: text stays text)."""
    import pyarrow as pa

    suffix = table_suffix(path)
    if suffix in CSV_SUFFIXES:
        import pyarrow.csv as csv

        delimiter = "\t" if suffix.startswith(".tsv") else ","
        types = dict.fromkeys(names, pa.float64()) if as_numbers else {}
        yield from csv.open_csv(
            path,  # named as the header check read them: without spaces around the names
            read_options=csv.ReadOptions(column_names=_csv_header(path, delimiter), skip_rows=1),
            parse_options=csv.ParseOptions(delimiter=delimiter),
            convert_options=csv.ConvertOptions(
                include_columns=names, column_types=types, strings_can_be_null=True
            ),
        )
        return
    import pyarrow.parquet as pq

    for file in parquet_files(path):
        yield from pq.ParquetFile(file).iter_batches(batch_size=chunk_rows, columns=names)


# ---------------------------------------------------------------------------------------- output


def write_predictions(
    chunks: Iterator[np.ndarray], output: str, n_targets: int, header: list[str] | None = None
) -> int:
    """Write every chunk; a file appears only complete (temporary file, then rename). A CSV gets
    a header of the target names when the input was read by column name."""
    if output == "-":
        return _write_csv(chunks, sys.stdout, header)
    target = Path(output)
    if target.is_dir():
        raise PredictError(f"output={output} is a folder; name a file in it")
    if not target.parent.is_dir():
        raise PredictError(f"output={output}: folder {target.parent} does not exist")
    with atomic_path(target) as tmp:
        if target.suffix == ".npy":
            with tmp.open("wb") as handle:
                return _write_npy(chunks, handle, tmp, n_targets)
        with tmp.open("w") as handle:
            return _write_csv(chunks, handle, header)


def _write_csv(chunks: Iterator[np.ndarray], handle: IO[str], header: list[str] | None) -> int:
    """Numbers with the digits that give them back exactly: 9 for float32, 17 for float64. The
    header goes out with the first rows: input refused before any row prints nothing."""
    rows = 0
    for chunk in chunks:
        if header and not rows:  # quoted as CSV needs: a target named `price, usd` is one column
            csv.writer(handle, lineterminator="\n").writerow(header)
        digits = 17 if chunk.dtype == np.float64 else 9
        np.savetxt(handle, chunk, delimiter=",", fmt=f"%.{digits}g")
        rows += len(chunk)
    return rows


def _write_npy(chunks: Iterator[np.ndarray], handle: IO[bytes], tmp: Path, n_targets: int) -> int:
    """Rows are not known up front: stream the raw numbers (the model's float32 or float64) to a
    side file, then add the .npy header."""
    raw = tmp.with_suffix(".raw")
    try:
        rows, dtype = 0, np.dtype(np.float32)
        with raw.open("wb") as side:
            for chunk in chunks:
                dtype = chunk.dtype
                side.write(np.ascontiguousarray(chunk).tobytes())
                rows += len(chunk)
        descr = np.lib.format.dtype_to_descr(dtype)
        header = {"descr": descr, "fortran_order": False, "shape": (rows, n_targets)}
        np.lib.format.write_array_header_2_0(handle, header)
        with raw.open("rb") as side:
            while block := side.read(1 << 24):
                handle.write(block)
        return rows
    finally:
        raw.unlink(missing_ok=True)


def predict(args: PredictArgs) -> int:
    """Run the whole prediction; returns the number of rows written."""
    predictor = load_model(args.model)
    if _by_name(args, predictor):
        chunks = read_named_chunks(Path(args.input), predictor, args.chunk_rows)
        header = predictor.target_names
    elif predictor.design is not None:
        raise PredictError(
            f"model={args.model} encodes the columns {', '.join(predictor.design.columns)} "
            f"({predictor.design.formula}); give input={args.input} with them by name: a CSV "
            "with a header, or Parquet"
        )
    else:
        chunks = read_chunks(args, predictor.n_features, predictor.dtype, predictor)
        header = None
    with contextlib.closing(chunks):  # the reader is closed on every way out, not at exit
        return write_predictions(
            (predictor.predict(chunk) for chunk in chunks), args.output, predictor.n_targets, header
        )


def main(argv: Sequence[str]) -> None:
    # SIGTERM unwinds like an exception, so temporary files are removed on the way out.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        if {"-h", "--help"} & set(argv):
            print(__doc__.strip())
        else:
            exit_on_user_error(lambda: predict(parse_args(argv)))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, and keep Python's exit-time flush of
        # stdout from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except SystemExit as stop:
        if stop.code in STOPPED_STATUSES:
            # The unwinding has removed the temporary files; what is left is a read pyarrow may
            # still have in flight, and tearing the interpreter down under it aborts or hangs the
            # process ("terminate called without an active exception", apache/arrow#34314).
            sys.stderr.flush()
            os._exit(stop.code)
        raise


def _stop_on_sigterm(signum: int, frame: object) -> None:
    print("error: stopped by SIGTERM; no output file was written", file=sys.stderr)
    sys.exit(128 + signum)
