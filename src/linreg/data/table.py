"""A user's own table as a data source: CSV or TSV (optionally .gz), Parquet (one file, or a folder
of files with one schema), or a NumPy .npy/.npz array.

Read with pyarrow; column names are kept end to end (a NumPy array's columns are `column_0`, ...,
and are chosen by index). A row's split depends only on the seed and its position in the table (or
on a split column), so the same rows land in the same split however the table is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from linreg.batches import Batch
from linreg.data.module import RegressionDataModule
from linreg.data.source import SPLITS, RegressionSource, StreamedSplit
from linreg.errors import ConfigError, first_line
from linreg.formats import CSV_SUFFIXES, PARQUET_SUFFIXES, table_suffix


def read_table(path: Path, key: str = "data.path") -> pa.Table:
    """The whole table, columns as the file names them."""
    suffix = table_suffix(path)
    try:
        if suffix in CSV_SUFFIXES:
            import pyarrow.csv as csv

            delimiter = "\t" if suffix.startswith(".tsv") else ","
            return csv.read_csv(path, parse_options=csv.ParseOptions(delimiter=delimiter))
        if suffix in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == "":
            return _read_parquet_folder(path, key)
        return _read_numpy(path, key)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{key}={path} is not a readable table: {first_line(err)}") from err


def _read_parquet_folder(folder: Path, key: str) -> pa.Table:
    import pyarrow.parquet as pq

    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(PARQUET_SUFFIXES))
    if not files:
        raise ConfigError(f"{key}={folder} is a folder with no .parquet files")
    first = pq.read_schema(files[0])
    for other in files[1:]:
        if not pq.read_schema(other).equals(first):
            raise ConfigError(
                f"{key}={folder}: {other.name} has other columns than {files[0].name} "
                f"({', '.join(pq.read_schema(other).names)} vs {', '.join(first.names)}); "
                "every file of a folder needs the same schema"
            )
    return pa.concat_tables(pq.read_table(file) for file in files)


def _read_numpy(path: Path, key: str) -> pa.Table:
    array = np.load(path, allow_pickle=False)
    if isinstance(array, np.lib.npyio.NpzFile):
        names = list(array.files)
        if len(names) != 1:
            raise ConfigError(
                f"{key}={path} holds {len(names)} arrays ({', '.join(names)}); save one 2-d "
                "array of rows (features and targets side by side)"
            )
        array = array[names[0]]
    if array.ndim != 2 or array.dtype.kind not in "fiub":
        raise ConfigError(
            f"{key}={path} holds a {array.dtype} array of shape {array.shape}; expected a 2-d "
            "array of numbers, one row per example"
        )
    return pa.table({f"column_{i}": array[:, i] for i in range(array.shape[1])})


def _names(table: pa.Table, wanted: Any, key: str, path: Path) -> list[str]:
    """Column names for `wanted` (a name, an index, or a list of either)."""
    names = table.column_names
    items = (
        list(wanted) if isinstance(wanted, Sequence) and not isinstance(wanted, str) else [wanted]
    )
    chosen = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(names) <= item < len(names):
                raise ConfigError(
                    f"{key}={item}: {path} has {len(names)} columns (indices 0 to "
                    f"{len(names) - 1}, or -1 for the last)"
                )
            chosen.append(names[item])
        elif str(item) in names:
            chosen.append(str(item))
        else:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise ConfigError(f"{key}={item}: no such column in {path}; its columns are {shown}")
    return chosen


def _split_codes(n_rows: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """0/1/2 (train/val/test) per row position: a hash of (seed, position), so a row's split does
    not depend on how the table is read or chunked."""
    with np.errstate(over="ignore"):  # splitmix64: wrapping arithmetic is the point
        state = np.arange(n_rows, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        state = state ^ (state >> np.uint64(31))
    uniform = (state >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    bounds = np.cumsum(fractions)[:2]
    return np.searchsorted(bounds, uniform, side="right").astype(np.int8)


class TableSource(RegressionSource):
    """Features and targets chosen by name from a table; no ground truth (none is known)."""

    def __init__(
        self,
        path: str,
        target: Any,
        features: Sequence[Any] | None,
        split_column: str | None,
        missing: str,
        fractions: tuple[float, float, float],
        seed: int,
    ) -> None:
        self.path = Path(path)
        self.missing = missing
        self.fractions = fractions
        self.seed = seed
        self.split_column = split_column
        self.table = read_table(self.path)
        self._check_unique_names()
        self.target_names = _names(self.table, target, "data.target", self.path)
        reserved = {*self.target_names, *([split_column] if split_column else [])}
        if split_column:
            _names(self.table, split_column, "data.split_column", self.path)
        if features is None:
            self.feature_names = [n for n in self.table.column_names if n not in reserved]
        else:
            self.feature_names = _names(self.table, features, "data.features", self.path)
            both = sorted(set(self.feature_names) & reserved)
            if both:
                raise ConfigError(f"data.features: {', '.join(both)} is also the target or split")
        if not self.feature_names:
            raise ConfigError(f"data.features: {self.path} has no columns left to use as features")
        self.n_features = len(self.feature_names)
        self.n_targets = len(self.target_names)

    def _check_unique_names(self) -> None:
        names = self.table.column_names
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(
                f"data.path={self.path} has duplicate column names: {', '.join(duplicates)}; "
                "rename them so each column can be chosen by name"
            )

    def load(self) -> dict[str, Batch]:
        columns = [*self.feature_names, *self.target_names]
        values = np.column_stack([self._numbers(name) for name in columns])
        keep = self._rows_to_keep(values, columns)
        self._check_finite(values, columns, keep)
        codes = self._split_codes(keep)
        features = values[:, : self.n_features]
        self._check_not_constant(features[keep])
        targets = values[:, self.n_features :]
        splits = {}
        for code, name in enumerate(SPLITS):
            rows = keep & (codes == code)
            splits[name] = (
                torch.from_numpy(features[rows].astype(np.float32)),
                torch.from_numpy(targets[rows].astype(np.float32)),
            )
        return self._with_training_rows_for_empty_splits(splits)

    def stream(self, batch_size: int) -> dict[str, StreamedSplit]:
        raise ConfigError(
            f"data.streaming=true: a table is read whole for now ({self.path}); "
            "set data.streaming=false"
        )

    def _numbers(self, name: str) -> np.ndarray:
        column = self.table.column(name)
        kind = column.type
        numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_null)
        if not any(is_kind(kind) for is_kind in numeric):  # null: a column with no values at all
            role = "data.target" if name in self.target_names else "data.features"
            raise ConfigError(
                f"{role}: column {name!r} of {self.path} holds {kind} values, not numbers; "
                "leave it out or encode it as numbers"
            )
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)

    def _rows_to_keep(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        # pyarrow reads empty cells and NaN/NA as nulls: both are missing values here.
        missing = np.isnan(values)
        bad_rows = missing.any(axis=1)
        if not bad_rows.any():
            return np.ones(len(values), dtype=bool)
        if self.missing == "drop":
            keep = ~bad_rows
            if not keep.any():
                raise ConfigError(
                    f"data.missing=drop: every row of {self.path} has a missing value in "
                    f"{', '.join(columns)}; nothing is left to train on"
                )
            return keep
        row = int(np.argmax(bad_rows))
        column = columns[int(np.argmax(missing[row]))]
        raise ConfigError(
            f"data.path={self.path}: {int(bad_rows.sum())} rows have missing values, the first "
            f"is {self._row_name(row)} (column {column!r}); drop them with data.missing=drop"
        )

    def _check_finite(self, values: np.ndarray, columns: list[str], keep: np.ndarray) -> None:
        infinite = np.isinf(values) & keep[:, None]
        if infinite.any():
            row, column = np.argwhere(infinite)[0]
            raise ConfigError(
                f"data.path={self.path}: {self._row_name(int(row))}, column "
                f"{columns[column]!r} is {values[row, column]}, not a finite number"
            )

    def _check_not_constant(self, features: np.ndarray) -> None:
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

    def _split_codes(self, keep: np.ndarray) -> np.ndarray:
        if not self.split_column:
            return _split_codes(len(keep), self.fractions, self.seed)
        labels = self.table.column(self.split_column).cast(pa.string()).to_pylist()
        codes = np.full(len(labels), -1, dtype=np.int8)
        for row, label in enumerate(labels):
            if label in SPLITS:
                codes[row] = SPLITS.index(label)
            elif keep[row]:
                raise ConfigError(
                    f"data.split_column={self.split_column}: {self._row_name(row)} holds "
                    f"{label!r}; expected one of {', '.join(SPLITS)}"
                )
        return codes

    def _with_training_rows_for_empty_splits(self, splits: dict[str, Batch]) -> dict[str, Batch]:
        """A tiny table may give no rows to validation or test (fraction 0): those stages then
        measure the training rows, and the run says so."""
        if len(splits["train"][0]) == 0:
            raise ConfigError(
                f"data.train_fraction: no rows of {self.path} fall in the train split; "
                "raise data.train_fraction or add rows"
            )
        self.measured_on_training_rows = tuple(n for n in ("val", "test") if not len(splits[n][0]))
        for name in self.measured_on_training_rows:
            splits[name] = splits["train"]
        return splits

    def _row_name(self, row: int) -> str:
        """A row as a user finds it in the file: CSV line numbers count the header line."""
        if table_suffix(self.path) in CSV_SUFFIXES:
            return f"row {row + 1} (line {row + 2})"
        return f"row {row + 1}"


class TableDataModule(RegressionDataModule):
    """The DataModule over a TableSource, built from the flat `data.*` keys of
    `conf/data/table.yaml` (saved as its hyper-parameters)."""

    def __init__(
        self,
        *,
        path: str,
        target: Any,
        features: Sequence[Any] | None = None,
        split_column: str | None = None,
        missing: str = "error",
        train_fraction: float,
        val_fraction: float,
        test_fraction: float,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        streaming: bool = False,
        steps_per_execution: int = 1,
    ) -> None:
        source = TableSource(
            path, target, features, split_column, missing,
            (train_fraction, val_fraction, test_fraction), seed,
        )  # fmt: skip
        super().__init__(
            source,
            batch_size=batch_size,
            seed=seed,
            shuffle=shuffle,
            streaming=streaming,
            steps_per_execution=steps_per_execution,
        )
        self.save_hyperparameters()
