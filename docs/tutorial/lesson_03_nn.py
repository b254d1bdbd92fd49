"""Lesson 3: `nn.Module` holds parameters and defines `forward`; `nn.Linear` is y = x W^T + b.

A module is a function with state: its parameters (what training changes), its buffers (state
that is saved but not trained) and a mode (training or evaluation) that some layers obey.

Used for real in src/linreg/models/linear.py: `LinearRegressor` is an `nn.Module` made of a
`Standardize` module (buffers, not parameters) and one `nn.Linear`.

Run: python docs/tutorial/lesson_03_nn.py
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn


class TinyMLP(nn.Module):
    """Linear -> ReLU -> Linear: the smallest model that is not linear."""

    def __init__(self, n_features: int, hidden: int, n_targets: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_targets)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def main() -> dict[str, Any]:
    torch.manual_seed(0)

    print("== nn.Linear ==")
    linear = nn.Linear(3, 2)
    weight_shape = tuple(linear.weight.shape)
    print(f"nn.Linear(3, 2): weight shape {weight_shape} (out, in), bias shape (2,)")
    features = torch.randn(5, 3)
    matches_formula = torch.allclose(linear(features), features @ linear.weight.T + linear.bias)
    print(f"linear(x) == x @ W.T + b: {matches_formula}")

    print("\n== A small MLP ==")
    mlp = TinyMLP(3, 4, 1)
    output_shape = tuple(mlp(features).shape)
    n_parameters = sum(p.numel() for p in mlp.parameters())
    print(
        f"TinyMLP(3, 4, 1) maps (5, 3) to {output_shape}; {n_parameters} parameters (3*4+4+4*1+1)"
    )

    print("\n== The loss, and the shape of the target ==")
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1)  # the line the source leaves out
    optimized = [p for group in optimizer.param_groups for p in group["params"]]
    print(
        f"[correction 8] `criterion = nn.MSELoss()` defines the loss only ({criterion} has "
        f"{len(list(criterion.parameters()))} parameters); the optimizer is a line of its own,"
    )
    print(
        f"  built on the model's parameters: torch.optim.SGD(mlp.parameters(), lr=0.1) holds its "
        f"{len(optimized)} tensors, {sum(p.numel() for p in optimized)} numbers"
    )
    prediction = torch.tensor([[1.0], [2.0], [3.0]])  # (3, 1), one column per target: perfect
    target = torch.tensor([1.0, 2.0, 3.0])  # the source never defines `target` (a NameError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrong = criterion(prediction, target).item()  # (3, 1) against (3,): broadcast to (3, 3)
    right = criterion(prediction, target.unsqueeze(1)).item()
    print(
        f"[correction 7] a perfect prediction (3, 1) against target (3,): MSELoss broadcasts to "
        f"(3, 3) and averages 9 pairs, {wrong:.4f} instead of {right:.4f} with target (3, 1) "
        f"({len(caught)} warning, no error: the run goes on, and in a log full of output the one"
        f" warning is easily missed)"
    )

    print("\n== Training and evaluation mode ==")
    dropout = nn.Dropout(p=0.5)
    ones = torch.ones(1, 8)
    dropout.train()  # the default: some layers behave differently while training
    in_training = dropout(ones).tolist()[0]
    dropout.eval()
    in_evaluation = dropout(ones).tolist()[0]
    zeroed = in_training.count(0.0)
    print(f"Dropout in train(): {in_training} ({zeroed} of 8 zeroed: each entry independently,")
    print("  with probability p = 0.5: half on average, not exactly; the rest doubled, 1/(1-p))")
    print(f"Dropout in eval():  {in_evaluation} (a no-op). model.eval() switches every submodule;")
    print("  it does not turn off gradients: that is torch.inference_mode() (lesson 2)")

    print("\n== state_dict: the named tensors that make up a model ==")
    keys = list(mlp.state_dict())
    print(f"keys: {keys}")
    copy = TinyMLP(3, 4, 1)
    copy.load_state_dict(mlp.state_dict())
    copy_matches = torch.equal(copy(features), mlp(features))
    print(f"a fresh TinyMLP loaded from it predicts identically: {copy_matches}")

    # What tests/test_tutorial.py checks.
    return {
        "linear_weight_shape": weight_shape, "linear_matches_formula": matches_formula,
        "mlp_output_shape": output_shape, "mlp_parameters": n_parameters,
        "broadcast_mse": wrong, "right_mse": right, "mse_warnings": len(caught),
        "dropout_train": in_training, "dropout_eval": in_evaluation, "state_dict_keys": keys,
        "copy_matches": copy_matches, "loss_parameters": len(list(criterion.parameters())),
        "optimized_tensors": len(optimized), "optimized_numbers": sum(p.numel() for p in optimized),
    }  # fmt: skip


if __name__ == "__main__":
    main()
