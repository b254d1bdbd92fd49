"""Build what a run needs from its config: the data, the module around its network, the trainer.

Shared by `train.py`'s pipeline, `eval.py` and the benchmark; imports nothing of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from linreg.data.module import RegressionDataModule
from linreg.errors import ConfigError, LinregError, first_line
from linreg.models.module import OptimizerFactory, RegressionModule, SchedulerFactory
from linreg.models.network import Network
from linreg.models.schedules import build_scheduler

STANDARDIZATION_ROWS = 1_000_000


@dataclass
class Built:
    datamodule: RegressionDataModule
    module: RegressionModule
    trainer: pl.Trainer


def construct(spec: DictConfig, **kwargs: Any) -> Any:
    """Hydra's `instantiate` with every config value passed on as plain Python (list, dict):
    whatever an object saves of them (a DataModule's hyper-parameters in every checkpoint) must
    load again with `weights_only=True`, which refuses omegaconf's containers."""
    return instantiate(spec, _convert_="all", **kwargs)


def build(cfg: DictConfig) -> Built:
    """Data, module and trainer of a validated config (seeded by the caller)."""
    datamodule = build_datamodule(cfg.data)
    return Built(datamodule, build_module(cfg, datamodule), build_trainer(cfg))


def build_datamodule(data: DictConfig) -> RegressionDataModule:
    try:
        datamodule: RegressionDataModule = construct(data)
    except InstantiationException as err:  # Hydra's wrapper around the source's own error
        if isinstance(err.__cause__, LinregError):
            raise err.__cause__ from None
        raise
    datamodule.setup()
    return datamodule


def build_network(cfg: DictConfig, datamodule: RegressionDataModule) -> Network:
    """The config's network sized by the data, with its standardisations fitted on the training
    split only (streamed data is never whole: its
    statistics come from the first rows)."""
    try:
        source = datamodule.source
        network: Network = construct(cfg.model.net)(
            datamodule.n_features,
            datamodule.n_targets,
            feature_names=source.feature_names,
            target_names=source.target_names,
            design=source.table_design.to_record() if source.table_design else None,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.net: {first_line(err)}") from err
    features, targets = datamodule.sample("train", STANDARDIZATION_ROWS)
    network.fit_standardization(features, targets)
    return network


def build_module(cfg: DictConfig, datamodule: RegressionDataModule) -> RegressionModule:
    optimizer = construct(cfg.optimizer)
    scheduler = construct(cfg.scheduler) if cfg.scheduler else None
    check_factories(optimizer, scheduler)
    # The config's `net` is a factory; the module takes the network built from it.
    make_module = construct(cfg.model, _partial_=True)
    return make_module(net=build_network(cfg, datamodule), optimizer=optimizer, scheduler=scheduler)


def check_factories(optimizer: OptimizerFactory, scheduler: SchedulerFactory | None) -> None:
    """Builds the optimizer and scheduler once on a stand-in parameter, so a key they do not take
    (`+optimizer.foo=1`) is one line naming it, before any work, not a traceback mid-fit."""
    try:
        built = optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer: {first_line(err)}") from err
    try:
        if scheduler is not None:
            build_scheduler(scheduler, built, run_steps=lambda: 1)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scheduler: {first_line(err)}") from err


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    # A debug mode switches a callback off by setting it to null; a factory may decline (None).
    built = [construct(spec) for spec in cfg.callbacks.values() if spec is not None]
    callbacks = [callback for callback in built if callback is not None]
    loggers = [construct(spec) for spec in cfg.logger.values()]
    make_trainer = construct(cfg.trainer, _partial_=True)
    try:
        return make_trainer(callbacks=callbacks, logger=loggers or False)
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"trainer: {str(err).splitlines()[0]}") from err


def require_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU was found; "
            "run on the CPU with trainer.accelerator=cpu"
        )
