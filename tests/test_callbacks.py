"""The callbacks' decisions, on hand-made trainer states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from linreg.diagnostics.divergence import DivergenceGuard
from linreg.errors import DivergenceError
from linreg.execution import MultiStepExecution


def trainer_at(lr: float = 0.5, **metrics: float) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=3,
        current_epoch=2,
        sanity_checking=False,
        optimizers=[SimpleNamespace(param_groups=[{"lr": lr}])],
        callback_metrics={name: torch.tensor(value) for name, value in metrics.items()},
    )


def module_with(weight: float = 1.0) -> nn.Module:
    module = nn.Linear(2, 1)
    nn.init.constant_(module.weight, weight)
    module.execution = MultiStepExecution(16)
    return module


def execution(n: int, scale: float = 1.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.ones(4, 2), torch.full((4, 1), scale)) for _ in range(n)]


def guard_after(trainer: SimpleNamespace, module: nn.Module, outputs, batch, index: int) -> None:
    guard = DivergenceGuard()
    guard.on_train_epoch_start(trainer, module)
    trainer.optimizers[0].param_groups[0]["lr"] = 0.0  # a scheduler stepped inside the step
    guard.on_train_batch_end(trainer, module, outputs, batch, index)


def test_divergence_names_the_first_bad_batch_and_the_lr_set() -> None:
    losses = torch.tensor([1.0, 2.0, float("inf"), float("nan")])  # a last, short execution
    with pytest.raises(DivergenceError) as info:
        guard_after(trainer_at(), module_with(), {"loss": losses}, execution(4), 2)
    assert str(info.value).startswith(
        "training diverged at step 3 (epoch 2, batch 34): train/loss is inf;"
    )
    assert "optimizer.lr=0.5)" in str(info.value)


def test_weights_made_non_finite_by_the_last_step_are_caught_with_finite_losses() -> None:
    losses = torch.tensor([1.0, 2.0])
    with pytest.raises(DivergenceError, match="the weights became non-finite in the optimizer"):
        guard_after(trainer_at(), module_with(float("inf")), {"loss": losses}, execution(2), 0)


@pytest.mark.parametrize(
    ("scale", "blame"),
    [
        (float("nan"), "the batch's targets hold non-finite values: the data"),
        (1e30, "the batch's targets reach 1e+30, whose square overflows float32"),
    ],
)
def test_bad_data_is_blamed_instead_of_the_learning_rate(scale: float, blame: str) -> None:
    with pytest.raises(DivergenceError) as info:
        guard_after(trainer_at(), module_with(), torch.tensor(float("inf")), (torch.ones(4, 2),
                    torch.full((4, 1), scale)), 0)  # fmt: skip
    assert blame in str(info.value)
    assert "learning rate is likely" not in str(info.value)


def test_finite_losses_and_weights_pass() -> None:
    guard_after(trainer_at(), module_with(), {"loss": torch.tensor([1.0, 2.0])}, execution(2), 0)
    guard_after(trainer_at(), module_with(), torch.tensor(0.5), execution(1)[0], 0)


def test_absurd_finite_weights_are_caught_by_their_validation_loss() -> None:
    guard = DivergenceGuard(monitor="val/loss")
    guard.on_validation_end(trainer_at(**{"val/loss": 0.3}), module_with())
    with pytest.raises(DivergenceError) as info:
        guard.on_validation_end(trainer_at(**{"val/loss": float("inf")}), module_with(1e20))
    assert "(epoch 2, validation): val/loss is inf (the largest weight is 1e+20)" in str(info.value)
