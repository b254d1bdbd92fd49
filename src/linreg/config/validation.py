"""Checks of values that are well-typed but meaningless, each naming its key, before any work.

Types are checked by Hydra against the schemas (`linreg.config.schemas`); what types cannot say
(a fraction above 1, an unknown accelerator) is checked here. This module imports nothing heavy.
"""

from __future__ import annotations

import math
import os
from typing import Any

from omegaconf import DictConfig

from linreg.errors import ConfigError

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
OBJECTIVES = ("val/loss", "val/mse", "val/mae")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
# Optimizers whose step re-evaluates the loss through a closure (a line search).
CLOSURE_OPTIMIZERS = ("torch.optim.LBFGS",)


def require(ok: bool, key: str, value: Any, expectation: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {expectation}")


def split_sizes(n_samples: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Rows in the train, val and test splits; the test split takes what rounding leaves over."""
    n_train = math.floor(n_samples * fractions[0])
    n_val = math.floor(n_samples * fractions[1])
    return n_train, n_val, n_samples - n_train - n_val


def check_run_options(cfg: DictConfig) -> None:
    """Everything but the data, which its source's schema checks."""
    _validate_optimizer(cfg.optimizer)
    _validate_model(cfg.model)
    _validate_trainer(cfg.trainer)
    _validate_steps_per_execution(cfg.model.steps_per_execution, cfg.trainer, cfg.optimizer)
    require(
        cfg.objective in OBJECTIVES,
        "objective",
        cfg.objective,
        f"choose one of {', '.join(OBJECTIVES)} (validation metrics where lower is better)",
    )
    # numpy's generators, which Lightning seeds too, take 0 <= seed < 2**32.
    require(0 <= cfg.seed < 2**32, "seed", cfg.seed, f"must be between 0 and {2**32 - 1}")
    export = cfg.export
    require(export.atol > 0, "export.atol", export.atol, "must be > 0")
    require(export.rtol >= 0, "export.rtol", export.rtol, "must be >= 0")
    require(
        export.verify_batch_size >= 1,
        "export.verify_batch_size",
        export.verify_batch_size,
        "must be >= 1",
    )


def check_split_options(data: DictConfig, empty_eval_splits: bool = False) -> None:
    """The keys every data source shares: batch size and split fractions. `empty_eval_splits`:
    the source can measure validation and test on the training rows when they get none."""
    require(data.batch_size >= 1, "data.batch_size", data.batch_size, "must be >= 1")
    least = data.get("min_batches_per_epoch")
    require(least is None or least >= 1, "data.min_batches_per_epoch", least, "must be >= 1")
    most = data.get("max_batches_per_epoch")
    require(most is None or most >= 1, "data.max_batches_per_epoch", most, "must be >= 1")
    require(
        least is None or most is None or least <= most,
        "data.max_batches_per_epoch",
        most,
        f"must be >= data.min_batches_per_epoch={least}",
    )
    eval_batch = data.get("eval_batch_size")
    require(eval_batch is None or eval_batch >= 1, "data.eval_batch_size", eval_batch,
            "must be >= 1")  # fmt: skip
    fractions = (data.train_fraction, data.val_fraction, data.test_fraction)
    for name, value in zip(("train", "val", "test"), fractions, strict=True):
        if empty_eval_splits and name == "train":
            require(0 < value <= 1, f"data.{name}_fraction", value, "must be in (0, 1]")
        elif empty_eval_splits:
            require(0 <= value < 1, f"data.{name}_fraction", value, "must be in [0, 1)")
        else:
            require(0 < value < 1, f"data.{name}_fraction", value,
                    "must be between 0 and 1 (this data source keeps held-out splits: "
                    "split=all, every row for training, is for data=table)")  # fmt: skip
    if abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            "data.train_fraction, data.val_fraction and data.test_fraction must add up to 1, got "
            f"{' + '.join(f'{f:g}' for f in fractions)} = {sum(fractions):g}"
        )


def in_memory_bytes(n_rows: int, n_features: int, n_targets: int) -> int:
    """Roughly what in-memory data takes: the float32 rows, and once more for the training split's
    shuffle buffers."""
    return 2 * n_rows * (n_features + n_targets) * 4


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Bytes per (features + 1)^2 that a model's width costs whatever its rows: about six float64
# matrices of features x features (the least-squares moments and their eigenvectors, the
# decorrelation's correlation, eigenvectors and rotation, and the copies made on the way).
WIDTH_BYTES = 48


def check_width(n_features: int, key: str, what: str) -> None:
    """Refuses, before any row is read, a width whose feature-by-feature matrices alone exceed
    this machine's memory (100,000 columns: 480 GB): reading would only run out of memory."""
    needed = WIDTH_BYTES * (n_features + 1) ** 2
    if needed > physical_memory_bytes():
        raise ConfigError(
            f"{key}: {what} has {n_features:,} feature columns; a model that wide needs about "
            f"{needed / 1e9:,.0f} GB for its feature-by-feature matrices (least squares, "
            f"decorrelation), and this machine has {physical_memory_bytes() / 1e9:.3g} GB: choose "
            "fewer columns with data.features=[...]"
        )


def too_large_message(n_rows: int, n_features: int, n_targets: int) -> str:
    needed = in_memory_bytes(n_rows, n_features, n_targets)
    return (
        f"needs about {needed / 1e9:.3g} GB in memory (this machine has "
        f"{physical_memory_bytes() / 1e9:.3g} GB); draw the rows as they are needed with "
        "data.streaming=true"
    )


def _validate_optimizer(optimizer: DictConfig) -> None:
    require(optimizer.lr > 0, "optimizer.lr", optimizer.lr, "must be > 0")
    if "weight_decay" in optimizer:
        require(
            optimizer.weight_decay >= 0,
            "optimizer.weight_decay",
            optimizer.weight_decay,
            "must be >= 0",
        )
    if "momentum" in optimizer:
        require(optimizer.momentum >= 0, "optimizer.momentum", optimizer.momentum, "must be >= 0")
    if "betas" in optimizer:
        betas = list(optimizer.betas)
        require(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "optimizer.betas",
            betas,
            "must be two numbers in [0, 1)",
        )


def _validate_model(model: DictConfig) -> None:
    reference = model.lr_reference_features
    key = "model.lr_reference_features"
    require(reference is None or reference >= 1, key, reference, "must be >= 1, or null")


def _validate_trainer(trainer: DictConfig) -> None:
    require(
        trainer.accelerator in ACCELERATORS,
        "trainer.accelerator",
        trainer.accelerator,
        f"choose one of {', '.join(ACCELERATORS)}",
    )
    require(
        str(trainer.precision) in PRECISIONS,
        "trainer.precision",
        trainer.precision,
        f"choose one of {', '.join(PRECISIONS)}",
    )
    require(trainer.max_epochs >= 1, "trainer.max_epochs", trainer.max_epochs, "must be >= 1")
    require(
        trainer.log_every_n_steps >= 1,
        "trainer.log_every_n_steps",
        trainer.log_every_n_steps,
        "must be >= 1",
    )
    require(
        trainer.check_val_every_n_epoch >= 1,
        "trainer.check_val_every_n_epoch",
        trainer.check_val_every_n_epoch,
        "must be >= 1",
    )
    # The best checkpoint, the plateau scheduler and the divergence check all watch val/loss.
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer[key]
        require(
            value is None or value > 0,
            f"trainer.{key}",
            value,
            "must be > 0 (a fraction or a number of batches): every stage needs at least one batch",
        )


def _validate_steps_per_execution(steps: int, trainer: DictConfig, optimizer: DictConfig) -> None:
    from linreg.execution import unsupported_options

    require(steps >= 1, "model.steps_per_execution", steps, "must be >= 1")
    if optimizer._target_ in CLOSURE_OPTIMIZERS and steps != 1:
        raise ConfigError(
            f"model.steps_per_execution={steps} is invalid: {optimizer._target_} evaluates the "
            "loss several times per step through Lightning's closure, so it takes one "
            "optimizer step per Lightning step: set model.steps_per_execution=1 (as "
            "optimizer=lbfgs does)"
        )
    for key, value in unsupported_options(steps, trainer):
        raise ConfigError(
            f"{key}={value!r} is invalid: Lightning applies it at every optimizer step, so it "
            f"needs model.steps_per_execution=1 (now {steps})"
        )
