"""Lesson 7: from the plain loop to Lightning.

Lightning sorts lesson 5's loop into hooks: a `LightningModule` says what one training step and
one validation step are and which optimizer to use; a `LightningDataModule` says where the batches
come from; the `Trainer` runs the loops around them. Below, both are written out in a few lines,
then the project's own versions (src/linreg/models/module.py, src/linreg/data/module.py) do the
same with more.

Run: python docs/tutorial/lesson_07_lightning.py
"""

from __future__ import annotations

import functools
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lesson_04_data import make_data
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from linreg.cli import tidy_lightning_output
from linreg.data.synthetic import SyntheticRegressionDataModule
from linreg.diagnostics.reference import reference_mse
from linreg.models.linear import LinearRegressor
from linreg.models.module import RegressionModule as ProjectModule


class RegressionModule(pl.LightningModule):
    """Lesson 5's step as hooks: the Trainer calls them and does the rest."""

    def __init__(self, n_features: int, lr: float) -> None:
        super().__init__()
        self.model = nn.Linear(n_features, 1)
        self.lr = lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        features, targets = batch
        loss = nn.functional.mse_loss(self.model(features), targets)
        self.log("train/loss", loss)
        return loss  # the Trainer calls zero_grad, backward and step with it

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        features, targets = batch  # already in eval mode, under no_grad
        self.log("val/loss", nn.functional.mse_loss(self.model(features), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class RegressionData(pl.LightningDataModule):
    """Lesson 4's preparation as hooks: set-up once, then a loader per stage."""

    def setup(self, stage: str) -> None:
        features, targets = make_data(4000, 5, noise_std=0.5, seed=0)
        train = slice(0, 3200)
        mean, std = features[train].mean(0), features[train].std(0)
        features = (features - mean) / std
        self.train_set = TensorDataset(features[train], targets[train])
        self.val_set = TensorDataset(features[3200:], targets[3200:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=64, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1024)


WHAT_LIGHTNING_DOES = [
    "the epoch and batch loops, zero_grad/backward/step, and the scheduler steps",
    "switching train/eval mode and turning gradients off for validation and testing",
    "moving batches to the accelerator, mixed precision, multi-GPU and multi-node (DDP)",
    "checkpoints of model, optimizer and loop state, and resuming from them",
    "calling loggers (TensorBoard, CSV) with every metric you `self.log`",
]


def plain_trainer(max_epochs: int) -> pl.Trainer:
    """A Trainer with nothing but the loop: no logger, checkpoints or progress bar."""
    tidy_lightning_output()  # drops Lightning's product tip and a dependency's deprecation notice
    return pl.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


def small_datamodule(
    n_samples: int, n_features: int, seed: int, steps_per_execution: int = 1
) -> SyntheticRegressionDataModule:
    """The project's data module: the same kind of rows, served as whole-batch slices (in groups
    of `steps_per_execution`, the module's value)."""
    datamodule = SyntheticRegressionDataModule(
        n_samples=n_samples, n_features=n_features, n_targets=1, noise_std=0.5,
        feature_scale=5.0, feature_offset=3.0, train_fraction=0.7, val_fraction=0.15,
        test_fraction=0.15, batch_size=64, seed=seed, steps_per_execution=steps_per_execution,
    )  # fmt: skip
    datamodule.setup()
    return datamodule


def fit_project_module(steps_per_execution: int) -> tuple[float, int, float]:
    """(test MSE, Lightning steps, fit seconds) of 8 epochs of SGD with momentum."""
    datamodule = small_datamodule(4000, 5, seed=0, steps_per_execution=steps_per_execution)
    pl.seed_everything(0, verbose=False)  # the same initial weights every time
    # Lesson 4 standardised by hand; here the network carries the statistics of the train split.
    network = LinearRegressor(n_features=5, n_targets=1)
    network.fit_standardization(*datamodule.split("train"))
    module = ProjectModule(
        network,
        optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        steps_per_execution=steps_per_execution,
    )
    trainer = plain_trainer(max_epochs=8)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - started
    (test,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return test["test/mse"], trainer.global_step, seconds


def plain_loop_seconds(datamodule: SyntheticRegressionDataModule, epochs: int) -> float:
    """Seconds of the same optimizer steps as `fit_project_module`'s, in lesson 5's plain loop."""
    network = LinearRegressor(n_features=5, n_targets=1)
    network.fit_standardization(*datamodule.split("train"))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
    features, targets = datamodule.split("train")
    batches = [(features[start : start + 64], targets[start : start + 64])
               for start in range(0, len(features), 64)]  # fmt: skip
    started = time.perf_counter()
    for _ in range(epochs):
        for features, targets in batches:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(network.standardized(features),
                                          network.target_standardize(targets))  # fmt: skip
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started


def main() -> dict[str, Any]:
    print("== A LightningModule and a LightningDataModule, written out ==")
    pl.seed_everything(0, verbose=False)
    inline = RegressionModule(n_features=5, lr=0.05)
    trainer = plain_trainer(max_epochs=8)
    trainer.fit(inline, datamodule=RegressionData())
    inline_val = float(trainer.callback_metrics["val/loss"])
    data = trainer.datamodule
    inline_exact = reference_mse([data.train_set.tensors], [data.val_set.tensors])
    above = 100 * (inline_val / inline_exact - 1)
    print(f"8 epochs: val/loss {inline_val:.4f}, {above:.1f} % above least squares on the same"
          f" rows, {inline_exact:.4f}")  # fmt: skip
    print("  (the noise floor, 0.25, is where least squares lands as the rows grow; a constant")
    print("  learning rate keeps SGD moving around the optimum: lesson 5's schedule shrinks it)")
    print("What the Trainer took off our hands:")
    for item in WHAT_LIGHTNING_DOES:
        print(f"  - {item}")

    print("\n== The project's module and data module ==")
    datamodule = small_datamodule(n_samples=4000, n_features=5, seed=0)
    test_mse, steps, one_step_s = fit_project_module(steps_per_execution=1)
    reference = reference_mse(datamodule.batches("train"), datamodule.batches("test"))
    print(f"linreg's RegressionModule: test/mse {test_mse:.4f}; least squares: {reference:.4f}")

    print("\n== What Lightning's service costs per step ==")
    grouped_mse, grouped_steps, grouped_s = fit_project_module(steps_per_execution=11)
    plain_s = plain_loop_seconds(datamodule, epochs=8)
    print(
        f"the Trainer's hooks and bookkeeping run once per Lightning step: {steps} steps took "
        f"{one_step_s:.2f} s, the same {steps} steps in a plain loop (lesson 5) {plain_s:.2f} s: "
        f"for a model this small, Lightning's share is {1 - plain_s / one_step_s:.0%} of the time."
    )
    print(
        f"The project's module (not Lightning: model.steps_per_execution in this project, after "
        f"Keras's option of that name) runs 11 optimizer steps per Lightning step: {grouped_steps} "
        f"Lightning steps took {grouped_s:.2f} s, the same training (test/mse {test_mse:.6f} and "
        f"{grouped_mse:.6f})"
    )

    # What tests/test_tutorial.py checks.
    return {
        "inline_val_loss": inline_val, "inline_reference_mse": inline_exact,
        "test_mse": test_mse, "reference_mse": reference, "plain_seconds": plain_s,
        "steps": steps, "grouped_test_mse": grouped_mse, "grouped_steps": grouped_steps,
        "seconds": (one_step_s, grouped_s),
    }  # fmt: skip


if __name__ == "__main__":
    main()
