"""The LightningModule: trains and scores whichever network it is given, with MSE, torchmetrics
metrics and the optimizer and scheduler factories of the config."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MetricCollection

from linreg.batches import Batch
from linreg.execution import MultiStepExecution
from linreg.models.metrics import RunningLoss, regression_metrics, with_loss
from linreg.models.network import Network, network_from_checkpoint, network_from_spec
from linreg.models.schedules import build_scheduler, follows_steps

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]
# The run's length at the checkpoint (a resume may have extended it): a later resume keeps it.
MAX_EPOCHS_KEY = "linreg_max_epochs"
# Training-curve points per epoch at most, whatever `trainer.log_every_n_steps` says.
MAX_LOGS_PER_EPOCH = 32


class RegressionModule(pl.LightningModule):
    """MSE regression of any `Network`.

    The factories are not saved as hyper-parameters: checkpoints hold plain values only (`net`
    as the network's class path and options, `steps_per_execution`) and load with
    `torch.load(path, weights_only=True)`. From those `load_from_checkpoint(path)` rebuilds the
    module, and `linreg.models.network.network_from_checkpoint` the network alone.
    """

    def __init__(
        self,
        net: Network | Mapping[str, Any],
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        steps_per_execution: int = 1,
        monitor: str = "val/loss",
        lr_reference_features: int | None = None,
    ) -> None:
        super().__init__()
        # `monitor` only steers training: a saved model is the same model whatever it was.
        if not isinstance(net, Network):  # its record, as saved: Lightning's load_from_checkpoint
            net = network_from_spec(net, "hyper_parameters")
        self.save_hyperparameters(
            {"net": net.spec(), "steps_per_execution": steps_per_execution}, logger=False
        )
        self.net = net
        self.monitor = monitor  # what ReduceLROnPlateau watches
        self.lr_reference_features = lr_reference_features
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.execution = MultiStepExecution(steps_per_execution)
        self.automatic_optimization = self.execution.automatic
        self._train_loss = RunningLoss()
        # The training curve's point of this Lightning step (train/loss, train/lr, train/grad_norm)
        # when it has one, written at the step's end.
        self._curve_point_due = False
        self._curve_point: dict[str, Tensor | float] = {}
        # The mean training loss of the epoch, over all processes, once its last batch has run.
        self.epoch_loss: Tensor | None = None
        self.val_metrics = regression_metrics("val/", intercept=net.intercept)
        self.test_metrics = regression_metrics("test/", intercept=net.intercept)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], path: Path | str) -> RegressionModule:
        """The trained module of a checkpoint dict (as `linreg.runs.load_checkpoint` returns it),
        for scoring: it has no optimizer."""
        network = network_from_checkpoint(checkpoint, path)
        return cls(
            network, steps_per_execution=checkpoint["hyper_parameters"]["steps_per_execution"]
        )

    @property
    def lr_scale(self) -> float:
        """What the optimizer's lr is multiplied by: sqrt(lr_reference_features / n_features)
        beyond that many features, else 1.

        The weights of a standardised target spread over n decorrelated features are about
        1/sqrt(n) each, while a step's noise grows with the number of weights it moves: an lr
        tuned on 8 features leaves a noise floor that grows with n (at 256 features, 0.03 left
        Adam 1.6 % above least squares and SGD's 0.4 1.1 % in 5 epochs; scaled, 0.46 % and 0.34 %).
        Below the reference the lr is kept: SGD's largest stable step does not grow."""
        if not self.lr_reference_features:
            return 1.0
        return math.sqrt(min(1.0, self.lr_reference_features / self.net.n_features))

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken so far (Lightning's `global_step` counts executions)."""
        return self.execution.optimizer_steps(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.execution.save(self, checkpoint)
        checkpoint[MAX_EPOCHS_KEY] = self.trainer.max_epochs

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.execution.load(checkpoint)

    @property
    def example_input_array(self) -> Tensor:
        """An input for tracing the graph and for the model summary's sizes, in the parameters'
        dtype and device (true-precision settings such as `64-true` convert the module)."""
        return torch.zeros(2, self.net.n_features, dtype=self.dtype, device=self.device)

    def forward(self, features: Tensor) -> Tensor:
        # Data stays float32; a true-precision setting (`64-true`, `bf16-true`) converts the module.
        return self.net(features.to(self.dtype))

    def prepared(self, batches: list[Batch]) -> list[Batch]:
        """The batches of one execution with their targets standardised, in one pass for all
        (a target column is small; the features are transformed inside the model, where the
        transforms fold into the weights without a pass over the batch)."""
        sizes = [len(targets) for _, targets in batches]
        targets = _joined([targets for _, targets in batches]).to(self.dtype)
        wanted = self.net.target_standardize(targets).split(sizes)
        return [(features, each) for (features, _), each in zip(batches, wanted, strict=True)]

    def loss(self, prepared: Batch) -> tuple[Tensor, Tensor]:
        """(what is minimised, what is reported) for a batch of `prepared`: the MSE in standardised
        target units, whose gradients do not depend on the targets' scale (nor favour a target in
        larger units), and the detached MSE of each target, in those units too (`reported` turns
        them into the targets' own units, as val/loss and test/mse are measured)."""
        features, wanted = prepared
        predicted = self.net.standardized(features.to(self.dtype))
        objective = F.mse_loss(predicted, wanted)
        if self.net.n_targets == 1:  # no pass over the batch: the objective is that target's MSE
            return objective, objective.detach()
        return objective, (predicted.detach() - wanted).square().mean(0)

    def reported(self, standardized_mse: Tensor) -> Tensor:
        """The MSE in the targets' own units, averaged over targets, from `loss`'s reports (one
        step's, or a stack of an execution's: one multiplication for all its steps)."""
        variance = self.net.target_standardize.std.square()
        if self.net.n_targets == 1:
            return standardized_mse * variance[0]
        return (standardized_mse * variance).mean(-1)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> Tensor:
        # Summed on the device; read only on the steps that write a curve point, as the mean loss
        # since the last one: every `log_every_n_steps`-th, as Lightning's own step logging.
        self._curve_point_due = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        if self.automatic_optimization:
            loss, reported = self.loss(*self.prepared([batch]))
            self._train_loss.add(self.reported(reported).reshape(1), [len(batch[0])])
        else:
            reports, rows = self.execution.run(self, self.prepared(batch), self.loss)
            loss = self.reported(torch.stack(reports))
            self._train_loss.add(loss, rows)
            self.execution.after_training_step(self, batch_idx)
        if self._curve_point_due:
            self._curve_point["train/loss"] = self._train_loss.window_mean()
            # The rate the next step takes: a per-step schedule moves within an epoch.
            self._curve_point["train/lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        return loss

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        # Only for a written point: the norm costs a pass over the gradients.
        if self._curve_point_due:
            norms = [p.grad.norm() for p in self.net.parameters() if p.grad is not None]
            self._curve_point["train/grad_norm"] = torch.linalg.vector_norm(torch.stack(norms))

    def _write_curve_point(self) -> None:
        """Gives the step's curve point to the loggers directly, as Lightning's LearningRateMonitor
        does: `self.log` costs about 0.6 ms a key in Lightning's bookkeeping (a tenth of an epoch
        of small batches), for values that are never aggregated nor monitored. The step and the
        `epoch` column are those Lightning gives its own step logs."""
        point, self._curve_point = self._curve_point, {}
        if not point or not self.loggers:
            return
        scalars = {name: float(value) for name, value in point.items()}
        scalars["epoch"] = self.current_epoch
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)

    def on_train_start(self) -> None:
        # An epoch shorter than the logging interval would log no training loss at all (and
        # Lightning warns): log at least once per epoch. A long one is thinned to at most
        # MAX_LOGS_PER_EPOCH writes, whose cost would otherwise grow with the epoch.
        trainer = self.trainer
        batches = int(min(trainer.num_training_batches, 2**31))
        thinned = max(trainer.log_every_n_steps, math.ceil(batches / MAX_LOGS_PER_EPOCH))
        trainer.log_every_n_steps = max(1, min(thinned, batches))

    def on_train_epoch_start(self) -> None:
        self._train_loss.reset_epoch()
        self.epoch_loss = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._write_curve_point()
        # Before validation and every callback's on_train_epoch_end: the epoch line shows it.
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._end_epoch_loss()

    def on_train_epoch_end(self) -> None:
        self._end_epoch_loss()  # an epoch cut short by a limit, or of a length not known ahead
        self.log("train/epoch_loss", self.epoch_loss, sync_dist=True)
        self.execution.after_training_epoch(self, self.monitor)

    def _end_epoch_loss(self) -> None:
        if self.epoch_loss is None:  # averaged over processes under DDP, the same on each
            mean = self._train_loss.epoch_mean()
            self.epoch_loss = self.trainer.strategy.reduce(mean, reduce_op="mean")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        features, targets = batch
        self.val_metrics.update(self(features), targets)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics, "val/")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        features, targets = batch
        self.test_metrics.update(self(features), targets)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics, "test/")

    def _log_epoch_metrics(self, metrics: MetricCollection, prefix: str) -> None:
        values = with_loss(metrics.compute(), prefix)
        # Already global (torchmetrics syncs across processes); sync_dist only silences the check.
        self.log_dict(values, prog_bar=prefix == "val/", sync_dist=True)
        metrics.reset()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("RegressionModule needs an optimizer factory to train")
        optimizer = self.optimizer_factory(self.parameters())
        for group in optimizer.param_groups:  # before a scheduler reads them as its base
            group["lr"] *= self.lr_scale
        if self.scheduler_factory is None:
            return optimizer
        run_steps = functools.partial(self.execution.run_optimizer_steps, self.trainer)
        scheduler = build_scheduler(self.scheduler_factory, optimizer, run_steps)
        per_step = follows_steps(self.scheduler_factory)
        return self.execution.optimizer_config(optimizer, scheduler, self.monitor, per_step)


def _joined(tensors: list[Tensor]) -> Tensor:
    """The tensors' rows in one tensor; one tensor as it is (a copy would cost a pass)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)
