"""The data-source seam: a source with no ground truth (as a real table) trains, is scored
against least squares, and everything that needs a ground truth steps aside, saying why."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from linreg.batches import Batch
from linreg.data.module import RegressionDataModule
from linreg.data.source import SPLITS, RegressionSource, StreamedSplit
from linreg.diagnostics.ground_truth import GroundTruthError
from linreg.diagnostics.insights import TensorBoardInsights
from linreg.models.linear import LinearRegressor
from linreg.models.module import RegressionModule
from linreg.run.pipeline import score


class RowsSource(RegressionSource):
    """Fixed rows with no known generating parameters: what a user's table looks like."""

    def __init__(self, n_rows: int = 600) -> None:
        generator = torch.Generator().manual_seed(0)
        features = 10 + 3 * torch.randn(n_rows, 3, generator=generator)
        targets = features @ torch.tensor([[2.0], [-1.0], [0.5]]) + 4
        targets += 0.1 * torch.randn(n_rows, 1, generator=generator)
        self.n_features, self.n_targets = 3, 1
        bounds = (0, n_rows * 7 // 10, n_rows * 85 // 100, n_rows)
        self.rows = {
            name: (features[start:stop], targets[start:stop])
            for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)
        }

    def load(self) -> dict[str, Batch]:
        return self.rows

    def stream(self, batch_size: int) -> dict[str, StreamedSplit]:
        raise NotImplementedError("in memory only")


def test_a_source_without_ground_truth_trains_and_skips_what_needs_one(tmp_path: Path) -> None:
    datamodule = RegressionDataModule(RowsSource(), batch_size=32, seed=0)
    datamodule.setup()
    assert datamodule.ground_truth is None
    network = LinearRegressor(datamodule.n_features, datamodule.n_targets)
    network.fit_standardization(*datamodule.split("train"))
    module = RegressionModule(network, optimizer=lambda p: torch.optim.SGD(p, lr=0.05))
    trainer = pl.Trainer(
        max_epochs=8, accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, logger=TensorBoardLogger(tmp_path, name="tb", version=""),
        callbacks=[GroundTruthError(), TensorBoardInsights()],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert not any(name.startswith("params/") for name in trainer.callback_metrics)

    (test_metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    scored = score(network, datamodule, test_metrics)
    metrics = scored.metrics
    # Said once, in the summary's notes (no log line during fit).
    assert scored.notes == ["params/* not computed: the data source knows no ground truth"]
    assert not any(name.startswith("params/") for name in metrics)
    # The exact answer still judges the trained one: noise 0.1, so both near 0.01.
    assert metrics["reference/test_mse"] == pytest.approx(0.01, rel=0.3)
    assert metrics["test/mse"] < 1.05 * metrics["reference/test_mse"]

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == [
        "figures/test/predicted_vs_true",
        "figures/test/residuals",
    ]
