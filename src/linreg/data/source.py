"""The seam between a data source and everything else.

A source says how many features and targets it has, serves its train/val/test splits whole (in
memory) or as numbered batches (streamed), and may know the parameters that generated it. Code that
uses those parameters asks `ground_truth` and steps aside when it is None, as for a real table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from linreg.batches import Batch

if TYPE_CHECKING:
    from linreg.data.design import Design

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GroundTruth:
    """The parameters that generated the data: y = x @ weight.T + bias + noise_std * eps."""

    weight: Tensor  # (n_targets, n_features)
    bias: Tensor  # (n_targets,)
    noise_std: float


class SplitLoader(Protocol):
    """What Lightning iterates: batches on a device; `sampler` gets the epoch (`set_epoch`)."""

    sampler: Any
    batch_sampler: None

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...


class StreamedSplit(Protocol):
    """A split served a batch at a time, never held whole."""

    n_rows: int

    def loader(
        self, shuffle_seed: int | None, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> SplitLoader:
        """The split's batches for this process (of `world_size`), shuffled per epoch from
        `shuffle_seed`, or in the source's own order when it is None."""


class RegressionSource(ABC):
    """Rows of raw features and targets, split three ways, on the CPU."""

    n_features: int
    n_targets: int
    # Column names where the source has them (a table's header); None: positions only.
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    # What a table's columns become before the network (categorical columns, a formula); None:
    # the features are served as they are.
    table_design: Design | None = None
    # Stages with no rows of their own (a tiny table), which measure the training rows instead.
    measured_on_training_rows: tuple[str, ...] = ()

    @property
    def ground_truth(self) -> GroundTruth | None:
        """The generating parameters where the source knows them (synthetic data); else None."""
        return None

    def full_precision(self, split: str) -> Iterator[Batch] | None:
        """A split's rows in float64, where the source holds more precision than it serves (a
        table's file); None: the rows it serves are the data."""
        return None

    @abstractmethod
    def load(self) -> dict[str, Batch]:
        """Every split whole, by name (`SPLITS`)."""

    @abstractmethod
    def stream(self, batch_size: int) -> dict[str, StreamedSplit]:
        """Every split as numbered batches of `batch_size` rows, by name (`SPLITS`)."""
