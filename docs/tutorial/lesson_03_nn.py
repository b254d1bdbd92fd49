"""Lesson 3: `nn.Module` holds parameters and defines `forward`; `nn.Linear` is y = x W^T + b.

Used for real in src/linreg/model.py: `LinearRegressor` is an `nn.Module` made of a `Standardize`
module (buffers, not parameters) and one `nn.Linear`.

Run: python docs/tutorial/lesson_03_nn.py
"""

from __future__ import annotations

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
    facts: dict[str, Any] = {}
    torch.manual_seed(0)

    print("== nn.Linear ==")
    linear = nn.Linear(3, 2)
    facts["linear_weight_shape"] = tuple(linear.weight.shape)
    print(
        f"nn.Linear(3, 2): weight shape {facts['linear_weight_shape']} (out, in), "
        f"bias shape {tuple(linear.bias.shape)}"
    )
    features = torch.randn(5, 3)
    by_hand = features @ linear.weight.T + linear.bias
    facts["linear_matches_formula"] = torch.allclose(linear(features), by_hand)
    print(f"linear(x) == x @ W.T + b: {facts['linear_matches_formula']}")

    print("\n== A small MLP ==")
    mlp = TinyMLP(3, 4, 1)
    facts["mlp_output_shape"] = tuple(mlp(features).shape)
    facts["mlp_parameters"] = sum(p.numel() for p in mlp.parameters())
    print(
        f"TinyMLP(3, 4, 1) maps (5, 3) to {facts['mlp_output_shape']}; "
        f"{facts['mlp_parameters']} parameters = 3*4 + 4 + 4*1 + 1"
    )

    print("\n== state_dict: the named tensors that make up a model ==")
    facts["state_dict_keys"] = list(mlp.state_dict())
    print(f"keys: {facts['state_dict_keys']}")
    copy = TinyMLP(3, 4, 1)
    copy.load_state_dict(mlp.state_dict())
    facts["copy_matches"] = torch.equal(copy(features), mlp(features))
    print(f"a fresh TinyMLP loaded from it predicts identically: {facts['copy_matches']}")
    return facts


if __name__ == "__main__":
    main()
