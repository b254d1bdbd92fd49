"""Lesson 5: a plain training loop, three optimizers, and an evaluation loop.

Training repeats one step: predict a batch, measure the loss, `backward()` for the gradients
(lesson 2), and let the optimizer move every parameter a little against its gradient. An epoch is
one pass over the training rows; the learning rate is how far each step moves.

Used for real in src/linreg/models/module.py (`configure_optimizers` builds the optimizer from
conf/optimizer/*.yaml) and by Lightning, which runs this zero_grad/backward/step loop for us
(lesson 7). This lesson needs nothing but torch: it starts in about a second.

Run: python docs/tutorial/lesson_05_optim.py
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lesson_04_data import make_data  # the same data as lesson 4
from torch import Tensor, nn

NOISE_STD = 0.5
BATCH = 64
OPTIMIZERS = {
    "SGD": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "Adam": lambda params: torch.optim.Adam(params, lr=0.1),
    "RMSprop": lambda params: torch.optim.RMSprop(params, lr=0.1),
}


def train_plain_loop(
    optimizer_name: str, features: Tensor, targets: Tensor, epochs: int = 20
) -> tuple[nn.Module, list[float]]:
    """Mini-batch training by hand; returns the model and the mean training loss of each epoch."""
    torch.manual_seed(0)  # the same initial weights for every optimizer
    model = nn.Linear(features.shape[1], targets.shape[1])
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(0)
    epoch_losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(features), generator=generator)
        loss_sum = 0.0
        for start in range(0, len(features), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()  # gradients accumulate otherwise (lesson 2)
            loss = nn.functional.mse_loss(model(features[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)  # the batch's mean loss, weighted by its rows
        scheduler.step()
        epoch_losses.append(loss_sum / len(features))
    return model, epoch_losses


@torch.inference_mode()
def evaluate(model: nn.Module, features: Tensor, targets: Tensor) -> float:
    """The plain evaluation loop: evaluation mode, no gradient recording, a sum over batches."""
    model.eval()
    squared_error = 0.0
    for start in range(0, len(features), 1024):
        predicted = model(features[start : start + 1024])
        squared_error += ((predicted - targets[start : start + 1024]) ** 2).sum().item()
    return squared_error / targets.numel()


def least_squares_mse(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor
) -> tuple[float, float]:
    """Training and test MSE of the closed-form fit (with an intercept) to the training rows."""

    def with_ones(x: Tensor) -> Tensor:  # a column of ones: the intercept's
        return torch.cat([x, torch.ones(len(x), 1)], 1).double()

    solution = torch.linalg.lstsq(with_ones(train_x), train_y.double()).solution
    train_error = (with_ones(train_x) @ solution).float() - train_y
    test_error = (with_ones(test_x) @ solution).float() - test_y
    return train_error.square().mean().item(), test_error.square().mean().item()


def main() -> dict[str, Any]:
    features, targets = make_data(4000, 5, NOISE_STD, seed=0)
    train, test = slice(0, 3200), slice(3200, None)
    print(f"4000 rows, 5 features, noise std {NOISE_STD}: the best MSE possible is {NOISE_STD**2}")

    print("\n== Raw features: SGD diverges ==")
    _, raw_losses = train_plain_loop("SGD", features[train], targets[train], epochs=2)
    print(
        f"SGD (lr 0.05) on raw features (scale 5, offset 3): epoch losses {raw_losses}: the steps"
        " overshoot, since a step's size grows with the features' scale"
    )

    print("\n== Standardised features: every optimizer reaches least squares ==")
    mean, std = features[train].mean(0), features[train].std(0)
    features = (features - mean) / std  # statistics of the training rows only (lesson 4)
    print("20 epochs each. The learning rate follows CosineAnnealingLR: half a cosine from lr down")
    print("  to 0 at the last epoch, large steps first and small ones to settle with. SGD adds")
    print("  momentum 0.9: each step carries on 0.9 of the one before, so steps that agree add up.")
    exact_train, exact_test = least_squares_mse(features[train], targets[train], features[test],
                                                targets[test])  # fmt: skip
    print(
        f"least squares on these rows (the closed form): training MSE {exact_train:.4f}, test "
        f"MSE {exact_test:.4f}; the noise floor {NOISE_STD**2} is their limit as rows grow"
    )
    print(
        "[correction 17] the source's optimizer snippet uses names it never defines (the model, "
        "its data, the loss), so, run as written, it stops at the first with a NameError; "
        "train_plain_loop above defines every name it uses, and this file runs on its own"
    )
    final, test_mse = {}, {}
    for name in OPTIMIZERS:
        model, losses = train_plain_loop(name, features[train], targets[train])
        final[name] = losses[-1]
        test_mse[name] = evaluate(model, features[test], targets[test])
        shown = ", ".join(f"{loss:.3f}" for loss in losses[::5])
        print(f"{name:8s} epoch losses (every 5th): {shown} ... final {losses[-1]:.4f}, "
              f"test MSE {test_mse[name]:.4f}")  # fmt: skip

    print("\n== The loss to print ==")
    n_batches = math.ceil(3200 / BATCH)
    sum_of_batch_means = final["SGD"] * n_batches  # about what a running_loss += loss.item() holds
    print(
        f"[correction 9] a running sum of batch losses divided by the number of rows "
        f"(running_loss / len(trainset)) is too small by rows / batches, the batch size when the "
        f"batches are full: here {sum_of_batch_means / 3200:.5f}, {3200 / n_batches:g}x too small "
        f"(3200 rows in {n_batches} batches). Divide by the number of batches "
        f"({sum_of_batch_means / n_batches:.4f}), or weight each batch by its rows as above"
    )

    # What tests/test_tutorial.py checks.
    return {
        "raw_sgd_losses": raw_losses, "final_loss": final, "test_mse": test_mse,
        "noise_floor": NOISE_STD**2, "mean_over_rows": sum_of_batch_means / 3200,
        "n_batches": n_batches, "least_squares": (exact_train, exact_test),
    }  # fmt: skip


if __name__ == "__main__":
    main()
