"""The LightningModule that trains and scores a `LinearRegressor` (loss, metrics, optimizers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MetricCollection
from torchmetrics.regression import (
    ExplainedVariance,
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
)

from linreg.data.synthetic import Batch, to_device
from linreg.models.linear import LinearRegressor

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


def with_loss(values: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Adds `<stage>/loss`: the training objective, MSE, under the name every stage shares."""
    return {**values, f"{prefix}loss": values[f"{prefix}mse"]}


class RunningLoss:
    """Row-weighted sums of the training loss, kept as float32 device tensors: no host sync per
    step, and no stalled sums under bf16/fp16 (a low-precision sum stops growing long before an
    epoch ends)."""

    def __init__(self) -> None:
        self.reset_epoch()

    def reset_epoch(self) -> None:
        self.epoch_sum: Tensor | float = 0.0
        self.window_sum: Tensor | float = 0.0
        self.epoch_rows = self.window_rows = 0

    def add(self, losses: Tensor, rows: Sequence[int]) -> None:
        """Batches' mean losses (1-d) over `rows[i]` rows each: a few device ops per call."""
        losses = losses.detach().float()
        if len(set(rows)) == 1:  # a Python factor: nothing is copied to the device
            weighted = losses.sum() * rows[0]
        else:  # a split's last, shorter batch, once per epoch: copied without waiting for it
            weighted = (
                losses * to_device(torch.tensor(rows, dtype=torch.float32), losses.device)
            ).sum()
        self.epoch_sum = self.epoch_sum + weighted
        self.window_sum = self.window_sum + weighted
        self.epoch_rows += sum(rows)
        self.window_rows += sum(rows)

    def window_mean(self) -> Tensor:
        mean = self.window_sum / self.window_rows
        self.window_sum, self.window_rows = 0.0, 0
        return mean

    def epoch_mean(self) -> Tensor:
        mean = self.epoch_sum / self.epoch_rows
        self.reset_epoch()
        return mean


def regression_metrics(prefix: str, sync_on_compute: bool = True) -> MetricCollection:
    """MSE, MAE, R2 and explained variance; `sync_on_compute` gathers DDP processes' states."""
    options = {"sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "mse": MeanSquaredError(**options),
            "mae": MeanAbsoluteError(**options),
            "r2": R2Score(**options),
            "explained_variance": ExplainedVariance(**options),
        },
        prefix=prefix,
    )


class LinearRegressionModule(pl.LightningModule):
    """MSE regression with torchmetrics for val/test and optimizer/scheduler factories from config.

    The factories are not saved as hyper-parameters: checkpoints hold plain values only and load
    with `torch.load(path, weights_only=True)`.

    `steps_per_execution` (as in Keras) runs that many optimizer steps, on as many consecutive
    batches, in each Lightning training step. For a model this small Lightning's own work per step
    costs more than the step itself; run K at a time, it is paid once per K. Lightning then counts
    executions: `global_step`, `log_every_n_steps`, the progress bar, TensorBoard's step axis and
    the batch limits count groups of K batches, and per-step hooks run once per group. 1 keeps
    Lightning's automatic optimization with every Trainer option.
    """

    def __init__(
        self,
        n_features: int,
        n_targets: int = 1,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        steps_per_execution: int = 1,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        # `monitor` only steers training: a saved model is the same model whatever it was.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "monitor"], logger=False)
        self.monitor = monitor  # what ReduceLROnPlateau watches
        self.regressor = LinearRegressor(n_features, n_targets)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.steps_per_execution = steps_per_execution
        self.automatic_optimization = steps_per_execution == 1
        self._executed_steps = 0  # optimizer steps taken in executions
        self._train_loss = RunningLoss()
        self.val_metrics = regression_metrics("val/")
        self.test_metrics = regression_metrics("test/")

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any]) -> LinearRegressionModule:
        """The module of a checkpoint dict, as `linreg.runs.load_checkpoint` returns it."""
        module = cls(**checkpoint["hyper_parameters"])
        module.load_state_dict(checkpoint["state_dict"])
        return module

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken so far (Lightning's `global_step` counts executions)."""
        return self.trainer.global_step if self.automatic_optimization else self._executed_steps

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["optimizer_steps"] = self.optimizer_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._executed_steps = checkpoint.get("optimizer_steps", 0)

    @property
    def example_input_array(self) -> Tensor:
        """An input for tracing the graph and for the model summary's sizes, in the parameters'
        dtype and device (true-precision settings such as `64-true` convert the module)."""
        return torch.zeros(2, self.hparams.n_features, dtype=self.dtype, device=self.device)

    def forward(self, features: Tensor) -> Tensor:
        # Data stays float32; a true-precision setting (`64-true`, `bf16-true`) converts the module.
        return self.regressor(features.to(self.dtype))

    def fit_standardization(self, train_features: Tensor) -> None:
        self.regressor.standardize.fit_(train_features)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        # Summed on the device; `self.log` (costly per call) runs only on the steps that Lightning
        # writes, with the mean loss since the last write.
        write_logs = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        if self.automatic_optimization:
            features, targets = batch
            loss = F.mse_loss(self(features), targets)
            self._train_loss.add(loss.reshape(1), [len(features)])
        else:
            loss = self._execute(batch)
            if batch_idx + 1 == self.trainer.num_training_batches:
                self._step_scheduler(after_validation=False)
        if write_logs:
            self.log("train/loss", self._train_loss.window_mean(), on_step=True, on_epoch=False)
        return loss

    def _execute(self, batches: list[Batch]) -> Tensor:
        """One optimizer step per batch; returns the batches' losses.

        Every step but the last is plain PyTorch. The last goes through Lightning
        (`manual_backward`, `LightningOptimizer.step`), which counts the execution as one step and
        runs the optimizer hooks (gradient-norm logging) once per execution.
        """
        lightning_optimizer = self.optimizers()
        optimizer = lightning_optimizer.optimizer
        strategy = self.trainer.strategy
        losses, rows = [], []
        for index, (features, targets) in enumerate(batches):
            loss = F.mse_loss(self(features), targets)
            optimizer.zero_grad(set_to_none=True)
            if index + 1 < len(batches):
                strategy.pre_backward(loss)  # under DDP: readies this backward's all-reduce
                loss.backward()
                optimizer.step()
            else:
                self.manual_backward(loss)
                lightning_optimizer.step()
            losses.append(loss.detach())
            rows.append(len(features))
        self._executed_steps += len(batches)
        losses = torch.stack(losses)
        self._train_loss.add(losses, rows)
        return losses

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # Throttled like Lightning's own step logging: the norm costs a pass over the gradients.
        if self.global_step % self.trainer.log_every_n_steps == 0:
            norms = [p.grad.norm() for p in self.parameters() if p.grad is not None]
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack(norms)))

    def on_train_epoch_start(self) -> None:
        # The rate this epoch trains with (epoch schedulers step before on_train_epoch_end).
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("train/lr", lr, sync_dist=True)  # the same in every process

    def on_train_epoch_end(self) -> None:
        # Epoch-level values are averaged over processes under DDP (a no-op in one process).
        self.log("train/epoch_loss", self._train_loss.epoch_mean(), sync_dist=True)
        if not self.automatic_optimization:
            self._step_scheduler(after_validation=True)

    def _step_scheduler(self, after_validation: bool) -> None:
        """Steps the per-epoch scheduler where automatic optimization would: after the last
        training batch, or for ReduceLROnPlateau after validation, on the metric it monitors."""
        scheduler = self.lr_schedulers()
        if scheduler is None or isinstance(scheduler, ReduceLROnPlateau) != after_validation:
            return
        if not after_validation:
            scheduler.step()
        elif self.monitor in self.trainer.callback_metrics:
            scheduler.step(self.trainer.callback_metrics[self.monitor])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        features, targets = batch
        self.val_metrics.update(self(features), targets)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics, "val/")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        features, targets = batch
        self.test_metrics.update(self(features), targets)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics, "test/")

    def _log_epoch_metrics(self, metrics: MetricCollection, prefix: str) -> None:
        values = with_loss(metrics.compute(), prefix)
        # Already global (torchmetrics syncs across processes); sync_dist only silences the check.
        self.log_dict(values, prog_bar=prefix == "val/", sync_dist=True)
        metrics.reset()

    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[Tensor, Tensor]], prefix: str) -> dict[str, float]:
        """The stage metrics over a whole split, outside any trainer (and without logging).

        Local to this process, which holds the whole split: under DDP only rank 0 calls this.
        """
        metrics = regression_metrics(prefix, sync_on_compute=False).to(self.device)
        for features, targets in batches:
            metrics.update(self(features.to(self.device)), targets.to(self.device))
        values = with_loss(metrics.compute(), prefix)
        return {name: float(value) for name, value in values.items()}

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("LinearRegressionModule needs an optimizer factory to train")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if not self.automatic_optimization:  # stepped by `_step_scheduler`
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        # `monitor` is only read by ReduceLROnPlateau; the others ignore it.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": self.monitor},
        }
