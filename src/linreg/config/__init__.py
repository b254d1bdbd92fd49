"""Typed schemas for the YAML configs in `conf/`, and the value checks types cannot express.

Each YAML option file names its schema in its defaults list (`/schema_<group>_<name>@_here_`), so a
mistyped key or a value of the wrong type is rejected by Hydra at composition, with the key named,
before any work starts. This module imports nothing heavy: `train.py --help` stays fast.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from linreg.errors import ConfigError


@dataclass
class DataConfig:
    _target_: str = "linreg.data.synthetic.SyntheticRegressionDataModule"
    n_samples: int = MISSING
    n_features: int = MISSING
    n_targets: int = MISSING
    noise_std: float = MISSING
    feature_scale: float = MISSING
    feature_offset: float = MISSING
    train_fraction: float = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    batch_size: int = MISSING
    shuffle: bool = True
    streaming: bool = False
    seed: int = MISSING
    steps_per_execution: int = 1


@dataclass
class ModelConfig:
    _target_: str = "linreg.models.module.LinearRegressionModule"
    steps_per_execution: int = 1
    monitor: str = "val/loss"


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING
    weight_decay: float = MISSING


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = MISSING
    eps: float = MISSING
    amsgrad: bool = MISSING


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = MISSING
    eps: float = MISSING
    momentum: float = MISSING
    centered: bool = MISSING


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True


@dataclass
class CosineConfig(SchedulerConfig):
    T_max: int = MISSING
    eta_min: float = MISSING


@dataclass
class StepConfig(SchedulerConfig):
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class PlateauConfig(SchedulerConfig):
    mode: str = MISSING
    factor: float = MISSING
    patience: int = MISSING
    threshold: float = MISSING
    min_lr: float = MISSING


@dataclass
class TrainerConfig:
    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = MISSING
    devices: Any = MISSING
    num_nodes: int = 1
    strategy: str = "auto"
    max_epochs: int = MISSING
    precision: str = MISSING
    deterministic: bool = MISSING
    log_every_n_steps: int = MISSING
    check_val_every_n_epoch: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    # Lightning reads an int as a number of batches and a float as a fraction: keep both (Any).
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    overfit_batches: Any = 0
    fast_dev_run: int = 0
    profiler: Any = None
    plugins: Any = None
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    default_root_dir: str = "${paths.output_dir}"


@dataclass
class PathsConfig:
    output_dir: str = MISSING


@dataclass
class ExportConfig:
    enabled: bool = True
    filename: str = "model.onnx"
    opset: int = 20
    verify_batch_size: int = 37
    atol: float = 1e-5
    rtol: float = 1e-6


@dataclass
class TrainConfig:
    """The composed run config; groups whose options differ in shape have per-option schemas."""

    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: TrainerConfig = MISSING
    logger: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    paths: PathsConfig = MISSING
    export: ExportConfig = field(default_factory=ExportConfig)
    seed: int = 42
    objective: str = "val/loss"
    ckpt_path: str | None = None
    task_name: str = "train"


@dataclass
class EvalConfig:
    """`eval.py`: which checkpoint, and where; the data comes from the run's own config."""

    ckpt_path: str = MISSING
    accelerator: str = "cpu"
    task_name: str = "eval"


def register_configs() -> None:
    """Put the schemas where the YAML files' defaults lists look for them."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="eval_schema", node=EvalConfig)
    for group, name, node in [
        ("data", "synthetic", DataConfig),
        ("model", "linear", ModelConfig),
        ("optimizer", "sgd", SGDConfig),
        ("optimizer", "adam", AdamConfig),
        ("optimizer", "rmsprop", RMSpropConfig),
        ("scheduler", "cosine", CosineConfig),
        ("scheduler", "step", StepConfig),
        ("scheduler", "plateau", PlateauConfig),
        ("trainer", "trainer", TrainerConfig),
        ("paths", "paths", PathsConfig),
    ]:
        # Stored as plain configs, not groups, so `--help` lists only the options users choose.
        store.store(name=f"schema_{group}_{name}", node=node)


def resumed_run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """Hydra's run folder: a resumed run (ckpt_path set) continues in the folder it came from."""
    if not ckpt_path:
        return new_run_dir
    from linreg.runs import run_dir_of  # imports torch: only paid when resuming

    return str(run_dir_of(ckpt_path))


def saved_config_subdir(ckpt_path: str | None, timestamp: str) -> str:
    """Where Hydra saves the composed config: a resume must not overwrite the run's original."""
    return f".hydra/resumed/{timestamp}" if ckpt_path else ".hydra"


register_configs()
OmegaConf.register_new_resolver("linreg.run_dir", resumed_run_dir, replace=True)
OmegaConf.register_new_resolver("linreg.config_subdir", saved_config_subdir, replace=True)

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
OBJECTIVES = ("val/loss", "val/mse", "val/mae")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def _require(ok: bool, key: str, value: Any, expectation: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {expectation}")


def split_sizes(n_samples: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Rows in the train, val and test splits; the test split takes what rounding leaves over."""
    n_train = math.floor(n_samples * fractions[0])
    n_val = math.floor(n_samples * fractions[1])
    return n_train, n_val, n_samples - n_train - n_val


def validate(cfg: DictConfig) -> None:
    """Reject values that are well-typed but meaningless, naming the key, before anything runs."""
    _validate_data(cfg.data)
    _validate_optimizer(cfg.optimizer)
    _validate_trainer(cfg.trainer)
    _validate_steps_per_execution(cfg.model.steps_per_execution, cfg.trainer)
    _require(
        cfg.objective in OBJECTIVES,
        "objective",
        cfg.objective,
        f"choose one of {', '.join(OBJECTIVES)} (validation metrics where lower is better)",
    )
    # numpy's generators, which Lightning seeds too, take 0 <= seed < 2**32.
    _require(0 <= cfg.seed < 2**32, "seed", cfg.seed, f"must be between 0 and {2**32 - 1}")
    export = cfg.export
    _require(export.atol > 0, "export.atol", export.atol, "must be > 0")
    _require(export.rtol >= 0, "export.rtol", export.rtol, "must be >= 0")
    _require(
        export.verify_batch_size >= 1,
        "export.verify_batch_size",
        export.verify_batch_size,
        "must be >= 1",
    )


def _validate_data(data: DictConfig) -> None:
    for key in ("n_samples", "n_features", "n_targets", "batch_size"):
        _require(data[key] >= 1, f"data.{key}", data[key], "must be >= 1")
    _require(data.noise_std >= 0, "data.noise_std", data.noise_std, "must be >= 0")
    _require(data.feature_scale > 0, "data.feature_scale", data.feature_scale, "must be > 0")
    fractions = (data.train_fraction, data.val_fraction, data.test_fraction)
    for name, value in zip(("train", "val", "test"), fractions, strict=True):
        _require(0 < value < 1, f"data.{name}_fraction", value, "must be between 0 and 1")
    if abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            "data.train_fraction, data.val_fraction and data.test_fraction must add up to 1, got "
            f"{' + '.join(f'{f:g}' for f in fractions)} = {sum(fractions):g}"
        )
    if not data.streaming and in_memory_bytes(data) > physical_memory_bytes():
        raise ConfigError(f"data.n_samples={data.n_samples} {too_large_message(data)}")
    n_train, n_val, n_test = split_sizes(data.n_samples, fractions)
    _require(
        min(n_val, n_test) >= 1,
        "data.n_samples",
        data.n_samples,
        f"too few rows for the val/test splits ({n_val} val, {n_test} test rows)",
    )
    _require(
        n_train > data.n_features,
        "data.n_features",
        data.n_features,
        f"needs fewer features than training rows ({n_train}) for a unique least-squares fit; "
        "raise data.n_samples or lower data.n_features",
    )


def in_memory_bytes(data: DictConfig) -> int:
    """Roughly what an in-memory split of the data takes: the float32 rows, and once more for the
    training split's shuffle buffers."""
    return 2 * data.n_samples * (data.n_features + data.n_targets) * 4


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def too_large_message(data: DictConfig) -> str:
    return (
        f"needs about {in_memory_bytes(data) / 1e9:.3g} GB in memory (this machine has "
        f"{physical_memory_bytes() / 1e9:.3g} GB); draw the rows as they are needed with "
        "data.streaming=true"
    )


def _validate_optimizer(optimizer: DictConfig) -> None:
    _require(optimizer.lr > 0, "optimizer.lr", optimizer.lr, "must be > 0")
    _require(
        optimizer.weight_decay >= 0,
        "optimizer.weight_decay",
        optimizer.weight_decay,
        "must be >= 0",
    )
    if "momentum" in optimizer:
        _require(optimizer.momentum >= 0, "optimizer.momentum", optimizer.momentum, "must be >= 0")
    if "betas" in optimizer:
        betas = list(optimizer.betas)
        _require(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "optimizer.betas",
            betas,
            "must be two numbers in [0, 1)",
        )


def _validate_trainer(trainer: DictConfig) -> None:
    _require(
        trainer.accelerator in ACCELERATORS,
        "trainer.accelerator",
        trainer.accelerator,
        f"choose one of {', '.join(ACCELERATORS)}",
    )
    _require(
        str(trainer.precision) in PRECISIONS,
        "trainer.precision",
        trainer.precision,
        f"choose one of {', '.join(PRECISIONS)}",
    )
    _require(trainer.max_epochs >= 1, "trainer.max_epochs", trainer.max_epochs, "must be >= 1")
    _require(
        trainer.log_every_n_steps >= 1,
        "trainer.log_every_n_steps",
        trainer.log_every_n_steps,
        "must be >= 1",
    )
    _require(
        trainer.check_val_every_n_epoch >= 1,
        "trainer.check_val_every_n_epoch",
        trainer.check_val_every_n_epoch,
        "must be >= 1",
    )
    # The best checkpoint, the plateau scheduler and the divergence check all watch val/loss.
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer[key]
        _require(
            value is None or value > 0,
            f"trainer.{key}",
            value,
            "must be > 0 (a fraction or a number of batches): every stage needs at least one batch",
        )


def _validate_steps_per_execution(steps: int, trainer: DictConfig) -> None:
    _require(steps >= 1, "model.steps_per_execution", steps, "must be >= 1")
    if steps == 1:
        return
    # Options that Lightning applies at every optimizer step, which it only sees in automatic
    # optimization (model.steps_per_execution=1).
    needs_automatic = [
        ("trainer.gradient_clip_val", trainer.gradient_clip_val, not trainer.gradient_clip_val),
        ("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches,
         trainer.accumulate_grad_batches == 1),
        ("trainer.precision", trainer.precision, str(trainer.precision) != "16-mixed"),
    ]  # fmt: skip
    for key, value, ok in needs_automatic:
        _require(
            ok,
            key,
            value,
            "Lightning applies it at every optimizer step, so it needs "
            f"model.steps_per_execution=1 (now {steps})",
        )
