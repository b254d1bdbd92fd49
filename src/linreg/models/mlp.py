"""A small multi-layer perceptron: standardisation, then Linear -> ReLU per hidden layer -> Linear.

Not linear in its features, so it has no coefficients to compare with least squares or a ground
truth; everything else (training, testing, ONNX, predict, sweeps) treats it as any network.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from linreg.models.network import Network


class MLP(Network):
    """`hidden_sizes` gives the width of each hidden layer: [64] is Linear -> ReLU -> Linear."""

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        hidden_sizes: Sequence[int] = (64,),
        **names: Any,
    ) -> None:
        hidden_sizes = [int(width) for width in hidden_sizes]
        super().__init__(n_features, n_targets, hidden_sizes=hidden_sizes, **names)
        widths = [n_features, *hidden_sizes]
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        self.layers = nn.Sequential(*layers, nn.Linear(widths[-1], n_targets))

    def forward(self, features: Tensor) -> Tensor:
        return self.target_standardize.restore(self.standardized(features))

    def standardized(self, features: Tensor) -> Tensor:
        return self.layers(self.decorrelate(self.standardize(features)))
