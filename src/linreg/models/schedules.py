"""Learning-rate schedules that follow optimizer steps rather than epochs.

An epoch scheduler anneals once per epoch: 5 epochs of 11 batches get 5 rates, 10 epochs of 55
get 10, and a run of 2 epochs barely anneals at all. A schedule whose constructor takes
`total_steps` is stepped after every optimizer step instead, and given the run's length in
optimizer steps, so it anneals as fully whatever the data's size, the batch size or the epochs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

SchedulerFactory = Callable[..., Any]


class WarmupCosine(LambdaLR):
    """A linear warm-up from 0 over the first `warmup_fraction` of the run, then a half cosine
    down to `final_lr_fraction` of the optimizer's rate at the last step. The warm-up keeps the
    first steps, taken while Adam's and RMSprop's second-moment estimates are still a few
    gradients old, from overshooting."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.05,
        final_lr_fraction: float = 0.0,
    ) -> None:
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction={warmup_fraction} must be in [0, 1)")
        if not 0 <= final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction={final_lr_fraction} must be in [0, 1]")
        self.total_steps = max(1, total_steps)
        self.warmup_steps = math.ceil(warmup_fraction * self.total_steps)
        self.final_lr_fraction = final_lr_fraction
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The rate at optimizer step `step` (0 = before the first), as a fraction of lr."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        annealing_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / annealing_steps)
        final = self.final_lr_fraction
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def follows_steps(factory: SchedulerFactory) -> bool:
    """Whether a scheduler factory builds a per-step schedule (it takes `total_steps`)."""
    return "total_steps" in inspect.signature(factory).parameters


def build_scheduler(
    factory: SchedulerFactory, optimizer: Optimizer, run_steps: Callable[[], int]
) -> Any:
    """The factory's scheduler; a per-step one is told the run's length in optimizer steps,
    asked of `run_steps` only then (counting them reads the training data early)."""
    if follows_steps(factory):
        return factory(optimizer, total_steps=run_steps())
    return factory(optimizer)
