"""One training run, start to finish: the straight road that `train.py` drives, one stage each.

prepare (resume, validate) -> build (data, module, trainer) -> fit -> test the best checkpoint ->
score it (metrics, least-squares reference, ground truth where known) -> export it to ONNX and
verify the file with onnxruntime -> record (metrics.json, hparams, summary) -> the objective.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from omegaconf import DictConfig

from linreg.console import progress, show_config, show_summary, summary_markdown
from linreg.data.module import RegressionDataModule
from linreg.diagnostics.coefficients import coefficient_table
from linreg.diagnostics.ground_truth import parameter_error, unavailable_reason
from linreg.diagnostics.inference import conditioning_note, fit_statistics
from linreg.diagnostics.reference import (
    EXACT_FIT_FRACTION,
    error_and_variance,
    gap_to_reference,
    least_squares,
)
from linreg.errors import ConfigError, RunInterruptedError, first_line
from linreg.files import atomic_path, write_json_atomic
from linreg.models.metrics import evaluate, undefined_metrics
from linreg.models.module import RegressionModule
from linreg.models.network import Network, network_from_checkpoint
from linreg.run.build import Built, build, require_accelerator
from linreg.run.guard import check_config
from linreg.run.record import StageClock, flatten_hparams
from linreg.run.resume import resumed_config
from linreg.run.stopping import ConvergenceStop
from linreg.runs import CHECKPOINT_DIR, LAST_CHECKPOINT, load_checkpoint
from linreg.serve.export import export_model, verify_model
from linreg.serve.formats import options_of

log = logging.getLogger(__name__)


@dataclass
class Scored:
    metrics: dict[str, float]
    coefficients: dict[str, Any] | None
    notes: list[str]
    inference: dict[str, Any]  # the least-squares fit's statistics (R², F, ...)


@dataclass
class Tested:
    """What fit and test left: the best checkpoint, its score and test metrics."""

    best_path: Path
    best_score: float
    optimizer_steps: int
    test_metrics: dict[str, float]


def train(
    cfg: DictConfig, overrides: Sequence[str] = (), choices: Mapping[str, Any] | None = None
) -> float:
    """Run the whole pipeline for one composed config; returns the best value of the objective.

    `overrides` and `choices` (Hydra's, for the record and for resuming) say what the command
    line changed."""
    cfg = prepare(cfg, overrides, choices or {})
    clock = StageClock()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    with progress("reading the data and fitting the standardization"):
        built = build(cfg)  # reads the data: its refusals come before the run announces itself
    show_config(cfg, output_dir)
    clock.lap("setup")
    fit(built, cfg.ckpt_path, output_dir)
    clock.lap("fit")
    if built.trainer.fast_dev_run:
        return smoke_test(built, cfg.objective)
    tested = test_best(built)
    if not built.trainer.is_global_zero:
        return tested.best_score
    clock.lap("test")
    # Reloading the file (not reusing the module) scores and exports exactly what it holds.
    network = network_from_checkpoint(load_checkpoint(tested.best_path), tested.best_path)
    with progress("scoring the best checkpoint against the least-squares reference"):
        scored = score(network, built.datamodule, tested.test_metrics)
    scored.notes.extend(lr_note(built.module, cfg.optimizer.lr))
    clock.lap("evaluate")
    model_path = None
    if cfg.export.enabled:
        model_path = output_dir / cfg.export.filename
        with progress(f"exporting and verifying {model_path.name}"):
            scored.metrics["export/max_abs_diff"] = export_and_verify(
                network, built.datamodule, model_path, cfg.export
            )
    clock.lap("export")
    return record(cfg, built, tested, scored, model_path, clock, overrides, choices or {})


def prepare(cfg: DictConfig, overrides: Sequence[str], choices: Mapping[str, Any]) -> DictConfig:
    """The config to run: a resumed run's own (pointed at the folder in use), validated."""
    if cfg.ckpt_path:
        output_dir = cfg.paths.output_dir
        cfg = resumed_config(cfg, overrides, choices)
        cfg.paths.output_dir = output_dir
    check_config(cfg)
    require_accelerator(cfg.trainer.accelerator)
    return cfg


def fit(built: Built, ckpt_path: str | None, output_dir: Path) -> None:
    """Lightning's fit; Ctrl-C and SIGTERM end it with a one-line, resumable error."""
    trainer = built.trainer
    # Every checkpoint load refuses pickled code: checkpoints hold plain values only.
    try:
        with limits_explained(built.datamodule):
            trainer.fit(built.module, datamodule=built.datamodule, ckpt_path=ckpt_path,
                        weights_only=True)  # fmt: skip
    except SIGTERMException as stop:
        raise interrupted(trainer, output_dir, "SIGTERM", 128 + 15) from stop
    except SystemExit as stop:  # Lightning's answer to Ctrl-C: it stops the fit, then exits
        if not trainer.interrupted:
            raise
        raise interrupted(trainer, output_dir, "Ctrl-C", 128 + 2) from stop


@contextmanager
def limits_explained(datamodule: RegressionDataModule) -> Iterator[None]:
    """Lightning refuses a fraction of a stage's batches that keeps none of them; validation and
    test batches are large (data.eval_batch_size rows), so on a small split the fraction of its
    single batch is nothing: one line naming the key and the way out."""
    try:
        yield
    except MisconfigurationException as err:
        stage = re.search(r"`limit_(\w+)_batches`", str(err))
        if stage is None:
            raise
        raise ConfigError(
            f"trainer.limit_{stage.group(1)}_batches: {first_line(err)} (validation and test "
            f"batches hold data.eval_batch_size={datamodule.eval_batch_size} rows: a smaller "
            "one, or a whole number of batches, leaves batches to choose from)"
        ) from err


def smoke_test(built: Built, objective: str) -> float:
    """`debug=fast_dev_run`: Lightning saved no checkpoint, so test the module as it is, export
    nothing."""
    value = float(built.trainer.callback_metrics[objective])
    built.trainer.test(built.module, datamodule=built.datamodule, verbose=False)
    log.info(
        "fast_dev_run: one training step (%d batches), one batch of val and test ran; "
        "nothing was saved",
        built.module.execution.steps_per_execution,
    )
    return value


def test_best(built: Built) -> Tested:
    trainer = built.trainer
    # Read before testing: loading the best checkpoint restores the callback and module state
    # saved with it.
    checkpointing = trainer.checkpoint_callback
    best_path = Path(checkpointing.best_model_path)
    best_score = float(checkpointing.best_model_score)
    optimizer_steps = built.module.optimizer_steps
    with limits_explained(built.datamodule):
        (test_metrics,) = trainer.test(
            built.module, datamodule=built.datamodule, ckpt_path=best_path, verbose=False,
            weights_only=True,
        )  # fmt: skip
    return Tested(best_path, best_score, optimizer_steps, test_metrics)


def score(
    network: Network, datamodule: RegressionDataModule, test_metrics: Mapping[str, float]
) -> Scored:
    """The best network's metrics; the exact least-squares fit on the same training rows, its test
    MSE and (for a linear network) both sets of named coefficients; the distance from the ground
    truth where the data has one; and a note for each of those that could not be had."""
    metrics = {**evaluate(network, datamodule.batches("val"), prefix="val/"), **test_metrics}
    # From the source's own values (a table's float64), whatever precision training read.
    fit = least_squares(datamodule.reference_batches("train"), intercept=network.intercept)
    metrics["reference/test_mse"], variance = error_and_variance(
        fit, datamodule.reference_batches("test")
    )
    metrics["reference/test_gap"] = gap_to_reference(
        metrics["test/mse"], metrics["reference/test_mse"], variance
    )
    if fit.rss is not None and fit.rows:  # the floor of the training loss, from the fit itself
        metrics["reference/train_mse"] = float(fit.rss.mean()) / fit.rows
    in_sample = datamodule.source.measured_on_training_rows
    notes = []
    if in_sample:
        stages = " and ".join(f"{stage}/*" for stage in in_sample)
        notes.append(
            f"{stages} are measured on the training rows (in-sample: the split gives "
            f"{' and '.join(in_sample)} no rows); the least-squares statistics describe all "
            f"{fit.rows} of them"
        )
    design = datamodule.source.table_design
    if design is not None:
        notes.append(design.note(datamodule.rows("train")))
    split_rows = {stage: datamodule.rows(stage) for stage in ("val", "test")}
    notes += undefined_metrics(metrics, split_rows)
    notes += epoch_note(datamodule)
    if metrics["reference/test_mse"] < EXACT_FIT_FRACTION * variance:
        notes.append(
            "least squares fits the test rows (nearly) exactly (MSE "
            f"{metrics['reference/test_mse']:.3g}, under {EXACT_FIT_FRACTION:g} of the targets' "
            f"variance {variance:.4g}): the gap is measured against {EXACT_FIT_FRACTION:g} x that "
            "variance"
        )
    if not fit.unique:
        notes.append(
            f"the least-squares reference is not unique ({fit.rows} training rows, rank "
            f"{fit.rank} of {network.n_features} features): the minimum-norm one is shown"
        )
    notes += [note for note in (conditioning_note(fit),) if note]
    coefficients = coefficient_table(network, fit)
    reason = unavailable_reason(network, datamodule.ground_truth)
    if coefficients is None:
        notes.append(f"coefficients and params/* not computed: {reason}")
    elif reason:
        notes.append(f"params/* not computed: {reason}")
    else:
        metrics.update(parameter_error(network, datamodule.ground_truth))
    return Scored(metrics, coefficients, notes, fit_statistics(fit, network.target_names))


def epoch_note(datamodule: RegressionDataModule) -> list[str]:
    """Where an epoch was not one pass over the training split: how many batches it was."""
    served = datamodule.epoch_batches()
    if served is None:
        return []
    batches, per_pass, passes = served
    if batches < per_pass:
        return [
            f"each epoch trained on {batches} randomly drawn batches of the {per_pass:,} the "
            f"training split holds (data.max_batches_per_epoch={batches}; null for whole passes)"
        ]
    rows = datamodule.rows("train")
    return [
        f"each epoch trained on {batches} batches of up to {datamodule.batch_size} rows, drawn "
        f"in {passes:.3g} passes over the {rows:,}-row training split "
        f"(data.min_batches_per_epoch={batches}; null for one pass of {per_pass})"
    ]


def lr_note(module: RegressionModule, lr: float) -> list[str]:
    """Where the optimizer's lr was scaled to the number of features, by how much."""
    if module.lr_scale == 1.0:
        return []
    reference, features = module.lr_reference_features, module.net.n_features
    return [
        f"optimizer.lr={lr:g} was used as {lr * module.lr_scale:.3g} for {features} features "
        f"(x sqrt({reference}/{features}): model.lr_reference_features={reference}; null keeps "
        "the lr as is)"
    ]


def export_and_verify(
    network: Network, datamodule: RegressionDataModule, path: Path, export: DictConfig
) -> float:
    """Writes the model file only once it agrees with PyTorch on held-out rows; returns the
    largest difference."""
    held_out, _ = datamodule.sample("test", export.verify_batch_size)
    with atomic_path(path) as unverified:  # a rejected model never takes the name
        export_model(network, unverified, **options_of(path.name, export.get("options")))
        return verify_model(unverified, network, held_out, export.atol, export.rtol)


def _stopping(trainer: pl.Trainer) -> str:
    stops = [callback for callback in trainer.callbacks if isinstance(callback, ConvergenceStop)]
    return stops[0].outcome() if stops else "ran all epochs (early stopping is off)"


def record(
    cfg: DictConfig,
    built: Built,
    tested: Tested,
    scored: Scored,
    model_path: Path | None,
    clock: StageClock,
    overrides: Sequence[str],
    choices: Mapping[str, Any],
) -> float:
    """Hyper-parameters with final metrics for the loggers, metrics.json, the console summary."""
    trainer = built.trainer
    metrics = scored.metrics
    output_dir = Path(cfg.paths.output_dir)
    last_path = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    params = flatten_hparams(cfg, choices, overrides)
    log_hparams(trainer.loggers, params, cfg.objective, metrics, trainer.global_step)
    if scored.coefficients:
        log_coefficients(trainer.loggers, scored.coefficients, built.module.net,
                         trainer.global_step)  # fmt: skip
    summary = {
        "status": "completed",
        "objective": {
            "name": cfg.objective,
            "value": metrics[cfg.objective],
            "std_error": metrics.get(f"{cfg.objective}_std_error"),
        },
        "metrics": dict(sorted(metrics.items())),
        "test_mse_gap_to_reference": metrics["reference/test_gap"],
        "network": built.module.net.kind,
        "design": built.module.net.design,
        "coefficients": scored.coefficients,
        "least_squares_fit": scored.inference,
        "notes": scored.notes,
        "epochs": trainer.current_epoch,
        "stopping": _stopping(trainer),
        "global_step": trainer.global_step,
        "optimizer_steps": tested.optimizer_steps,
        "wall_time_s": clock.total(),
        "stage_times_s": clock.stages,
        "torch_threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "overrides": list(overrides),
        "paths": {
            "best_checkpoint": _relative(tested.best_path, output_dir),
            "last_checkpoint": _relative(last_path, output_dir) if last_path.is_file() else None,
            "model": _relative(model_path, output_dir) if model_path else None,
        },
    }
    # The record is written last: a run whose TensorBoard write fails (a full disk) has none.
    log_summary(trainer.loggers, summary, trainer.global_step)
    write_json_atomic(output_dir / "metrics.json", summary)
    with_tensorboard = any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
    show_summary(summary, output_dir, with_tensorboard)
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


def log_hparams(
    loggers: Sequence[Logger],
    params: dict[str, Any],
    objective: str,
    metrics: dict[str, float],
    step: int,
) -> None:
    """Hyper-parameters with the metrics that rank runs, so TensorBoard's HParams tab can compare
    them, in the sweep report's order (its columns sorted by name): `hp/objective` (the best
    checkpoint's `objective`, what the report ranks by), `hp/test/mse` and `hp/test_gap` (its
    excess over least squares); every other metric is already a scalar of the run."""
    final = {
        "hp/objective": metrics[objective],
        "hp/test/mse": metrics["test/mse"],
        "hp/test_gap": metrics["reference/test_gap"],
    }
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics=final, step=step)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")


def log_summary(loggers: Sequence[Logger], summary: dict[str, Any], step: int) -> None:
    """What the console's summary says, in TensorBoard: its tables in the Text tab, and least
    squares as scalars: `reference/train_mse` from the first step to the last (a line under the
    training loss, which it bounds), `reference/test_mse` and the gap at the last."""
    metrics = summary["metrics"]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            writer.add_text("summary", summary_markdown(summary), step)
            for at in (0, step):
                if "reference/train_mse" in metrics:
                    writer.add_scalar("reference/train_mse", metrics["reference/train_mse"], at)
            for name in ("reference/test_mse", "reference/test_gap"):
                writer.add_scalar(name, metrics[name], step)
            writer.flush()


def log_coefficients(
    loggers: Sequence[Logger], coefficients: dict[str, Any], network: Network, step: int
) -> None:
    """The best model's coefficients next to least squares, as standardised effects (by the
    training rows' standard deviations the network keeps), in a TensorBoard figure."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            from linreg.diagnostics.figures import coefficients_figure  # matplotlib: on use

            feature_sd = dict(zip(network.feature_names, network.standardize.std.tolist(),
                                  strict=True))  # fmt: skip
            target_sd = dict(zip(network.target_names, network.target_standardize.std.tolist(),
                                 strict=True))  # fmt: skip
            figure = coefficients_figure(coefficients, feature_sd, target_sd)
            logger.experiment.add_figure("figures/coefficients", figure, step)


def _relative(path: Path, root: Path) -> str:
    return str(path.resolve().relative_to(root.resolve()))
