"""Lesson 0: the whole workflow in plain PyTorch, before the parts are taken apart.

Make data with a known answer, build a linear model, train it, test it on rows it never saw, save
it and load it back: the five steps every later lesson (and the project) does at length. The
closed-form least-squares fit on the same training rows is the answer training should reach.

Run: python docs/tutorial/lesson_00_quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

TRUE_WEIGHT, TRUE_BIAS, NOISE_STD = torch.tensor([[2.0, -3.0, 0.5]]), 1.0, 0.1


def main() -> dict[str, Any]:
    torch.manual_seed(0)
    # 1. Data: y = x W^T + b + noise, 800 rows to train on and 200 to test on.
    features = torch.randn(1000, 3)
    targets = features @ TRUE_WEIGHT.T + TRUE_BIAS + NOISE_STD * torch.randn(1000, 1)
    train_x, test_x, train_y, test_y = features[:800], features[800:], targets[:800], targets[800:]
    # 2. The model: one linear layer, 3 inputs, 1 output.
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    # 3. Training: 20 epochs of batches of 50 rows; each step predicts, measures, steps downhill.
    for _ in range(20):
        for start in range(0, 800, 50):
            x, y = train_x[start : start + 50], train_y[start : start + 50]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
    # 4. Test on the held-out rows, without recording gradients; least squares on the same rows.
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model(test_x), test_y).item()
        ones = torch.ones(800, 1)
        solution = torch.linalg.lstsq(torch.cat([train_x, ones], 1), train_y).solution
        exact_mse = nn.functional.mse_loss(torch.cat([test_x, ones[:200]], 1) @ solution, test_y)
    learned = ", ".join(f"{w:.3f}" for w in model.weight[0].tolist())
    print(f"learned weight [{learned}], bias {model.bias.item():.3f}; true [2, -3, 0.5], 1")
    print(f"test MSE {test_mse:.5f}, least squares' {exact_mse.item():.5f}: the noise, 0.1² = 0.01")
    # 5. Save the parameters (a state_dict), load them into a new model, predict the same.
    loaded = nn.Linear(3, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        torch.save(model.state_dict(), path)
        loaded.load_state_dict(torch.load(path, weights_only=True))
    same = torch.equal(loaded(test_x), model(test_x))
    print(f"saved to {path.name} and loaded back: the same predictions: {same}")
    print(
        "[correction 20] the source's introduction promises this example (build, train, test, "
        "save, load a linear regression) and never gives it: here it is, taken apart in lessons 1-8"
    )
    return {"weight": model.weight.data.clone(), "bias": model.bias.item(), "test_mse": test_mse,
            "least_squares_mse": exact_mse.item(), "same_after_loading": same}  # fmt: skip


if __name__ == "__main__":
    main()
