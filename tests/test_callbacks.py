"""The callbacks' decisions, on hand-made trainer states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from linreg.callbacks import DivergenceGuard
from linreg.errors import DivergenceError


def test_divergence_names_the_first_bad_batch_inside_an_execution() -> None:
    trainer = SimpleNamespace(
        global_step=3, current_epoch=2, optimizers=[SimpleNamespace(param_groups=[{"lr": 0.5}])]
    )
    module = SimpleNamespace(steps_per_execution=16)
    losses = torch.tensor([1.0, 2.0, float("inf"), float("nan")])  # a last, short execution
    with pytest.raises(DivergenceError) as info:
        DivergenceGuard().on_train_batch_end(trainer, module, {"loss": losses}, None, 2)
    assert str(info.value).startswith(
        "training diverged at step 3 (epoch 2, batch 34): train/loss is inf;"
    )
    assert "optimizer.lr=0.5" in str(info.value)
    # Finite losses pass, as does a single loss (one step per Lightning step).
    DivergenceGuard().on_train_batch_end(trainer, module, {"loss": losses[:2]}, None, 2)
    DivergenceGuard().on_train_batch_end(trainer, module, torch.tensor(0.5), None, 2)
