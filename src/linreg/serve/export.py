"""Export a trained network to one self-contained ONNX file, and prove onnxruntime agrees with it.

A network is traced by torch's torch.export-based exporter (`dynamo=True`, the default since torch
2.9, which needs onnxscript), with a dynamic batch axis so the file serves any number of rows. The
linear network, the default, is written directly as the six nodes that exporter traces from it:
the same file without the exporter's start (about 1 s, a sixth of a default run).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor, nn

from linreg.errors import ExportError
from linreg.models.linear import LinearRegressor
from linreg.models.network import Network
from linreg.serve import FEATURE_NAMES, INPUT_NAME, OUTPUT_NAME, TARGET_NAMES

_CHATTY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript")


def export_onnx(network: Network, path: Path, opset: int) -> Path:
    """Write `network` (raw features in, predictions out) to `path` with a dynamic batch axis."""
    if not all(torch.isfinite(p).all() for p in network.state_dict().values()):
        raise ExportError(f"refusing to export {path.name}: the model has non-finite weights")
    network = network.cpu().eval()
    if isinstance(network, LinearRegressor):
        model = linear_graph(network, opset)
    else:
        model = traced_graph(network, opset)
    helper.set_model_props(
        model,  # the data's column names: predict.py picks a table's columns by them
        {
            FEATURE_NAMES: json.dumps(network.feature_names),
            TARGET_NAMES: json.dumps(network.target_names),
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def traced_graph(network: Network, opset: int) -> onnx.ModelProto:
    """Any network, traced by torch.export and translated by the ONNX exporter."""
    example = torch.zeros(2, network.n_features)
    with quiet_exporter():
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            verbose=False,
        )
    return program.model_proto


def linear_graph(network: LinearRegressor, opset: int) -> onnx.ModelProto:
    """`LinearRegressor.forward` in eval mode, node for node as the exporter traces it: standardise
    (Sub, Div), decorrelate (MatMul), the linear layer (Gemm), restore the targets' units (Mul,
    Add). The features are transformed before the layer, never folded into its weights, for the
    reason `forward` gives. Initializers take the state_dict's names, as the exporter's do."""
    weights = [
        numpy_helper.from_array(tensor.detach().cpu().numpy(), name)
        for name, tensor in network.state_dict().items()
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "standardize.mean"], ["centered"]),
        helper.make_node("Div", ["centered", "standardize.std"], ["standardized"]),
        helper.make_node("MatMul", ["standardized", "decorrelate.rotation"], ["decorrelated"]),
        helper.make_node(
            "Gemm", ["decorrelated", "linear.weight", "linear.bias"], ["linear"], transB=1
        ),
        helper.make_node("Mul", ["linear", "target_standardize.std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "target_standardize.mean"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear_regressor",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", network.n_features]
            )
        ],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", network.n_targets]
            )
        ],
        initializer=weights,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="linreg",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def verify_onnx(path: Path, model: nn.Module, features: Tensor, atol: float, rtol: float) -> float:
    """Max |onnxruntime - PyTorch| on `features`; raises ExportError where any output differs by
    more than `atol + rtol * (its target's largest |PyTorch| output on these rows)`. Float32
    rounding scales with the size of the terms summed, which the target's scale reflects and a
    single row's output need not (a row near 0 cancels terms as large as any other's); the rtol
    term matters for outputs far above 1, where one rounding step already exceeds a fixed atol."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = features.detach().cpu().float()
    (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: features.numpy()})
    with torch.inference_mode():
        torch_out = model.cpu().eval()(features).numpy()
    if onnx_out.shape != torch_out.shape:
        raise ExportError(
            f"{path.name}: onnxruntime returned shape {onnx_out.shape}, PyTorch {torch_out.shape}"
        )
    abs_diff = np.abs(onnx_out - torch_out)
    max_abs_diff = float(np.max(abs_diff))
    scale = np.max(np.abs(torch_out), axis=0, keepdims=True)
    if not np.all(abs_diff <= atol + rtol * scale):
        raise ExportError(
            f"{path.name} disagrees with PyTorch on {len(features)} rows: max abs diff "
            f"{max_abs_diff:.3g} exceeds export.atol={atol:g} + export.rtol={rtol:g} * "
            "max |output|"
        )
    return max_abs_diff


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Mutes the exporter's own chatter while exporting: notices about optional torchvision
    operators, graph-pass progress, a dependency's deprecation warning. Other warnings still show.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
