"""One training run, start to finish: the straight road that `train.py` drives.

validate -> seed -> build data, model, trainer -> fit -> test the best checkpoint -> export it to
ONNX -> verify the ONNX file with onnxruntime -> write metrics.json -> return val/loss for sweepers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from linreg.config import validate
from linreg.console import show_config, show_summary
from linreg.data.synthetic import SyntheticRegressionDataModule
from linreg.diagnostics.callbacks import parameter_error
from linreg.diagnostics.reference import reference_mse
from linreg.errors import ConfigError, RunInterruptedError, first_line
from linreg.files import atomic_path, write_json_atomic
from linreg.models.module import LinearRegressionModule, OptimizerFactory, SchedulerFactory
from linreg.run.record import StageClock, flatten_hparams
from linreg.run.resume import resumed_config
from linreg.runs import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    load_checkpoint,
)
from linreg.serve.export import export_onnx, verify_onnx

log = logging.getLogger(__name__)
STANDARDIZATION_ROWS = 1_000_000


def train(
    cfg: DictConfig, overrides: Sequence[str] = (), choices: Mapping[str, Any] | None = None
) -> float:
    """Run the whole pipeline for one composed config; returns the best `val/loss`.

    `overrides` and `choices` (Hydra's, for the record and for resuming) say what the command
    line changed."""
    if cfg.ckpt_path:
        output_dir = cfg.paths.output_dir
        cfg = resumed_config(cfg, overrides, choices or {})
        cfg.paths.output_dir = output_dir
    validate(cfg)
    require_accelerator(cfg.trainer.accelerator)
    clock = StageClock()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    show_config(cfg, output_dir)

    datamodule: SyntheticRegressionDataModule = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg)
    clock.lap("setup")

    # Every checkpoint load refuses pickled code: checkpoints hold plain values only.
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    except SIGTERMException as stop:
        raise interrupted(trainer, output_dir, "SIGTERM", 128 + 15) from stop
    except SystemExit as stop:  # Lightning's answer to Ctrl-C: it stops the fit, then exits
        if not trainer.interrupted:
            raise
        raise interrupted(trainer, output_dir, "Ctrl-C", 128 + 2) from stop
    clock.lap("fit")
    if trainer.fast_dev_run:
        # A smoke test of every stage: Lightning saved no checkpoint, so there is nothing to export.
        objective = float(trainer.callback_metrics[cfg.objective])
        trainer.test(module, datamodule=datamodule, verbose=False)
        log.info(
            "fast_dev_run: one training step (%d batches), one batch of val and test ran; "
            "nothing was saved",
            module.steps_per_execution,
        )
        return objective
    # Read before testing: loading the best checkpoint restores the callback and module state saved
    # with it.
    checkpointing = trainer.checkpoint_callback
    best_path, best_score = (
        Path(checkpointing.best_model_path),
        float(checkpointing.best_model_score),
    )
    last_path = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    optimizer_steps = module.optimizer_steps
    (test_metrics,) = trainer.test(
        module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True
    )
    if not trainer.is_global_zero:
        return best_score
    clock.lap("test")

    # Reloading the file (not reusing `module`) gives export exactly what the checkpoint holds.
    best = LinearRegressionModule.from_checkpoint(load_checkpoint(best_path))
    metrics = {**best.evaluate(datamodule.batches("val"), prefix="val/"), **test_metrics}
    metrics["reference/test_mse"] = reference_mse(
        datamodule.batches("train"), datamodule.batches("test")
    )
    metrics["params/weight_error"], metrics["params/bias_error"] = parameter_error(
        best.regressor, datamodule.ground_truth
    )
    clock.lap("evaluate")

    onnx_path = None
    if cfg.export.enabled:
        onnx_path = output_dir / cfg.export.filename
        held_out, _ = datamodule.sample("test", cfg.export.verify_batch_size)
        with atomic_path(onnx_path) as unverified:  # a rejected model never takes the name
            export_onnx(best.regressor, datamodule.hparams.n_features, unverified, cfg.export.opset)
            metrics["export/onnx_max_abs_diff"] = verify_onnx(
                unverified, best.regressor, held_out, cfg.export.atol, cfg.export.rtol
            )
    clock.lap("export")

    log_hparams(trainer.loggers, cfg, metrics)
    summary = {
        "status": "completed",
        "objective": {"name": cfg.objective, "value": metrics[cfg.objective]},
        "metrics": dict(sorted(metrics.items())),
        "test_mse_gap_to_reference": metrics["test/mse"] / metrics["reference/test_mse"] - 1,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "optimizer_steps": optimizer_steps,
        "wall_time_s": clock.total(),
        "stage_times_s": clock.stages,
        "torch_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "overrides": list(overrides),
        "paths": {
            "best_checkpoint": _relative(best_path, output_dir),
            "last_checkpoint": _relative(last_path, output_dir) if last_path.is_file() else None,
            "onnx": _relative(onnx_path, output_dir) if onnx_path else None,
        },
    }
    write_json_atomic(output_dir / "metrics.json", summary)
    show_summary(summary, output_dir)
    return metrics[cfg.objective]


def interrupted(
    trainer: pl.Trainer, output_dir: Path, by: str, exit_code: int
) -> RunInterruptedError:
    where = f"in epoch {trainer.current_epoch} at step {trainer.global_step}"
    last = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if last.is_file():
        return RunInterruptedError(
            f"stopped by {by} {where}; the last finished epoch is saved in {last}: resume with "
            f"`python train.py ckpt_path={output_dir}`",
            exit_code,
        )
    return RunInterruptedError(
        f"stopped by {by} {where}, before any epoch finished: nothing to resume", exit_code
    )


def require_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU was found; "
            "run on the CPU with trainer.accelerator=cpu"
        )


def build_module(
    cfg: DictConfig, datamodule: SyntheticRegressionDataModule
) -> LinearRegressionModule:
    """The model sized by the data, with standardisation fitted on the training split only."""
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    check_factories(optimizer, scheduler)
    module: LinearRegressionModule = instantiate(
        cfg.model,
        n_features=datamodule.hparams.n_features,
        n_targets=datamodule.hparams.n_targets,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    # Streamed data is never whole: its statistics come from the first rows of the train split.
    module.fit_standardization(datamodule.sample("train", STANDARDIZATION_ROWS)[0])
    return module


def check_factories(optimizer: OptimizerFactory, scheduler: SchedulerFactory | None) -> None:
    """Builds the optimizer and scheduler once on a stand-in parameter, so a key they do not take
    (`+optimizer.foo=1`) is one line naming it, before any work, not a traceback mid-fit."""
    try:
        built = optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer: {first_line(err)}") from err
    try:
        if scheduler is not None:
            scheduler(built)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scheduler: {first_line(err)}") from err


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    # A debug mode switches a callback off by setting it to null; a factory may decline (None).
    built = [instantiate(spec) for spec in cfg.callbacks.values() if spec is not None]
    callbacks = [callback for callback in built if callback is not None]
    loggers = [instantiate(spec) for spec in cfg.logger.values()]
    make_trainer = instantiate(cfg.trainer, _partial_=True)
    try:
        return make_trainer(callbacks=callbacks, logger=loggers or False)
    except (MisconfigurationException, ValueError, TypeError) as err:
        raise ConfigError(f"trainer: {str(err).splitlines()[0]}") from err


def log_hparams(loggers: Sequence[Logger], cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Hyper-parameters with the run's final metrics, so TensorBoard's HParams tab can rank runs."""
    params = flatten_hparams(cfg)
    final = {f"hp/{name}": value for name, value in metrics.items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")


def _relative(path: Path, root: Path) -> str:
    return str(path.resolve().relative_to(root.resolve()))
