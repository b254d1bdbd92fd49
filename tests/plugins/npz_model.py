"""A model format of the tests' own, to show that a format is its module plus one registry entry:
a linear network's coefficients in raw units, in a NumPy .npz archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linreg.models.network import Network
from linreg.serve.formats import Predictor


def write(network: Network, path: Path) -> None:
    weight, bias = network.coefficients()
    with path.open("wb") as handle:  # a handle: np.savez would add .npz to a temporary name
        np.savez(handle, weight=weight.numpy(), bias=bias.numpy(),
                 features=network.feature_names, targets=network.target_names)  # fmt: skip


def load(path: Path) -> Predictor:
    with np.load(path) as archive:
        weight, bias = archive["weight"], archive["bias"]
        names = list(archive["features"]), list(archive["targets"])
    return Predictor(weight.shape[1], weight.shape[0], weight.dtype,
                     lambda rows: rows @ weight.T + bias, *names)  # fmt: skip
