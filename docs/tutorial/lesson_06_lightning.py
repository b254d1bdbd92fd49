"""Lesson 6: from the plain loop to Lightning.

The project's own `SyntheticRegressionDataModule` (src/linreg/data.py) and `LinearRegressionModule`
(src/linreg/model.py) hold the same pieces as lesson 4's loop, sorted into hooks; the `Trainer` runs
the loop.

That service has a price per step (hooks, progress and logging bookkeeping), which for a model this
small costs more than the step itself. `steps_per_execution` (as in Keras) runs several optimizer
steps in one Lightning step: the same training, with the bookkeeping paid once per group.

Run: python docs/tutorial/lesson_06_lightning.py
"""

from __future__ import annotations

import functools
from typing import Any

import lightning.pytorch as pl
import torch

from linreg.cli import tidy_lightning_output
from linreg.data import SyntheticRegressionDataModule
from linreg.model import LinearRegressionModule
from linreg.reference import reference_mse

WHAT_LIGHTNING_DOES = [
    "the epoch and batch loops, zero_grad/backward/step, and the scheduler steps",
    "switching train/eval mode and turning gradients off for validation and testing",
    "moving batches to the accelerator, mixed precision, multi-GPU and multi-node (DDP)",
    "checkpoints of model, optimizer and loop state, and resuming from them",
    "calling loggers (TensorBoard, CSV) with every metric you `self.log`",
]


def small_datamodule(n_samples: int, n_features: int, seed: int) -> SyntheticRegressionDataModule:
    """The project's data: y = X w* + b* + noise, with raw features of scale 5 around 3."""
    datamodule = SyntheticRegressionDataModule(
        n_samples=n_samples,
        n_features=n_features,
        n_targets=1,
        noise_std=0.5,
        feature_scale=5.0,
        feature_offset=3.0,
        train_fraction=0.7,
        val_fraction=0.15,
        test_fraction=0.15,
        batch_size=64,
        seed=seed,
    )
    datamodule.setup()
    return datamodule


def plain_trainer(max_epochs: int) -> pl.Trainer:
    """A Trainer with nothing but the loop: no logger, checkpoints or progress bar."""
    tidy_lightning_output()  # drops Lightning's product tip and a dependency's deprecation notice
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def fit_and_test(
    datamodule: SyntheticRegressionDataModule, steps_per_execution: int
) -> tuple[float, int]:
    """(test MSE, Lightning steps) of 8 epochs of SGD with momentum."""
    pl.seed_everything(0, verbose=False)  # the same initial weights every time
    module = LinearRegressionModule(
        n_features=5,
        optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        steps_per_execution=steps_per_execution,
    )
    # Lesson 4 standardised by hand; here the model carries the statistics of the train split.
    module.fit_standardization(datamodule.split("train")[0])
    trainer = plain_trainer(max_epochs=8)
    trainer.fit(module, datamodule=datamodule)
    (test,) = trainer.test(module, datamodule=datamodule, verbose=False)
    return test["test/mse"], trainer.global_step


def main() -> dict[str, Any]:
    datamodule = small_datamodule(n_samples=4000, n_features=5, seed=0)
    test_mse, steps = fit_and_test(datamodule, steps_per_execution=1)
    reference = reference_mse(datamodule.batches("train"), datamodule.batches("test"))
    print(f"Lightning: test/mse {test_mse:.4f}; the closed-form least-squares fit: {reference:.4f}")
    print("What the Trainer took off our hands:")
    for item in WHAT_LIGHTNING_DOES:
        print(f"  - {item}")
    grouped_mse, grouped_steps = fit_and_test(datamodule, steps_per_execution=11)
    print(
        f"{steps} Lightning steps of one optimizer step each, or {grouped_steps} of 11 "
        f"(steps_per_execution=11): test/mse {test_mse:.6f} and {grouped_mse:.6f}"
    )
    return {
        "test_mse": test_mse,
        "reference_mse": reference,
        "steps": steps,
        "grouped_test_mse": grouped_mse,
        "grouped_steps": grouped_steps,
    }


if __name__ == "__main__":
    main()
