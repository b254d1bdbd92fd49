"""What a table's columns become before the network: the model matrix of a formula, built by
formulaic, fitted on the training rows and kept with the model as plain values.

Without `data.formula` a run builds the obvious formula: every feature column as it is, where
text, boolean and dictionary columns (and those named in `data.categorical`) are categorical,
treatment-coded against their first level (`region[T.south]`). A formula's categories and
stateful transforms (`center(x)`) are learnt once, on the training rows; validation, test, eval
and predict rows are encoded with that saved state, and a level the training rows never had is
refused. The network's own bias is the intercept: the matrix never holds an `Intercept` column.

formulaic (with pandas) is imported only for a table that needs a design: a table of numbers goes
to the network as it is.
"""

from __future__ import annotations

import keyword
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linreg.errors import ConfigError, first_line

INTERCEPT = "Intercept"
_CATEGORICAL_CALL = re.compile(r"\bC\(\s*`?([^`,)]+?)`?\s*[,)]")


def is_categorical(kind: pa.DataType) -> bool:
    """Column types a design encodes as categories without being asked: text, booleans and
    dictionaries (pandas' categoricals, as Parquet stores them)."""
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_dictionary(kind)
    )


def obvious_formula(columns: Sequence[str], categorical: Iterable[str]) -> str:
    """Every column as a term; `categorical` ones (and, since formulaic reads booleans as 0/1,
    any the caller names) wrapped in C(). Names that are not identifiers are quoted."""
    forced = set(categorical)
    terms = [f"C({_quoted(name)})" if name in forced else _quoted(name) for name in columns]
    return " + ".join(terms)


def categorical_calls(formula: str) -> set[str]:
    """The columns a formula names in C(...): categorical whatever their type."""
    return {match.group(1) for match in _CATEGORICAL_CALL.finditer(formula)}


def _quoted(name: str) -> str:
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"`{name}`"


def formula_sides(formula: str) -> tuple[list[str], str]:
    """`formula`'s left side (the target columns it names; none without a `~`) and its right."""
    from formulaic import Formula

    lhs, tilde, rhs = formula.rpartition("~") if "~" in formula else ("", "", formula)
    try:
        targets = [str(term) for term in Formula(f"0 + {lhs}") if str(term) != "1"] if tilde else []
        Formula(rhs)  # its syntax, before any data is read
    except Exception as err:  # formulaic's parser raises many types
        raise ConfigError(f"data.formula={formula}: {first_line(err)}") from None
    return targets, rhs.strip()


def mentioned(columns: Iterable[str], formula: str) -> list[str]:
    """The columns a formula's text names (a superset of what it reads: formulaic knows the
    variables inside a stateful transform, `center(x)`, only once it has evaluated it)."""
    return [
        name
        for name in columns
        if f"`{name}`" in formula or re.search(rf"(?<![\w.`]){re.escape(name)}(?![\w`])", formula)
    ]


@dataclass(frozen=True)
class Design:
    """A fitted model matrix: which table columns it reads (`columns`), which matrix columns it
    gives (`names`, what the network takes), and the state that rebuilds it on new rows."""

    formula: str  # the right-hand side, as formulaic reads it (with `- 1` through the origin)
    columns: list[str]
    names: list[str]
    intercept: bool = True
    transform_state: dict[str, Any] = field(default_factory=dict)
    encoder_state: dict[str, Any] = field(default_factory=dict)  # factor: [kind, {categories}]

    def to_record(self) -> dict[str, Any]:
        """Plain values (JSON, YAML): saved in the checkpoint and the ONNX file's metadata."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], where: str) -> Design:
        try:
            return cls(**{key: record[key] for key in cls.__dataclass_fields__})
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{where}: its saved design is incomplete ({err}); retrain") from None

    @property
    def levels(self) -> dict[str, list[Any]]:
        """Each categorical factor's levels, the first the reference."""
        return {
            factor: state["categories"]
            for factor, (kind, state) in self.encoder_state.items()
            if kind == "categorical"
        }

    def note(self, rows: int) -> str:
        """What the network takes, for the run's notes."""
        described = []
        for factor, levels in self.levels.items():
            coded = {name.split(":")[0] for name in self.names}
            reference = not any(name in coded for name in
                                (f"{factor}[{levels[0]}]", f"{factor}[T.{levels[0]}]"))  # fmt: skip
            described.append(
                f"{factor}: {len(levels)} levels"
                + (f", {levels[0]!r} the reference" if reference else "")
            )
        categories = f" ({'; '.join(described)})" if described else ""
        states = {"levels": self.levels, "transforms": self.transform_state}
        learnt = [what for what, state in states.items() if state]
        return (
            f"the features are the {len(self.names)} columns of the formula {self.formula}"
            f"{categories}"
            + (
                f", its {' and '.join(learnt)} learnt on the {rows:,} training rows"
                if learnt
                else ""
            )
        )

    @cached_property
    def _spec(self) -> Any:
        from formulaic import ModelSpec
        from formulaic.parser.types import Factor

        encoder_state = {
            factor: (Factor.Kind(kind), dict(state))
            for factor, (kind, state) in self.encoder_state.items()
        }
        return ModelSpec(
            formula=self.formula,
            transform_state=_restored(self.transform_state),
            encoder_state=encoder_state,
            na_action="ignore",
        )

    @cached_property
    def _sources(self) -> np.ndarray:
        """(columns, names): whether each matrix column is built from each table column."""
        return np.array(
            [[bool(mentioned([column], name)) for name in self.names] for column in self.columns]
        )

    def matrix(
        self, batch: pa.RecordBatch | pa.Table, dtype: np.dtype, row_name: Callable[[int], str]
    ) -> np.ndarray:
        """The rows' model matrix as `dtype`; an empty cell makes the matrix columns built from
        its column NaN (the caller's missing-value rule applies to the row; its other cells are
        0). `row_name(i)` names the batch's i-th row in an error (an unseen level)."""
        from formulaic.errors import DataMismatchWarning

        frame = _frame(batch, self.columns)
        cells = frame.isna().to_numpy()
        empty = cells.any(axis=1)
        out = np.zeros((len(frame), len(self.names)), dtype=dtype)
        out[cells @ self._sources] = np.nan
        if empty.all():
            return out
        rows = frame[~empty] if empty.any() else frame
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning)  # log(0): named later
            try:
                built = self._spec.get_model_matrix(rows)
            except DataMismatchWarning as warning:
                raise self._unseen_level(rows, row_name, warning) from None
        kept = [built.columns.get_loc(name) for name in self.names]
        out[~empty] = built.to_numpy(dtype=np.float64)[:, kept]
        return out

    def _unseen_level(self, frame: Any, row_name: Callable[[int], str], warning: Warning) -> Any:
        for factor, levels in self.levels.items():
            column = _column_of(factor, frame.columns)
            if column is None:
                continue
            unseen = ~frame[column].isin(levels).to_numpy()
            if unseen.any():
                row = int(np.argmax(unseen))
                shown = ", ".join(map(str, levels[:20])) + (", ..." if len(levels) > 20 else "")
                value = frame[column].iloc[row]
                return ConfigError(
                    f"{row_name(int(frame.index[row]))} holds {column}={value!r}, "
                    f"a level the training rows do not have (they have {shown}); a model "
                    "predicts only levels it was trained on"
                )
        return ConfigError(f"{row_name(0)}: {first_line(warning)}")


def fit_design(
    formula: str,
    training: pa.Table,
    intercept: bool,
    key: str,
    levels: Mapping[str, list[Any]] | None = None,
) -> Design:
    """The design of `formula` (right-hand side) learnt from `training`, the training rows (no
    empty cells). Streamed, `training` is the first rows only and `levels` the categorical
    columns' levels over every training row; a stateful transform, which would learn from the
    first rows only, is then refused. `key` names the setting in errors."""
    from formulaic import model_matrix

    frame = _frame(training, training.column_names)
    for column, values in (levels or {}).items():
        frame[column] = frame[column].astype(_categories(values))
    rhs = formula if intercept else f"{formula} - 1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            built = model_matrix(rhs, frame, na_action="ignore", ensure_full_rank=True)
    except Exception as err:  # formulaic's parser and evaluator raise many types
        raise ConfigError(f"{key}={formula}: {first_line(err)}") from None
    spec = built.model_spec
    names = [name for name in spec.column_names if name != INTERCEPT]
    if intercept and INTERCEPT not in spec.column_names:
        raise ConfigError(
            f"{key}={formula} removes the intercept; fit through the origin with "
            "model.net.intercept=false, which removes it from the formula too"
        )
    if levels is not None and spec.transform_state:
        raise ConfigError(
            f"{key}={formula}: {', '.join(spec.transform_state)} learns from the rows it is "
            "given, and a streamed table (data.streaming=true) is never held whole; train in "
            "memory, or transform the column in the table"
        )
    if not names:
        raise ConfigError(f"{key}={formula} gives no columns to fit")
    return Design(
        formula=rhs,
        columns=[c for c in training.column_names if c in spec.required_variables],
        names=names,
        intercept=intercept,
        transform_state=_plain(spec.transform_state),
        encoder_state={
            factor: [kind.value, _plain({"categories": state["categories"]})]
            if "categories" in state
            else [kind.value, {}]
            for factor, (kind, state) in spec.encoder_state.items()
        },
    )


def categories_of(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's distinct values, nulls left out, sorted: what the levels pass collects."""
    return sorted(pc.unique(_decoded(column)).drop_null().to_pylist())


def _frame(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> Any:
    """The columns as a pandas frame, dictionaries decoded: a Parquet dictionary's unused
    values would otherwise become levels of their own."""
    import pandas as pd

    selected = batch.select(list(columns))
    arrays = [_decoded(selected.column(i)) for i in range(selected.num_columns)]
    return pd.DataFrame(
        {name: array.to_pandas() for name, array in zip(selected.column_names, arrays, strict=True)}
    )


def _decoded(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _categories(values: list[Any]) -> Any:
    import pandas as pd

    return pd.CategoricalDtype(categories=values)


def _column_of(factor: str, columns: Iterable[str]) -> str | None:
    """The table column a categorical factor encodes: `region`, or `C(region, ...)`."""
    columns = list(columns)
    if factor in columns:
        return factor
    match = _CATEGORICAL_CALL.match(factor)
    return match.group(1) if match and match.group(1) in columns else None


def _plain(value: Any) -> Any:
    """formulaic's state as JSON's values: numpy arrays and dicts with keys that are not text
    (a polynomial's coefficients by degree) tagged, so that `_restored` gives them back."""
    if isinstance(value, Mapping):
        if all(isinstance(key, str) for key in value):
            return {key: _plain(item) for key, item in value.items()}
        return {"__items__": [[_plain(key), _plain(item)] for key, item in value.items()]}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__items__" in value:
            return {_restored(key): _restored(item) for key, item in value["__items__"]}
        return {key: _restored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restored(item) for item in value]
    return value
