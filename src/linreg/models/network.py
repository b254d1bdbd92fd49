"""What every network is, and the one way to get a trained network back from a checkpoint.

A network maps raw features to predictions in plain PyTorch (no Lightning): serving code imports
only this package, so it starts without Lightning's import cost. Standardisation, fitted on the
training split, is its first layer and the targets' is undone by its last, so saved and exported
models take raw features and predict in the targets' own units, while training sees unit-scale
values on both sides: one set of step sizes fits prices in the millions and fractions alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from linreg.errors import RunFolderError

# RegressionModule keeps its network in `.net`: the prefix of its checkpoint keys.
CHECKPOINT_PREFIX = "net."
# Only networks of this package are rebuilt from a checkpoint: its class path is data, not code.
NETWORK_PACKAGE = "linreg.models."
# Feature counts up to which the features are decorrelated (a 2048 x 2048 matrix is 16 MB).
MAX_DECORRELATED = 2048
# An eigenvalue of the features' correlation below this fraction of the largest is no variance.
NULL_VARIANCE = 1e-9


class Standardize(nn.Module):
    """(x - mean) / std with statistics fitted on the training split, stored as buffers.

    Buffers travel with the state_dict and the ONNX graph, so saved models take raw features.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit_(self, features: Tensor, centre: bool = True) -> None:
        """Mean and standard deviation; uncentred (`centre=False`, a model through the origin),
        mean 0 and the root mean square, so that 0 stays 0."""
        if centre:
            self.mean.copy_(features.mean(dim=0))
            spread = features.std(dim=0)
        else:
            self.mean.zero_()
            spread = features.square().mean(dim=0).sqrt()
        # A constant feature would divide by zero; it carries no signal, so scale it by 1.
        self.std.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))

    def forward(self, values: Tensor) -> Tensor:
        return (values - self.mean) / self.std

    def restore(self, standardized: Tensor) -> Tensor:
        """The inverse: standardised values back in their own units."""
        return standardized * self.std + self.mean


class Decorrelate(nn.Module):
    """z @ R with R = C^(-1/2) (ZCA whitening), C the standardised features' correlation on the
    training split: the features a layer sees are then uncorrelated, so the loss of a linear
    model is equally curved in every direction and one step size converges as fast on columns
    that nearly repeat each other (correlation 0.99) as on independent ones. Directions with no
    variance (a column that is a sum of others) are dropped, not amplified. Above
    `MAX_DECORRELATED` features R stays the identity: C would cost too much to hold and factor.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("rotation", torch.eye(n_features))

    @torch.no_grad()
    def fit_(self, standardized: Tensor, centre: bool = True) -> None:
        """From the correlation, or (`centre=False`) the uncentred second moments."""
        n_rows, n_features = standardized.shape
        if n_features > MAX_DECORRELATED or n_rows < 2:
            return
        values = standardized.double()
        if centre:
            correlation = torch.cov(values.T).reshape(n_features, n_features)
        else:
            correlation = values.T @ values / n_rows
        eigenvalues, vectors = torch.linalg.eigh(correlation)
        kept = eigenvalues > NULL_VARIANCE * eigenvalues.max().clamp(min=NULL_VARIANCE)
        scale = torch.where(kept, eigenvalues.clamp(min=NULL_VARIANCE).rsqrt(), 0.0)
        self.rotation.copy_((vectors * scale) @ vectors.T)

    def forward(self, standardized: Tensor) -> Tensor:
        return standardized @ self.rotation


class Network(nn.Module):
    """Raw features (rows, n_features) in, predictions (rows, n_targets) out.

    A subclass passes its constructor's arguments to `__init__` as `options`: they are saved in
    the checkpoint (plain values) and rebuild it there.
    """

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        feature_names: list[str] | None = None,
        target_names: list[str] | None = None,
        design: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.n_features = n_features
        self.n_targets = n_targets
        # The data's column names, kept with the model (checkpoint, ONNX) so that predict.py can
        # choose a table's columns by name; positions when the data has none.
        self.feature_names = list(feature_names or (f"x{i}" for i in range(n_features)))
        self.target_names = list(target_names or (f"y{i}" for i in range(n_targets)))
        # What the table's columns become before the network (data/design.py), as plain values:
        # eval, predict and export apply it to raw columns. None: the columns are the features.
        self.design = design
        self.options = {
            "n_features": n_features,
            "n_targets": n_targets,
            "feature_names": self.feature_names,
            "target_names": self.target_names,
            **({"design": design} if design is not None else {}),
            **options,
        }
        self.standardize = Standardize(n_features)
        self.decorrelate = Decorrelate(n_features)
        self.target_standardize = Standardize(n_targets)
        # Whether the network has an intercept; one through the origin (a subclass's option)
        # scales its features and targets without centring them, so that 0 maps to 0.
        self.intercept = bool(options.get("intercept", True))

    @property
    def kind(self) -> str:
        """The network's name in summaries and notes: `linear`, `mlp`."""
        return type(self).__module__.rsplit(".", 1)[-1]

    def spec(self) -> dict[str, Any]:
        """What rebuilds this network: its class path and constructor options."""
        cls = type(self)
        return {"target": f"{cls.__module__}.{cls.__qualname__}", "options": dict(self.options)}

    @torch.no_grad()
    def fit_standardization(self, train_features: Tensor, train_targets: Tensor) -> None:
        """Fits the standardisations and the decorrelation on training rows and sets the output
        layer's bias to 0, the training targets' mean: the first predictions are then near the
        mean, however far from 0 the targets lie, and no step is spent walking the bias there."""
        self.standardize.fit_(train_features, centre=self.intercept)
        self.decorrelate.fit_(self.standardize(train_features), centre=self.intercept)
        self.target_standardize.fit_(train_targets.float(), centre=self.intercept)
        output = [module for module in self.modules() if isinstance(module, nn.Linear)][-1]
        if output.bias is not None:
            output.bias.zero_()

    def standardized(self, features: Tensor) -> Tensor:
        """Predictions in standardised target units, what training minimises the MSE of (its
        gradients then do not depend on the targets' scale). A network overrides it to skip
        restoring and re-standardising its output."""
        return self.target_standardize(self(features))

    @torch.no_grad()
    def coefficients(self) -> tuple[Tensor, Tensor] | None:
        """Weight (n_targets, n_features) and bias (n_targets,) in raw-feature units, for a network
        that is linear in its features; None for one that is not (an MLP): parameter errors and
        coefficient figures are then skipped."""
        return None


def network_from_spec(spec: Any, where: Path | str) -> Network:
    """An untrained network from `Network.spec()`'s record (read from `where`, for errors)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("target"), str):
        raise RunFolderError(
            f"{where} records no network (it was not written by this version of linreg's "
            "train.py): train the model again"
        )
    return _network_class(spec["target"], where)(**spec.get("options", {}))


def network_from_checkpoint(checkpoint: Mapping[str, Any], path: Path | str) -> Network:
    """The trained network of a Lightning checkpoint dict (as `torch.load` returns it), in eval
    mode on the CPU: what export, predict, eval and the figures all use."""
    network = network_from_spec((checkpoint.get("hyper_parameters") or {}).get("net"), path)
    state = {
        key.removeprefix(CHECKPOINT_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(CHECKPOINT_PREFIX)
    }
    if any(value.dtype == torch.float64 for value in state.values()):
        network.double()  # trained under `trainer.precision=64-true`: served in float64 too
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise RunFolderError(f"{path} does not match its recorded network: {err}") from err
    return network.eval()


def _network_class(target: str, where: Path | str) -> type[Network]:
    module_name, _, name = target.rpartition(".")
    cls = None
    if target.startswith(NETWORK_PACKAGE):
        try:
            cls = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, Network)):
        raise RunFolderError(f"{where} names an unknown network: {target}")
    return cls
