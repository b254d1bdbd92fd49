"""Several optimizer steps per Lightning training step (`model.steps_per_execution`, as in Keras).

For a model this small Lightning's own work per step costs more than the step itself; run K steps
at a time and it is paid once per K. Everything K touches lives here: grouping the training batches
into executions (the data side, given K by the config), the K-step update, stepping the per-epoch
scheduler where automatic optimization would, and counting optimizer steps across checkpoints.

Lightning then counts executions: `global_step`, `log_every_n_steps`, the progress bar,
TensorBoard's step axis and the batch limits count groups of K batches, and per-step hooks run once
per group.
K = 1 keeps Lightning's automatic optimization, with every Trainer option.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from linreg.batches import Batch

if TYPE_CHECKING:  # Lightning costs seconds to import; config validation uses this module
    import lightning.pytorch as pl

CHECKPOINT_KEY = "optimizer_steps"


class Executions:
    """A loader's batches in lists of `steps_per_execution` (the last list may be shorter)."""

    batch_sampler = None

    def __init__(self, loader: Any, steps_per_execution: int) -> None:
        self.loader = loader
        self.sampler = loader.sampler  # Lightning sets the epoch on it: the shuffle is the loader's
        self.steps_per_execution = steps_per_execution

    def __len__(self) -> int:
        return -(-len(self.loader) // self.steps_per_execution)

    def __iter__(self) -> Iterator[list[Batch]]:
        batches = iter(self.loader)
        while group := list(itertools.islice(batches, self.steps_per_execution)):
            yield group


class MultiStepExecution:
    """The K-step update and its bookkeeping, for a LightningModule with
    `automatic_optimization = steps_per_execution == 1`."""

    def __init__(self, steps_per_execution: int) -> None:
        self.steps_per_execution = steps_per_execution
        self.executed_steps = 0  # optimizer steps taken in executions
        self.per_step_schedule = False  # a scheduler stepped after every optimizer step

    @property
    def automatic(self) -> bool:
        return self.steps_per_execution == 1

    def optimizer_steps(self, module: pl.LightningModule) -> int:
        """Optimizer steps taken so far (Lightning's `global_step` counts executions)."""
        return module.trainer.global_step if self.automatic else self.executed_steps

    def save(self, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.optimizer_steps(module)

    def load(self, checkpoint: dict[str, Any]) -> None:
        self.executed_steps = checkpoint.get(CHECKPOINT_KEY, 0)

    def first_batch(self, batch_idx: int) -> int:
        """The epoch's index of the first batch in execution `batch_idx`."""
        return batch_idx * self.steps_per_execution

    def run(
        self,
        module: pl.LightningModule,
        batches: Iterable[Batch],
        loss_of: Callable[[Batch], tuple[Tensor, Tensor]],
    ) -> tuple[list[Tensor], list[int]]:
        """One optimizer step per batch on the first loss `loss_of` gives; returns the second
        (the reported loss) and the row count of each batch.

        Every step but the last is plain PyTorch. The last goes through Lightning
        (`manual_backward`, `LightningOptimizer.step`), which counts the execution as one step and
        runs the optimizer hooks (gradient-norm logging) once per execution.
        """
        batches = list(batches)
        lightning_optimizer = module.optimizers()
        optimizer = lightning_optimizer.optimizer
        strategy = module.trainer.strategy
        scheduler = module.lr_schedulers() if self.per_step_schedule else None
        losses, rows = [], []
        for index, batch in enumerate(batches):
            loss, reported = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            if index + 1 < len(batches):
                strategy.pre_backward(loss)  # under DDP: readies this backward's all-reduce
                loss.backward()
                optimizer.step()
            else:
                module.manual_backward(loss)
                lightning_optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(reported.detach())
            rows.append(len(batch[0]))
        self.executed_steps += len(batches)
        return losses, rows

    def after_training_step(self, module: pl.LightningModule, batch_idx: int) -> None:
        """Steps an epoch scheduler after the epoch's last training batch, as Lightning would."""
        last = batch_idx + 1 == module.trainer.num_training_batches
        if not self.automatic and not self.per_step_schedule and last:
            self._step_scheduler(module, after_validation=False, monitor=None)

    def after_training_epoch(self, module: pl.LightningModule, monitor: str) -> None:
        """Steps ReduceLROnPlateau on its metric, after validation, as Lightning would."""
        if not self.automatic:
            self._step_scheduler(module, after_validation=True, monitor=monitor)

    @staticmethod
    def _step_scheduler(
        module: pl.LightningModule, after_validation: bool, monitor: str | None
    ) -> None:
        scheduler = module.lr_schedulers()
        if scheduler is None or isinstance(scheduler, ReduceLROnPlateau) != after_validation:
            return
        if not after_validation:
            scheduler.step()
        elif monitor in module.trainer.callback_metrics:
            scheduler.step(module.trainer.callback_metrics[monitor])

    def run_optimizer_steps(self, trainer: pl.Trainer) -> int:
        """The optimizer steps the whole run takes: what a per-step schedule spans. Lightning's
        estimate counts executions, whose last one in each epoch may be short."""
        executions = trainer.estimated_stepping_batches  # sets the training data up first
        if self.automatic:
            return int(executions)
        loader = trainer.train_dataloader
        batches = len(loader.loader) if isinstance(loader, Executions) else len(loader)
        per_epoch = min(batches, int(trainer.num_training_batches) * self.steps_per_execution)
        return min(int(executions) * self.steps_per_execution, trainer.max_epochs * per_epoch)

    def optimizer_config(self, optimizer: Any, scheduler: Any, monitor: str, per_step: bool) -> Any:
        """What `configure_optimizers` returns: with K > 1 the scheduler is stepped here, not by
        Lightning (`monitor` is only read by ReduceLROnPlateau; the others ignore it)."""
        self.per_step_schedule = per_step
        if not self.automatic:
            return {"optimizer": optimizer, "lr_scheduler": scheduler}
        interval = "step" if per_step else "epoch"
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor},
        }


def unsupported_options(steps_per_execution: int, trainer: Any) -> list[tuple[str, Any]]:
    """Trainer options (key, value) that Lightning applies at every optimizer step, which it only
    sees in automatic optimization: refused with K > 1."""
    if steps_per_execution == 1:
        return []
    needs_automatic = [
        ("trainer.gradient_clip_val", trainer.gradient_clip_val, not trainer.gradient_clip_val),
        ("trainer.accumulate_grad_batches", trainer.accumulate_grad_batches,
         trainer.accumulate_grad_batches == 1),
        ("trainer.precision", trainer.precision, str(trainer.precision) != "16-mixed"),
    ]  # fmt: skip
    return [(key, value) for key, value, ok in needs_automatic if not ok]
