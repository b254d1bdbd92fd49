"""The model files linreg writes and reads, one registry entry per format: a file's suffix names
the module that loads it and, for a format a run can export to, writes it.

A format's module defines `load(path) -> Predictor` and, where a run can export to it,
`write(network, path, **options)` (the options are `export.options.<suffix>`). It imports torch
and its exporter only inside `write`, so predict.py starts fast on any format. A new format is its
module plus one line in FORMATS.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from linreg.errors import LinregError

if TYPE_CHECKING:  # imported where a model has one: pyarrow.compute is not free to import
    from linreg.data.design import Design

FORMATS = {
    ".onnx": "linreg.serve.onnx_model",
    ".ckpt": "linreg.serve.checkpoint_model",
    ".pt": "linreg.serve.checkpoint_model",
    ".pth": "linreg.serve.checkpoint_model",
}


class ModelFileError(LinregError):
    """A model file that no format reads, or that its format cannot load."""


@dataclass
class Predictor:
    """A loaded model: how many features it takes, how many targets it gives, the numbers it
    computes in (float32, or float64 for a model trained under `trainer.precision=64-true`), the
    function, the column names it was trained on (None for a model saved without them) and its
    design where its features are a formula's matrix of the table's columns."""

    n_features: int
    n_targets: int
    dtype: np.dtype
    predict: Callable[[np.ndarray], np.ndarray]
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    design: Design | None = None

    @property
    def input_names(self) -> list[str] | None:
        """The table columns the model reads: its design's raw columns, or its features."""
        return self.design.columns if self.design else self.feature_names


def model_format(path: Path, key: str = "model") -> ModuleType:
    """The module of the format `path` is written in, chosen by its suffix."""
    module = FORMATS.get(path.suffix.lower())
    if module is None:
        raise ModelFileError(
            f"{key}={path}: no model format ends in {path.suffix or 'no suffix'!r}; "
            f"linreg reads {', '.join(FORMATS)}"
        )
    return importlib.import_module(module)


def options_of(filename: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings `export.options` holds for `filename`'s format, under its suffix (`onnx`);
    none where it holds none (a run saved before the key existed has no `export.options`)."""
    return dict((options or {}).get(Path(filename).suffix.lower().removeprefix(".")) or {})


def check_export(filename: str, options: Mapping[str, Any] | None) -> None:
    """Before any work: a run can write `filename`'s format (a checkpoint is only ever read), and
    that format takes its `export.options`."""
    path = Path(filename)
    write = getattr(model_format(path, "export.filename"), "write", None)
    if write is None:
        writable = [suffix for suffix, name in FORMATS.items()
                    if hasattr(importlib.import_module(name), "write")]  # fmt: skip
        raise ModelFileError(
            f"export.filename={filename}: a run does not export {path.suffix} files; "
            f"it exports {', '.join(writable)}"
        )
    key = f"export.options.{path.suffix.lower().removeprefix('.')}"
    try:
        inspect.signature(write).bind(None, path, **options_of(filename, options))
    except TypeError as err:
        taken = [name for name in inspect.signature(write).parameters][2:]
        raise ModelFileError(
            f"{key}: {path.suffix} files {err}; they take {', '.join(taken) or 'no options'}"
        ) from None


def load_predictor(path: Path, key: str = "model") -> Predictor:
    return model_format(path, key).load(path)
