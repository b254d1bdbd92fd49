"""A user's own table as a data source: CSV or TSV (optionally .gz), Parquet (one file, or a folder
of files with one schema), or a NumPy .npy/.npz array.

Read with pyarrow, only the columns a run uses; column names are kept end to end (a NumPy array's
columns are `column_0`, ... and are chosen by index). A row's split depends only on the seed and its
position in the table (or on a split column), so in-memory and streamed runs split alike. Streamed
(`data.streaming=true`), the table is read piece by piece (Parquet row groups, CSV blocks, slices
of a memory-mapped .npy) and never held whole.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from linreg.batches import Batch, to_device
from linreg.config.validation import check_width
from linreg.data.design import (
    Design,
    categorical_calls,
    categories_of,
    fit_design,
    formula_sides,
    is_categorical,
    mentioned,
    obvious_formula,
)
from linreg.data.loaders import EpochShuffler, derived_seed, prefetched
from linreg.data.module import RegressionDataModule
from linreg.data.source import SPLITS, RegressionSource
from linreg.errors import ConfigError, first_line
from linreg.formats import CSV_SUFFIXES, PARQUET_SUFFIXES, parquet_files, table_suffix

PIECE_ROWS = 1 << 18  # rows decoded at a time (a .npy's pieces, slices of a row group)
DESIGN_SAMPLE_ROWS = 1 << 16  # streamed, the training rows a design is built on (levels: all)
CSV_BLOCK_BYTES = 1 << 20
PARQUET_BUFFER_BYTES = 1 << 20
Piece = tuple[int, int, np.ndarray, np.ndarray | None]  # index, first row, values, split labels


# --------------------------------------------------------------------------------------- reading


def checked_parquet_files(path: Path) -> list[Path]:
    """The Parquet files of a file or folder; a folder's files must have the same columns, each
    of one type, or of numeric types in every file (each file's are converted on reading)."""
    import pyarrow.parquet as pq

    files = parquet_files(path)
    if not files:
        raise ConfigError(f"data.path={path} is a folder with no .parquet files")
    first = pq.read_schema(files[0])
    for other in files[1:]:
        schema = pq.read_schema(other)
        if schema.names != first.names:
            raise ConfigError(
                f"data.path={path}: {other.name} has other columns than {files[0].name} "
                f"({', '.join(schema.names)} vs {', '.join(first.names)}); every file of a "
                "folder needs the same columns"
            )
        for field, expected in zip(schema, first, strict=True):
            if field.type != expected.type and not (_numeric(field.type) and
                                                    _numeric(expected.type)):  # fmt: skip
                raise ConfigError(
                    f"data.path={path}: column {field.name!r} is {field.type} in {other.name} "
                    f"but {expected.type} in {files[0].name}; every file of a folder needs the "
                    "same type in each column (numbers of any type convert)"
                )
    return files


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _csv_options(path: Path, columns: Sequence[str] | None = None) -> dict[str, Any]:
    import pyarrow.csv as csv

    delimiter = "\t" if table_suffix(path).startswith(".tsv") else ","
    options: dict[str, Any] = {"parse_options": csv.ParseOptions(delimiter=delimiter)}
    if columns is not None:  # an empty cell of text is missing, as one of numbers is
        options["convert_options"] = csv.ConvertOptions(
            include_columns=list(columns), strings_can_be_null=True
        )
    return options


def _csv_header(path: Path) -> list[str] | None:
    """A CSV's column names from its first record alone, or None where it has none to read.
    pyarrow's reader would also infer every column's type from a first block: 7 s for a header
    of 100,000 names, before a width is refused."""
    import csv
    import io

    delimiter = _csv_options(path)["parse_options"].delimiter
    try:
        with (
            pa.input_stream(str(path), compression="detect") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
        ):
            return next(csv.reader(text, delimiter=delimiter), None)
    except (UnicodeDecodeError, csv.Error):
        return None


def _numpy_array(path: Path) -> np.ndarray:
    """A .npy memory-mapped (never read whole), or the one array of a .npz."""
    if table_suffix(path) == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) != 1:
                raise ConfigError(
                    f"data.path={path} holds {len(names)} arrays ({', '.join(names)}); save one "
                    "2-d array of rows (features and targets side by side)"
                )
            array = archive[names[0]]
    if array.ndim != 2 or array.dtype.kind not in "fiub":
        raise ConfigError(
            f"data.path={path} holds a {array.dtype} array of shape {array.shape}; expected a "
            "2-d array of numbers, one row per example"
        )
    return array


def _readable(error: Exception, path: Path) -> ConfigError:
    return ConfigError(f"data.path={path} is not a readable table: {first_line(error)}")


# ---------------------------------------------------------------------------------------- source


def _names(all_names: list[str], wanted: Any, key: str, path: Path) -> list[str]:
    """Column names for `wanted` (a name, an index, or a list of either)."""
    chosen = []
    for item in _listed(wanted):
        # A name wins over an index: the command line reads `data.target=2010` as a number.
        if str(item) in all_names:
            chosen.append(str(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -len(all_names) <= item < len(all_names):
                raise ConfigError(
                    f"{key}={item}: {path} has no column named {item} and {len(all_names)} "
                    f"columns by index (0 to {len(all_names) - 1}, or -1 for the last); a name "
                    f"that looks like a number is quoted as {key}=\"'{item}'\""
                )
            chosen.append(all_names[item])
        else:
            shown = ", ".join(all_names[:20]) + (", ..." if len(all_names) > 20 else "")
            raise ConfigError(f"{key}={item}: no such column in {path}; its columns are {shown}")
    return chosen


def split_codes(first_row: int, n_rows: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """0/1/2 (train/val/test) for rows first_row, ..., first_row + n_rows - 1: a hash of (seed,
    position), so a row's split does not depend on how the table is read or chunked."""
    state = np.arange(first_row, first_row + n_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):  # splitmix64: wrapping arithmetic is the point
        state += np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            state ^= state >> np.uint64(shift)
            state *= np.uint64(multiplier)
        state ^= state >> np.uint64(31)
    state >>= np.uint64(11)  # a uniform draw of 53 bits: row r falls in split k where the
    # cumulative fractions before k are <= state / 2**53, compared here in whole numbers
    codes = np.zeros(n_rows, dtype=np.int8)
    for bound in np.cumsum(fractions)[:2]:
        codes += state >= np.uint64(math.ceil(bound * (1 << 53)))
    return codes


class TableSource(RegressionSource):
    """Features and targets chosen by name from a table; no ground truth (none is known).

    Where a feature column is categorical (text, boolean, dictionary, or named in
    `categorical`), or a `formula` chooses the features, the network takes a design's model
    matrix (data/design.py), fitted on the training rows before the checking pass, or the
    `design` a trained model saved (eval.py on another table)."""

    def __init__(
        self,
        path: str,
        target: Any,
        features: Sequence[Any] | None,
        split_column: str | None,
        missing: str,
        fractions: tuple[float, float, float],
        seed: int,
        precision: str = "32-true",
        *,
        formula: str | None = None,
        categorical: Sequence[Any] | None = None,
        intercept: bool = True,
        design: dict[str, Any] | None = None,
        streaming: bool = False,
    ) -> None:
        self.path = Path(path)
        # What training reads: float64 where it trains in double precision, else float32.
        self.dtype = np.dtype(np.float64 if str(precision).startswith("64") else np.float32)
        self.missing = missing
        self.fractions = fractions
        self.seed = seed
        suffix = table_suffix(self.path)
        self.is_csv = suffix in CSV_SUFFIXES
        self.is_parquet = suffix in (*PARQUET_SUFFIXES, "")
        try:
            self.files = checked_parquet_files(self.path) if self.is_parquet else [self.path]
            names = self._column_names()
        except (pa.ArrowInvalid, OSError, ValueError) as err:
            raise _readable(err, self.path) from err
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ConfigError(
                f"data.path={self.path} has duplicate column names: {', '.join(duplicates)}; "
                "rename them so each column can be chosen by name"
            )
        rhs, target = self._formula_sides(formula, target, features)
        self.target_names = _names(names, target, "data.target", self.path)
        self.split_column = (
            _names(names, split_column, "data.split_column", self.path)[0] if split_column else None
        )
        if self.split_column in self.target_names:
            raise ConfigError(
                f"data.split_column={self.split_column} is also the target; a split column holds "
                "train/val/test per row, so name another column, or null to split by the fractions"
            )
        reserved = {*self.target_names, self.split_column}
        if design is not None:
            features = Design.from_record(design, "model").columns
        elif rhs is not None:
            features = mentioned([name for name in names if name not in reserved], rhs)
        if features is None:
            self.input_names = [name for name in names if name not in reserved]
        else:
            self.input_names = _names(names, features, "data.features", self.path)
            both = sorted(set(self.input_names) & reserved)
            if both:
                raise ConfigError(f"data.features: {', '.join(both)} is also the target or split")
        if not self.input_names:
            raise ConfigError(f"data.features: {self.path} has no columns left to use as features")
        check_width(len(self.input_names), "data.features", str(self.path))
        self.n_targets = len(self.target_names)
        self._checked_schema: pa.Schema | None = None  # the last batch schema `_numbers` checked
        self._all_floating = False  # whether its columns share one floating type
        # What is read from the file: the run's columns, and the split column where there is one.
        split = [self.split_column] if self.split_column else []
        self.read_columns = [*self.input_names, *self.target_names, *split]
        # The network's columns: the table's own, or the matrix of a design fitted here.
        self.table_design = (
            Design.from_record(design, "model")
            if design is not None
            else self._fitted_design(rhs, categorical, intercept, streaming)
        )
        # A trained model's design scores rows it encodes as they are: a level every row shares
        # is a constant column, which only training refuses.
        self.refuse_constant = design is None
        self.feature_names = (
            self.table_design.names if self.table_design else list(self.input_names)
        )
        self.n_features = len(self.feature_names)
        check_width(self.n_features, "data.formula", str(self.path))
        self.columns = [*self.feature_names, *self.target_names]  # of the values `pieces` gives

    def _formula_sides(
        self, formula: str | None, target: Any, features: Any
    ) -> tuple[str | None, Any]:
        """The formula's right side and the target: `data.target`, or the names on the formula's
        left side."""
        if formula is None:
            if target is None:
                raise ConfigError(
                    "data.target: no value given; name the target column (data.target=price) or "
                    "write a formula (data.formula='price ~ area + C(region)')"
                )
            return None, target
        if features is not None:
            raise ConfigError(
                f"data.formula={formula}: data.features={features} chooses the features too; "
                "give one of the two"
            )
        left, rhs = formula_sides(formula)
        if left and target is not None and [str(t) for t in _listed(target)] != left:
            raise ConfigError(
                f"data.formula={formula} names the target {' + '.join(left)}, data.target="
                f"{target} another; give one of the two"
            )
        if not left and target is None:
            raise ConfigError(
                f"data.formula={formula}: no target; write it on the left (price ~ ...) or "
                "give data.target"
            )
        return rhs, (left if len(left) > 1 else left[0]) if left else target

    def _fitted_design(
        self, rhs: str | None, categorical: Any, intercept: bool, streaming: bool
    ) -> Design | None:
        """The design of the formula (`rhs`) or of the feature columns where one is categorical;
        None for a table of numbers (its columns go to the network as they are)."""
        forced = (
            _names(self.input_names, categorical, "data.categorical", self.path)
            if categorical
            else []
        )
        types = self._input_types()
        found = [name for name in self.input_names if is_categorical(types[name])]
        if rhs is None and not found and not forced:
            return None
        if rhs is not None and forced:
            raise ConfigError(
                f"data.categorical={categorical}: with data.formula, say it in the formula: "
                f"C({forced[0]})"
            )
        if not (self.is_csv or self.is_parquet):
            raise ConfigError(
                f"data.{'formula' if rhs else 'categorical'}: {self.path} is a NumPy array, "
                "whose columns are numbers chosen by index; give a CSV or Parquet table"
            )
        booleans = [name for name in found if pa.types.is_boolean(types[name])]
        formula = rhs or obvious_formula(self.input_names, [*forced, *booleans])
        levels_of = [name for name in self.input_names
                     if name in found or name in categorical_calls(formula)]  # fmt: skip
        training, levels = self._design_rows(levels_of if streaming else None)
        key = "data.formula" if rhs else "data.features"
        return fit_design(formula, training, intercept, key, levels)

    def _input_types(self) -> dict[str, pa.DataType]:
        """The feature columns' types: Parquet's schema, or as pyarrow infers a CSV's from its
        first block."""
        if self.is_parquet:
            import pyarrow.parquet as pq

            schema = pq.read_schema(self.files[0])
        elif self.is_csv:
            import pyarrow.csv as csv

            try:
                with csv.open_csv(self.path, **_csv_options(self.path, self.input_names)) as reader:
                    schema = reader.schema
            except (pa.ArrowInvalid, OSError) as err:
                raise _readable(err, self.path) from err
        else:
            return dict.fromkeys(self.input_names, pa.float64())
        return {name: schema.field(name).type for name in self.input_names}

    def _design_rows(
        self, level_columns: list[str] | None
    ) -> tuple[pa.Table, dict[str, list[Any]] | None]:
        """The training rows without an empty feature cell, in file order, as the design learns
        from them: all of them, or, streamed (`level_columns` given), the first
        DESIGN_SAMPLE_ROWS and the levels of `level_columns` over all of them."""
        parts, held = [], 0
        levels: dict[str, set[Any]] = {name: set() for name in level_columns or ()}
        for start, batch in self._record_batches():
            codes = self.split_codes_at(start, batch.num_rows, self._labels(batch))
            rows = batch.select(self.input_names).filter(pa.array(codes == 0))
            complete = [pc.is_valid(rows.column(i)) for i in range(rows.num_columns)]
            rows = rows.filter(functools.reduce(pc.and_, complete))
            for name, seen in levels.items():
                seen.update(categories_of(rows.column(name)))
            if level_columns is None or held < DESIGN_SAMPLE_ROWS:
                kept = rows if level_columns is None else rows.slice(0, DESIGN_SAMPLE_ROWS - held)
                parts.append(pa.Table.from_batches([kept]))
                held += kept.num_rows
        if not held:
            raise self._no_training_rows()
        training = pa.concat_tables(parts, promote_options="permissive")
        return training, None if level_columns is None else {
            name: sorted(seen) for name, seen in levels.items()
        }

    def _record_batches(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        """The run's columns as pyarrow reads them, with each batch's first row, in file order."""
        start = 0
        try:
            if self.is_csv:
                import pyarrow.csv as csv

                with csv.open_csv(
                    self.path, **_csv_options(self.path, self.read_columns)
                ) as reader:
                    for batch in reader:
                        yield start, batch
                        start += batch.num_rows
                return
            import pyarrow.parquet as pq

            for file in self.files:
                for batch in pq.ParquetFile(file).iter_batches(columns=self.read_columns):
                    yield start, batch
                    start += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
            raise _readable(err, self.path) from err

    def _column_names(self) -> list[str]:
        """The table's column names, from its schema or header only."""
        if self.is_csv:
            import pyarrow.csv as csv

            header = _csv_header(self.path)
            if header:
                return header
            # pyarrow's reader says what is wrong with the file (empty, not text).
            with csv.open_csv(self.path, **_csv_options(self.path)) as reader:
                return list(reader.schema.names)
        if self.is_parquet:
            import pyarrow.parquet as pq

            return list(pq.read_schema(self.files[0]).names)
        return [f"column_{i}" for i in range(_numpy_array(self.path).shape[1])]

    @cached_property
    def _row_groups(self) -> list[tuple[Path, int, int]]:
        """(file, row group, first row) of every Parquet row group, from the files' footers."""
        import pyarrow.parquet as pq

        groups, start = [], 0
        for file in self.files:
            metadata = pq.ParquetFile(file).metadata
            for group in range(metadata.num_row_groups):
                groups.append((file, group, start))
                start += metadata.row_group(group).num_rows
        return groups

    @cached_property
    def _numpy_columns(self) -> list[int]:
        return [int(name.removeprefix("column_")) for name in self.columns]

    # -- reading whole, or piece by piece

    def load(self) -> dict[str, Batch]:
        """Every split whole, gathered piece by piece in file order: pyarrow never holds more than
        a piece, and the rows are copied once into their split's parts and once when joined."""
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in SPLITS}

        def keep_rows(index: int, values: np.ndarray, codes: np.ndarray) -> None:
            for code, name in enumerate(SPLITS):
                rows = codes == code
                parts[name].append(
                    (values[rows, : self.n_features], values[rows, self.n_features :])
                )

        self._checking_pass(prefetched(self.pieces(epoch=None)), keep_rows)
        splits = {}
        for name in SPLITS:
            features, targets = zip(*parts.pop(name), strict=True)
            splits[name] = (
                torch.from_numpy(np.concatenate(features)),
                torch.from_numpy(np.concatenate(targets)),
            )
        for name in self.measured_on_training_rows:
            splits[name] = splits["train"]
        return splits

    def stream(self, batch_size: int) -> dict[str, TableStream]:
        """One checking pass over the table: it counts each split's rows, so that every epoch
        knows its length, and finds bad values before training starts."""
        per_piece: dict[int, np.ndarray] = {}  # rows of each split in each piece

        def count(index: int, values: np.ndarray, codes: np.ndarray) -> None:
            per_piece[index] = per_piece.get(index, 0) + np.bincount(codes, minlength=len(SPLITS))

        counts = self._checking_pass(prefetched(self.pieces(epoch=None)), count)
        # Pieces a process can read on its own: Parquet row groups and .npy slices, not CSV blocks.
        random_access = not self.is_csv
        streams = {}
        for name in SPLITS:
            served = "train" if name in self.measured_on_training_rows else name
            code = SPLITS.index(served)
            piece_rows = {i: int(c[code]) for i, c in per_piece.items()} if random_access else None
            streams[name] = TableStream(self, served, int(counts[code]), batch_size, piece_rows)
        return streams

    def full_precision(self, split: str) -> Iterator[Batch] | None:
        """A split's rows as the file holds them, in float64, read again piece by piece where
        training reads float32: what the least-squares reference is computed from."""
        if self.dtype == np.float64:
            return None  # the served rows are the file's own values
        return self._float64_rows(split)

    def _float64_rows(self, split: str) -> Iterator[Batch]:
        code = SPLITS.index("train" if split in self.measured_on_training_rows else split)
        for _, start, values, labels in self.pieces(epoch=None, dtype=np.float64):
            rows = values[
                self.kept_rows(values) & (self.split_codes_at(start, len(values), labels) == code)
            ]
            yield (torch.from_numpy(rows[:, : self.n_features]),
                   torch.from_numpy(rows[:, self.n_features :]))  # fmt: skip

    def _checking_pass(
        self, pieces: Iterator[Piece], visit: Callable[[int, np.ndarray, np.ndarray], None]
    ) -> np.ndarray:
        """Check every piece and hand its kept rows and their split codes to `visit(index, rows,
        codes)`; returns the rows of each split. Missing values (under missing=error) are counted
        to the end, to say how many rows have them; a table that leaves no training rows, or a
        constant feature, is an error."""
        counts = np.zeros(len(SPLITS), dtype=np.int64)
        low = np.full(self.n_features, np.inf)
        high = np.full(self.n_features, -np.inf)
        missing, first_missing = 0, None
        for index, start, values, labels in pieces:
            if self.missing == "error":
                bad_rows = self._missing_rows(values)
                missing += int(bad_rows.sum())
                if bad_rows.any() and first_missing is None:
                    first_missing = (start, values)
                if missing:
                    continue
            keep = self.checked_rows(start, values)
            codes = self.split_codes_at(start, len(values), labels)
            kept = values if keep.all() else values[keep]
            visit(index, kept, codes[keep])
            counts += np.bincount(codes[keep], minlength=len(SPLITS))
            if len(kept):
                low = np.minimum(low, kept[:, : self.n_features].min(axis=0))
                high = np.maximum(high, kept[:, : self.n_features].max(axis=0))
        if first_missing is not None:
            self._raise_missing(missing, *first_missing)
        if not counts.any():
            raise self._nothing_left()
        if self.refuse_constant:
            self._check_not_constant(np.stack([low, high]))
        if counts[0] == 0:
            raise self._no_training_rows()
        self._check_enough_training_rows(counts)
        self.measured_on_training_rows = tuple(
            name for name, count in zip(SPLITS[1:], counts[1:], strict=True) if not count
        )
        return counts

    def pieces(
        self, epoch: int | None, only: set[int] | None = None, dtype: np.dtype | None = None
    ) -> Iterator[Piece]:
        """The table piece by piece, as `dtype` (None: what training reads); with an `epoch`,
        Parquet's and .npy's pieces come in a per-epoch shuffled order (a CSV can only be read
        from its start); `only`: just those pieces (Parquet, .npy)."""
        dtype = dtype or self.dtype
        try:
            if self.is_csv:
                yield from self._csv_pieces(dtype)
            elif self.is_parquet:
                yield from self._parquet_pieces(epoch, only, dtype)
            else:
                yield from self._numpy_pieces(epoch, only, dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
            raise _readable(err, self.path) from err
        except (KeyError, ValueError) as err:  # columns gone, a memory map past the file's end
            raise ConfigError(
                f"data.path={self.path} changed while the run read it ({first_line(err)}): put "
                "back the table the run started with, then resume it (ckpt_path=<its folder>)"
            ) from err

    def _csv_pieces(self, dtype: type) -> Iterator[Piece]:
        """Pieces of about PIECE_ROWS rows, joined from small blocks: pyarrow's reader holds some
        36 blocks in flight (measured: 39 MB at 1 MB blocks, 579 MB at 16 MB, equally fast), while
        a piece is the window rows are shuffled in, so it stays as large as a Parquet slice."""
        import pyarrow.csv as csv

        options = _csv_options(self.path, self.read_columns)
        options["read_options"] = csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
        start, index = 0, 0
        blocks: list[tuple[np.ndarray, np.ndarray | None]] = []
        with csv.open_csv(self.path, **options) as reader:
            for batch in itertools.chain(reader, [None]):
                if batch is not None:
                    first = start + sum(len(values) for values, _ in blocks)
                    blocks.append((self._numbers(batch, dtype, first), self._labels(batch)))
                held = sum(len(values) for values, _ in blocks)
                if blocks and (held >= PIECE_ROWS or batch is None):
                    values, labels = zip(*blocks, strict=True)
                    joined = None if labels[0] is None else np.concatenate(labels)
                    yield index, start, np.concatenate(values), joined
                    start, index, blocks = start + held, index + 1, []

    def _parquet_pieces(
        self, epoch: int | None, only: set[int] | None, dtype: type
    ) -> Iterator[Piece]:
        import pyarrow.parquet as pq

        groups = self._row_groups
        for index in self._order(len(groups), epoch, only):
            file, group, first = groups[index]
            # A row group is decoded in slices, its column chunks read through a small buffer
            # rather than whole (measured on 1M-row groups: 122 MB of pyarrow's memory at most,
            # not 182, and faster): memory stays near that of a slice, however large the file's
            # row groups are.
            reader = pq.ParquetFile(file, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
            batches = reader.iter_batches(
                batch_size=PIECE_ROWS, row_groups=[group], columns=self.read_columns
            )
            for batch in batches:
                yield index, first, self._numbers(batch, dtype, first), self._labels(batch)
                first += len(batch)

    def _numpy_pieces(
        self, epoch: int | None, only: set[int] | None, dtype: type
    ) -> Iterator[Piece]:
        array = _numpy_array(self.path)
        n_pieces = -(-len(array) // PIECE_ROWS)
        for index in self._order(n_pieces, epoch, only):
            start = int(index) * PIECE_ROWS
            rows = np.asarray(array[start : start + PIECE_ROWS, self._numpy_columns], dtype)
            yield int(index), start, rows, None

    def _order(self, n_pieces: int, epoch: int | None, only: set[int] | None) -> list[int]:
        order = np.arange(n_pieces)
        if epoch is not None:
            order = np.random.default_rng(derived_seed(self.seed, epoch)).permutation(n_pieces)
        return [int(i) for i in order if only is None or i in only]

    # -- checks, shared by both ways of reading

    def _numbers(self, batch: pa.RecordBatch, dtype: np.dtype, start: int) -> np.ndarray:
        """The run's columns as one row-major array of `dtype`, empty cells as NaN: the design's
        matrix then the targets, or the columns themselves, converted by pyarrow in one call; a
        column of text is an error. `start`: the batch's first row in the table."""
        if not batch.num_rows:
            return np.empty((0, len(self.columns)), dtype=dtype)
        if self.table_design is None:
            return self._numeric(batch.select(self.columns), dtype)
        features = self.table_design.matrix(
            batch, dtype, lambda row: f"data.path={self.path}: {self._row_name(start + row)}"
        )
        return np.hstack([features, self._numeric(batch.select(self.target_names), dtype)])

    def _numeric(self, columns: pa.RecordBatch, dtype: np.dtype) -> np.ndarray:
        if self._checked_schema is None or not columns.schema.equals(self._checked_schema):
            self._check_numeric(columns.schema)  # once per schema, not per batch: 2,000 columns
            self._checked_schema = columns.schema
        if self._all_floating:
            # Columns of one floating type convert to a tensor directly; a cast of each column
            # first costs 20x more (measured: 87 ms per block of 47 rows x 2,000 columns).
            return np.asarray(columns.to_tensor(null_to_nan=True)).astype(dtype, copy=False)
        as_dtype = pa.schema([(name, pa.from_numpy_dtype(dtype)) for name in columns.schema.names])
        # Unsafe: integers beyond float32's 2**24 (money, populations) are rounded as decimals
        # are, not refused; training may read float32, the reference reads the file's float64.
        return np.asarray(columns.cast(as_dtype, safe=False).to_tensor(null_to_nan=True))

    def _check_numeric(self, schema: pa.Schema) -> None:
        numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_null)
        for field in schema:
            if not any(is_kind(field.type) for is_kind in numeric):
                role = "data.target" if field.name in self.target_names else "data.features"
                advice = (
                    "a target is a number" if role == "data.target"
                    else f"leave it out, or encode it (data.categorical=[{field.name}])"
                )  # fmt: skip
                raise ConfigError(
                    f"{role}: column {field.name!r} of {self.path} holds {field.type} values, "
                    f"not numbers; {advice}"
                )
        kinds = set(schema.types)
        self._all_floating = len(kinds) == 1 and pa.types.is_floating(next(iter(kinds)))

    def _labels(self, batch: pa.RecordBatch) -> np.ndarray | None:
        if not self.split_column:
            return None
        return np.asarray(batch.column(self.split_column).cast(pa.string()).to_pylist(), object)

    def checked_rows(self, start: int, values: np.ndarray) -> np.ndarray:
        """The rows to keep: all, or those without a missing value (`missing=drop`); a missing
        value under `missing=error`, or a non-finite one, is an error naming its row."""
        bad_rows = self._missing_rows(values)
        if bad_rows.any() and self.missing == "error":
            self._raise_missing(int(bad_rows.sum()), start, values)
        keep = ~bad_rows
        infinite = np.isinf(values) & keep[:, None]
        if infinite.any():
            row, column = np.argwhere(infinite)[0]
            overflow = (
                " (or a number beyond float32's 3.4e38, which trainer.precision=64-true reads)"
                if values.dtype == np.float32
                else ""
            )
            raise ConfigError(
                f"data.path={self.path}: {self._row_name(start + int(row))}, column "
                f"{self.columns[column]!r} is {values[row, column]}, not a finite "
                f"{values.dtype} number{overflow}"
            )
        return keep

    def kept_rows(self, values: np.ndarray) -> np.ndarray:
        """The rows to keep in a pass after the checking pass, which found no bad value: only
        `missing=drop` removes any."""
        if self.missing == "drop":
            return ~self._missing_rows(values)
        return np.ones(len(values), dtype=bool)

    @staticmethod
    def _missing_rows(values: np.ndarray) -> np.ndarray:
        return np.isnan(values).any(axis=1)  # pyarrow reads empty cells and NaN/NA as nulls

    def _raise_missing(self, count: int, start: int, values: np.ndarray) -> None:
        """`values`: the rows holding the first missing value, from table row `start`."""
        missing = np.isnan(values)
        row = int(np.argmax(missing.any(axis=1)))
        column = self.columns[int(np.argmax(missing[row]))]
        raise ConfigError(
            f"data.path={self.path}: {count} rows have missing values, the first is "
            f"{self._row_name(start + row)} (column {column!r}); drop them with data.missing=drop"
        )

    def split_codes_at(self, start: int, n_rows: int, labels: np.ndarray | None) -> np.ndarray:
        if labels is None:
            return split_codes(start, n_rows, self.fractions, self.seed)
        codes = np.full(n_rows, -1, dtype=np.int8)
        for code, name in enumerate(SPLITS):
            codes[labels == name] = code
        if (codes < 0).any():
            row = int(np.argmax(codes < 0))
            raise ConfigError(
                f"data.split_column={self.split_column}: {self._row_name(start + row)} holds "
                f"{labels[row]!r}; expected one of {', '.join(SPLITS)}"
            )
        return codes

    def _check_not_constant(self, features: np.ndarray) -> None:
        """`features`: the kept rows (or, streamed, each column's minimum and maximum)."""
        constant = [
            name
            for name, column in zip(self.feature_names, features.T, strict=True)
            if len(column) and np.all(column == column[0])
        ]
        if constant:
            raise ConfigError(
                f"data.features: {', '.join(repr(name) for name in constant)} of {self.path} "
                "holds one value in every row; it carries no information, so leave it out "
                "with data.features=[...]"
            )

    def _nothing_left(self) -> ConfigError:
        return ConfigError(
            f"data.missing=drop: every row of {self.path} has a missing value in "
            f"{', '.join(self.columns)}; nothing is left to train on"
        )

    def _check_enough_training_rows(self, counts: np.ndarray) -> None:
        """Rows held out for val and test must leave least squares a training split it can fit
        with standard errors: features + 2 rows. Fitting on every row is the user's choice, and
        may be underdetermined (the summary then says the reference is not unique)."""
        needed = self.n_features + 2
        if counts[0] >= needed or not counts[1:].any():
            return
        raise ConfigError(
            f"data.train_fraction={self.fractions[0]:g}: the training split of {self.path} has "
            f"{counts[0]} rows (val {counts[1]}, test {counts[2]}), fewer than the {needed} that "
            f"{self.n_features} features need (features + 2); raise data.train_fraction, or fit "
            "on every row with data.train_fraction=1 data.val_fraction=0 data.test_fraction=0"
        )

    def _no_training_rows(self) -> ConfigError:
        return ConfigError(
            f"data.train_fraction: no rows of {self.path} fall in the train split; "
            "raise data.train_fraction or add rows"
        )

    def _row_name(self, row: int) -> str:
        """A row as a user finds it in the file: CSV line numbers count the header line."""
        if self.is_csv:
            return f"row {row + 1} (line {row + 2})"
        return f"row {row + 1}"


class TableStream:
    """One split of a table read piece by piece (Parquet row groups, CSV blocks), never whole.

    Each epoch reads the pieces (Parquet's in a per-epoch shuffled order; a CSV's in file order,
    the only order it can be read in), keeps the split's rows, shuffles them within the piece and
    serves whole batches (see TableStreamLoader for how DDP processes share them).
    """

    def __init__(
        self,
        source: TableSource,
        split: str,
        n_rows: int,
        batch_size: int,
        piece_rows: dict[int, int] | None = None,
    ) -> None:
        self.source = source
        self.code = SPLITS.index(split)
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.piece_rows = piece_rows  # the split's rows per piece, where pieces can be read alone

    def shares(self, world_size: int) -> list[set[int]] | None:
        """Pieces for each of `world_size` processes to read alone, balanced by their rows (the
        largest piece first to the process with the fewest rows); None where pieces cannot be
        read alone (CSV) or a process would get fewer rows than there are batches."""
        if self.piece_rows is None or world_size == 1:
            return None
        shares: list[set[int]] = [set() for _ in range(world_size)]
        totals = [0] * world_size
        for index in sorted(self.piece_rows, key=lambda i: (-self.piece_rows[i], i)):
            rank = totals.index(min(totals))
            shares[rank].add(index)
            totals[rank] += self.piece_rows[index]
        n_batches = -(-max(totals) // self.batch_size)
        return shares if min(totals) >= n_batches else None

    def rows(self, epoch: int | None, only: set[int] | None = None) -> Iterator[np.ndarray]:
        """The split's rows (features then targets, as training reads them), piece by piece,
        read ahead of the caller by a background thread."""
        return prefetched(self._rows(epoch, only))

    def _rows(self, epoch: int | None, only: set[int] | None) -> Iterator[np.ndarray]:
        for _, start, values, labels in self.source.pieces(epoch, only):
            keep = self.source.kept_rows(values) & (
                self.source.split_codes_at(start, len(values), labels) == self.code
            )
            index = np.flatnonzero(keep)
            if epoch is not None:  # shuffled within the piece: one gather picks and orders
                index = np.random.default_rng(
                    derived_seed(self.source.seed, epoch, start)
                ).permutation(index)
            if len(index):
                yield np.take(values, index, axis=0)

    def loader(
        self, shuffle_seed: int | None, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> TableStreamLoader:
        # The shuffler only carries the epoch (Lightning sets it); the pieces' order and the rows'
        # order within each come from (seed, epoch).
        sampler = EpochShuffler(1, shuffle_seed) if shuffle_seed is not None else None
        return TableStreamLoader(self, sampler, device, rank, world_size)


class TableStreamLoader:
    """Whole batches of a TableStream; `sampler` (Lightning sets its epoch) shuffles, None keeps
    the table's order. Every process sees its rows once per epoch, in the same number of batches:

    - Parquet and .npy under DDP: each process reads only its own pieces (`TableStream.shares`)
      and splits their rows into that many batches of nearly equal size;
    - otherwise (one process, or a CSV): global batches of batch_size x world_size rows, each
      process taking every world_size-th row (every process reads the whole table); a last global
      batch too small to give every process a row joins the one before, as in memory.
    """

    batch_sampler = None

    def __init__(self, stream: TableStream, sampler: EpochShuffler | None, device: torch.device,
                 rank: int, world_size: int) -> None:  # fmt: skip
        self.stream = stream
        self.sampler = sampler
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.shares = stream.shares(world_size)

    def __len__(self) -> int:
        if self.shares is not None:
            totals = [sum(self.stream.piece_rows[i] for i in share) for share in self.shares]
            return -(-max(totals) // self.stream.batch_size)
        step = self.stream.batch_size * self.world_size
        batches = max(1, -(-self.stream.n_rows // step))
        if batches > 1 and self.stream.n_rows - (batches - 1) * step < self.world_size:
            batches -= 1
        return batches

    def __iter__(self) -> Iterator[Batch]:
        epoch = None if self.sampler is None else self.sampler.epoch
        if self.shares is not None:
            yield from self._own_pieces(epoch)
            return
        step = self.stream.batch_size * self.world_size
        total, emitted, held = len(self), 0, 0
        pending: deque[np.ndarray] = deque()
        for chunk in self.stream.rows(epoch):
            pending.append(chunk)
            held += len(chunk)
            while held >= step and emitted < total - 1:
                yield self._share(_take(pending, step))
                held -= step
                emitted += 1
        if held:
            yield self._share(_take(pending, held))

    def _own_pieces(self, epoch: int | None) -> Iterator[Batch]:
        mine = self.shares[self.rank]
        rows = sum(self.stream.piece_rows[i] for i in mine)
        n_batches = len(self)
        sizes = np.diff([k * rows // n_batches for k in range(n_batches + 1)])
        pending: deque[np.ndarray] = deque()
        held, emitted = 0, 0
        for chunk in self.stream.rows(epoch, only=mine):
            pending.append(chunk)
            held += len(chunk)
            while emitted < n_batches and held >= sizes[emitted]:
                yield self._rows_as_batch(_take(pending, int(sizes[emitted])))
                held -= int(sizes[emitted])
                emitted += 1

    def _share(self, rows: np.ndarray) -> Batch:
        return self._rows_as_batch(rows[self.rank :: self.world_size])

    def _rows_as_batch(self, rows: np.ndarray) -> Batch:
        mine = torch.from_numpy(np.ascontiguousarray(rows))
        n_features = self.stream.source.n_features
        return (to_device(mine[:, :n_features], self.device),
                to_device(mine[:, n_features:], self.device))  # fmt: skip


class TableDataModule(RegressionDataModule):
    """The DataModule over a TableSource, built from the flat `data.*` keys of
    `conf/data/table.yaml` (saved as its hyper-parameters)."""

    def __init__(
        self,
        *,
        path: str,
        target: Any = None,
        features: Sequence[Any] | None = None,
        formula: str | None = None,
        categorical: Sequence[Any] | None = None,
        intercept: bool = True,
        design: dict[str, Any] | None = None,
        split_column: str | None = None,
        missing: str = "error",
        precision: str = "32-true",
        train_fraction: float,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        **serving: Any,
    ) -> None:
        """`serving`: how RegressionDataModule serves the rows (batch_size, shuffle, streaming,
        steps_per_execution). `design`: a trained model's, applied rather than fitted (eval.py
        scoring another table)."""
        source = TableSource(
            path, target, features, split_column, missing,
            (train_fraction, val_fraction, test_fraction), seed, precision,
            formula=formula, categorical=categorical, intercept=intercept, design=design,
            streaming=bool(serving.get("streaming")),
        )  # fmt: skip
        super().__init__(source, seed=seed, **serving)
        self.save_hyperparameters()


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def _take(pending: deque[np.ndarray], n_rows: int) -> np.ndarray:
    """The first `n_rows` rows of the queued chunks, removed from the queue: views where a chunk
    holds them all, a copy only across a chunk's end (never the whole queue again)."""
    parts = []
    while n_rows:
        head = pending[0]
        if len(head) <= n_rows:
            parts.append(pending.popleft())
            n_rows -= len(head)
        else:
            parts.append(head[:n_rows])
            pending[0] = head[n_rows:]
            n_rows = 0
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
