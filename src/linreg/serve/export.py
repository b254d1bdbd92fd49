"""Export a trained network to a model file, in whichever format its name asks for, and prove the
file agrees with PyTorch by loading it as predict.py does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from linreg.errors import ExportError
from linreg.models.network import Network
from linreg.serve.formats import load_predictor, model_format


def export_model(network: Network, path: Path, **options: Any) -> Path:
    """Write `network` (raw features in, predictions out, any number of rows) to `path`; its
    suffix chooses the format, `options` are that format's (`export.options`)."""
    if not all(torch.isfinite(p).all() for p in network.state_dict().values()):
        raise ExportError(f"refusing to export {path.name}: the model has non-finite weights")
    path.parent.mkdir(parents=True, exist_ok=True)
    model_format(path, "export.filename").write(network.cpu().eval(), path, **options)
    return path


def verify_model(path: Path, network: Network, features: Tensor, atol: float, rtol: float) -> float:
    """Max |file - PyTorch| on `features`, the file run as predict.py runs it; raises ExportError
    where any output differs by more than `atol + rtol * (its target's largest |PyTorch| output on
    these rows)`. Rounding scales with the size of the terms summed, which the target's scale
    reflects and a single row's output need not (a row near 0 cancels terms as large as any
    other's); the rtol term matters for outputs far above 1, where one rounding step already
    exceeds a fixed atol."""
    predictor = load_predictor(path)
    rows = features.detach().cpu().numpy().astype(predictor.dtype)
    served = predictor.predict(rows)
    with torch.inference_mode():
        expected = network.cpu().eval()(torch.from_numpy(rows)).numpy()
    if served.shape != expected.shape:
        raise ExportError(f"{path.name}: the file returned shape {served.shape}, "
                          f"PyTorch {expected.shape}")  # fmt: skip
    abs_diff = np.abs(served - expected)
    max_abs_diff = float(np.max(abs_diff))
    scale = np.max(np.abs(expected), axis=0, keepdims=True)
    if not np.all(abs_diff <= atol + rtol * scale):
        hint = (
            "; float32 rounding grows with nearly dependent features: "
            "trainer.precision=64-true trains and exports in float64"
            if predictor.dtype == np.float32
            else ""
        )
        raise ExportError(
            f"{path.name} disagrees with PyTorch on {len(features)} rows: max abs diff "
            f"{max_abs_diff:.3g} exceeds export.atol={atol:g} + export.rtol={rtol:g} * "
            f"max |output|{hint}"
        )
    return max_abs_diff
