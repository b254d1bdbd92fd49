"""Typed schemas for the YAML configs in `conf/`: a mistyped key or a value of the wrong type is
rejected by Hydra at composition, with the key named, before any work starts.

Each YAML option file names its schema in its defaults list (`/schema_<group>_<name>@_here_`); every
dataclass here with a `SCHEMA` name is stored under it by `register_schemas`, so a new option's
schema is one dataclass. A data source's schema also checks its own values (`check`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from linreg.config.validation import (
    check_split_options,
    check_width,
    in_memory_bytes,
    physical_memory_bytes,
    require,
    split_sizes,
    too_large_message,
)
from linreg.errors import ConfigError
from linreg.formats import MISSING_CHOICES, SUFFIXES, table_suffix


@dataclass
class DataConfig:
    """What every data source takes: how its rows are split and served. A source's schema
    extends it with the source's own keys and checks them in `check`."""

    _target_: str = MISSING
    train_fraction: float = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    batch_size: int = MISSING
    shuffle: bool = True
    streaming: bool = False
    seed: int = MISSING
    steps_per_execution: int = 1
    min_batches_per_epoch: int | None = None
    max_batches_per_epoch: int | None = None
    eval_batch_size: int | None = None

    @staticmethod
    def check(data: DictConfig) -> None:
        check_split_options(data)


@dataclass
class SyntheticDataConfig(DataConfig):
    SCHEMA: ClassVar[str] = "schema_data_synthetic"
    _target_: str = "linreg.data.synthetic.SyntheticRegressionDataModule"
    n_samples: int = MISSING
    n_features: int = MISSING
    n_targets: int = MISSING
    noise_std: float = MISSING
    feature_scale: float = MISSING
    feature_offset: float = MISSING
    feature_correlation: float = MISSING
    target_scale: float = MISSING

    @staticmethod
    def check(data: DictConfig) -> None:
        for key in ("n_samples", "n_features", "n_targets"):
            require(data[key] >= 1, f"data.{key}", data[key], "must be >= 1")
        DataConfig.check(data)
        require(data.noise_std >= 0, "data.noise_std", data.noise_std, "must be >= 0")
        require(data.feature_scale > 0, "data.feature_scale", data.feature_scale, "must be > 0")
        require(
            0 <= data.feature_correlation < 1,
            "data.feature_correlation",
            data.feature_correlation,
            "must be in [0, 1)",
        )
        require(data.target_scale > 0, "data.target_scale", data.target_scale, "must be > 0")
        check_width(data.n_features, "data.n_features", "the synthetic data")
        shape = (data.n_samples, data.n_features, data.n_targets)
        if not data.streaming and in_memory_bytes(*shape) > physical_memory_bytes():
            raise ConfigError(f"data.n_samples={data.n_samples} {too_large_message(*shape)}")
        fractions = (data.train_fraction, data.val_fraction, data.test_fraction)
        n_train, n_val, n_test = split_sizes(data.n_samples, fractions)
        require(
            min(n_val, n_test) >= 1,
            "data.n_samples",
            data.n_samples,
            f"too few rows for the val/test splits ({n_val} val, {n_test} test rows)",
        )
        require(
            n_train > data.n_features,
            "data.n_features",
            data.n_features,
            f"needs fewer features than training rows ({n_train}) for a unique least-squares "
            "fit; raise data.n_samples or lower data.n_features",
        )


@dataclass
class TableDataConfig(DataConfig):
    SCHEMA: ClassVar[str] = "schema_data_table"
    _target_: str = "linreg.data.table.TableDataModule"
    path: str = MISSING
    target: Any = None  # a name, an index, or a list of either; or the formula's left side
    features: Any = None
    formula: str | None = None
    categorical: Any = None
    intercept: bool = True
    design: Any = None  # set by eval.py: the trained model's design, applied to another table
    split_column: str | None = None
    missing: str = "error"
    precision: str = "32-true"

    @staticmethod
    def check(data: DictConfig) -> None:
        check_split_options(data, empty_eval_splits=True)
        path = Path(data.path)
        require(path.exists(), "data.path", data.path, "no such file or folder")
        require(
            table_suffix(path) is not None,
            "data.path",
            data.path,
            f"unsupported file type; use one of {', '.join(SUFFIXES)} or a folder of .parquet",
        )
        require(
            data.missing in MISSING_CHOICES,
            "data.missing",
            data.missing,
            f"choose one of {', '.join(MISSING_CHOICES)}",
        )


@dataclass
class ModelConfig:
    """The LightningModule; `net` is the network it trains, sized by the data at build time."""

    SCHEMA: ClassVar[str] = "schema_model"
    _target_: str = "linreg.models.module.RegressionModule"
    net: Any = MISSING
    steps_per_execution: int = 16  # see conf/model/linear.yaml
    monitor: str = "${objective}"
    lr_reference_features: int | None = None  # set by the stochastic optimizers' YAMLs


@dataclass
class NetConfig:
    _target_: str = MISSING
    _partial_: bool = True  # called with n_features and n_targets once the data is known


@dataclass
class LinearNetConfig(NetConfig):
    SCHEMA: ClassVar[str] = "schema_net_linear"
    _target_: str = "linreg.models.linear.LinearRegressor"
    intercept: bool = True  # see conf/model/linear.yaml


@dataclass
class MLPNetConfig(NetConfig):
    SCHEMA: ClassVar[str] = "schema_net_mlp"
    _target_: str = "linreg.models.mlp.MLP"
    hidden_sizes: list[int] = MISSING


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = MISSING


@dataclass
class DecayingOptimizerConfig(OptimizerConfig):
    weight_decay: float = MISSING


@dataclass
class SGDConfig(DecayingOptimizerConfig):
    SCHEMA: ClassVar[str] = "schema_optimizer_sgd"
    momentum: float = MISSING
    nesterov: bool = MISSING


@dataclass
class AdamConfig(DecayingOptimizerConfig):
    SCHEMA: ClassVar[str] = "schema_optimizer_adam"
    betas: list[float] = MISSING
    eps: float = MISSING
    amsgrad: bool = MISSING


@dataclass
class RMSpropConfig(DecayingOptimizerConfig):
    SCHEMA: ClassVar[str] = "schema_optimizer_rmsprop"
    alpha: float = MISSING
    eps: float = MISSING
    momentum: float = MISSING
    centered: bool = MISSING


@dataclass
class LBFGSConfig(OptimizerConfig):
    SCHEMA: ClassVar[str] = "schema_optimizer_lbfgs"
    max_iter: int = MISSING
    history_size: int = MISSING
    tolerance_grad: float = MISSING
    tolerance_change: float = MISSING
    line_search_fn: str | None = MISSING


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    _partial_: bool = True


@dataclass
class CosineConfig(SchedulerConfig):
    SCHEMA: ClassVar[str] = "schema_scheduler_cosine"
    warmup_fraction: float = MISSING
    final_lr_fraction: float = MISSING


@dataclass
class StepConfig(SchedulerConfig):
    SCHEMA: ClassVar[str] = "schema_scheduler_step"
    step_size: int = MISSING
    gamma: float = MISSING


@dataclass
class PlateauConfig(SchedulerConfig):
    SCHEMA: ClassVar[str] = "schema_scheduler_plateau"
    mode: str = MISSING
    factor: float = MISSING
    patience: int = MISSING
    threshold: float = MISSING
    min_lr: float = MISSING


@dataclass
class TrainerConfig:
    SCHEMA: ClassVar[str] = "schema_trainer_trainer"
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
    enable_model_summary: bool = False  # Lightning's layer table; the config tree has the model
    default_root_dir: str = "${paths.output_dir}"


@dataclass
class PathsConfig:
    SCHEMA: ClassVar[str] = "schema_paths_paths"
    output_dir: str = MISSING


@dataclass
class ExportConfig:
    enabled: bool = True
    filename: str = "model.onnx"
    options: dict[str, Any] = field(default_factory=lambda: {"onnx": {"opset": 20}})
    verify_batch_size: int = 37
    atol: float = 1e-5
    rtol: float = 1e-6


@dataclass
class TrainConfig:
    """The composed run config; groups whose options differ in shape have per-option schemas."""

    SCHEMA: ClassVar[str] = "train_schema"
    data: Any = MISSING  # the chosen source's schema
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
class EvalDataConfig:
    # Another table to score the model on (all of its rows); null: the run's own test split.
    path: str | None = None


@dataclass
class EvalConfig:
    """`eval.py`: which checkpoint, and where; the data comes from the run's own config, or
    another table (`data.path`) read with the model's own columns."""

    SCHEMA: ClassVar[str] = "eval_schema"
    ckpt_path: str = MISSING
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    accelerator: str = "cpu"
    task_name: str = "eval"


def data_schema(data: DictConfig) -> type[DataConfig]:
    """The schema of a data config: its own type, or for a config read back untyped from a run
    folder (a resume) the schema whose `_target_` it names."""
    schema = OmegaConf.get_type(data)
    if isinstance(schema, type) and issubclass(schema, DataConfig):
        return schema
    options = [cls for cls in _schemas() if issubclass(cls, DataConfig)]
    return next((cls for cls in options if cls._target_ == data.get("_target_")), DataConfig)


def _schemas() -> list[type]:
    return [
        node
        for node in vars(sys.modules[__name__]).values()
        if isinstance(node, type) and is_dataclass(node) and "SCHEMA" in vars(node)
    ]


def register_schemas() -> None:
    """Put the schemas where the YAML files' defaults lists look for them. Stored as plain configs,
    not groups, so `--help` lists only the options users choose."""
    store = ConfigStore.instance()
    for node in _schemas():
        store.store(name=node.SCHEMA, node=node)
