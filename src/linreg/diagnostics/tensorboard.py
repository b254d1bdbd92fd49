"""The TensorBoard logger the runs use: Lightning's, with a Scalars tab that starts with the run."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning adds an `epoch` value to every write; in TensorBoard it became a staircase chart
    at the top of the Scalars tab that says nothing the step axis and the epoch lines do not.
    Other loggers (CSV) keep it as a column."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
