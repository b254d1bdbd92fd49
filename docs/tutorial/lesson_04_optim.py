"""Lesson 4: a plain training loop, and three optimizers on the same regression.

Used for real in src/linreg/model.py (`configure_optimizers` builds the optimizer from
conf/optimizer/*.yaml) and by Lightning, which runs this zero_grad/backward/step loop for us.

Run: python docs/tutorial/lesson_04_optim.py
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from linreg.data import make_regression

NOISE_STD = 0.5


def train_plain_loop(
    optimizer_name: str, features: torch.Tensor, targets: torch.Tensor, epochs: int = 20
) -> list[float]:
    """Mini-batch training by hand; returns the mean training loss of every epoch."""
    torch.manual_seed(0)  # the same initial weights for every optimizer
    model = nn.Linear(features.shape[1], targets.shape[1])
    optimizers = {
        "SGD": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        "Adam": lambda params: torch.optim.Adam(params, lr=0.1),
        "RMSprop": lambda params: torch.optim.RMSprop(params, lr=0.1),
    }
    optimizer = optimizers[optimizer_name](model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(0)
    epoch_losses = []
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        total = 0.0
        for start in range(0, len(features), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()  # gradients accumulate otherwise (lesson 2)
            loss = nn.functional.mse_loss(model(features[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        scheduler.step()
        epoch_losses.append(total / len(features))
    return epoch_losses


def main() -> dict[str, Any]:
    features, targets, _ = make_regression(
        4000, 5, 1, NOISE_STD, feature_scale=5.0, feature_offset=3.0, seed=0
    )
    # Standardise first: with raw features of scale 5 and offset 3, SGD at this rate diverges.
    features = (features - features.mean(0)) / features.std(0)
    print(
        f"4000 rows, 5 features, noise std {NOISE_STD}: the best possible MSE is about "
        f"{NOISE_STD**2}"
    )
    final = {}
    for name in ("SGD", "Adam", "RMSprop"):
        losses = train_plain_loop(name, features, targets)
        final[name] = losses[-1]
        shown = ", ".join(f"{loss:.3f}" for loss in losses[::5])
        print(f"{name:8s} epoch losses (every 5th): {shown} ... final {losses[-1]:.4f}")
    return {"final_loss": final, "noise_floor": NOISE_STD**2}


if __name__ == "__main__":
    main()
