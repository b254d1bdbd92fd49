"""The callbacks' decisions, on hand-made trainer states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from linreg.diagnostics.divergence import DivergenceGuard
from linreg.errors import DivergenceError
from linreg.execution import MultiStepExecution
from linreg.run.stopping import ConvergenceStop


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


def validations(stop: ConvergenceStop, values: list[float], max_epochs: int = 100) -> list[bool]:
    """Feeds one val/loss per epoch; returns whether the trainer was told to stop after each."""
    stopped = []
    for epoch, value in enumerate(values):
        trainer = SimpleNamespace(
            sanity_checking=False, current_epoch=epoch, max_epochs=max_epochs, should_stop=False,
            callback_metrics={"val/loss": torch.tensor(value)},
        )  # fmt: skip
        stop.on_validation_end(trainer, None)
        stopped.append(trainer.should_stop)
    return stopped


def test_training_stops_once_the_loss_changed_less_than_the_delta_over_patience_epochs() -> None:
    stop = ConvergenceStop("val/loss", min_relative_delta=0.01, patience=2)
    # 100 -> 50 -> 49.8 -> 49.7: the last three lie within 1 % of 49.7: it ends there.
    assert validations(stop, [100.0, 50.0, 49.8, 49.7]) == [False, False, False, True]
    assert stop.outcome() == "stopped at epoch 4: val/loss changed less than 1.00% over 2 epochs"


def test_a_loss_scattering_at_its_noise_floor_is_not_stopped_whatever_its_scale() -> None:
    # A lucky low, then values above it: no new best, but not flat either: its schedule has
    # not annealed yet. A scattered floor that then flattens stops.
    for scale in (1e-6, 1.0, 1e8):
        stop = ConvergenceStop("val/loss", min_relative_delta=0.01, patience=2)
        losses = [scale * v for v in (1.0, 0.95, 0.97, 0.95, 0.97, 0.96, 0.962, 0.961)]
        assert validations(stop, losses) == [False] * 7 + [True]


def test_the_last_epoch_is_never_called_a_stop_and_the_window_survives_a_resume() -> None:
    stop = ConvergenceStop("val/loss", min_relative_delta=0.01, patience=2)
    assert validations(stop, [1.0, 1.0, 1.0], max_epochs=3) == [False, False, False]
    assert stop.outcome() == "ran all epochs"
    resumed = ConvergenceStop("val/loss", min_relative_delta=0.01, patience=2)
    first = ConvergenceStop("val/loss", min_relative_delta=0.01, patience=2)
    validations(first, [1.0, 1.0])
    resumed.load_state_dict(first.state_dict())
    assert validations(resumed, [1.0]) == [True]
    with pytest.raises(ValueError, match="patience=0 must be >= 1"):
        ConvergenceStop("val/loss", patience=0)
