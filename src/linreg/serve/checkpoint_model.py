"""A Lightning checkpoint as a model file: read only (training writes it), run on plain PyTorch
in the precision it was trained in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from linreg.errors import first_line
from linreg.serve.formats import ModelFileError, Predictor


def load(path: Path) -> Predictor:
    import torch

    from linreg.data.design import Design
    from linreg.models.network import network_from_checkpoint
    from linreg.runs import load_checkpoint

    checkpoint = load_checkpoint(path)
    try:
        network = network_from_checkpoint(checkpoint, path)
    except (KeyError, RuntimeError, TypeError) as err:
        raise ModelFileError(f"model={path} is not a linreg checkpoint: {first_line(err)}") from err

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(rows)).numpy()

    return Predictor(
        network.n_features, network.n_targets, network.standardize.mean.numpy().dtype, predict,
        network.feature_names, network.target_names,
        Design.from_record(network.design, str(path)) if network.design else None,
    )  # fmt: skip
