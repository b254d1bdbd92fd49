"""ONNX: one self-contained file with a dynamic batch axis, in the network's own precision
(float32, or float64 under `trainer.precision=64-true`), run by onnxruntime.

A network is traced by torch's torch.export-based exporter (`dynamo=True`, the default since torch
2.9, which needs onnxscript). The linear network, the default, is written directly as the six
nodes that exporter traces from it: the same file without the exporter's start (about 1 s, a sixth
of a default run). torch, onnx and the exporter are imported only to write a file.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from linreg.errors import first_line
from linreg.serve.formats import ModelFileError, Predictor

if TYPE_CHECKING:
    import onnx

    from linreg.data.design import Design
    from linreg.models.linear import LinearRegressor
    from linreg.models.network import Network

INPUT_NAME = "features"
OUTPUT_NAME = "predictions"
# Metadata keys of the file: JSON lists of the column names the model was trained on.
FEATURE_NAMES = "linreg.feature_names"
TARGET_NAMES = "linreg.target_names"
# A model of a formula's matrix (categorical columns): the graph takes the matrix, named by
# FEATURE_NAMES; this JSON design (data/design.py) builds it from the raw columns it names.
DESIGN = "linreg.design"
# onnxruntime's names of the input types a linreg model takes.
INPUT_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(double)": np.dtype(np.float64)}
_CHATTY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript")


def write(network: Network, path: Path, opset: int = 20) -> None:
    """`network` (raw features in, predictions out) as an ONNX file of opset `opset`."""
    import onnx
    from onnx import helper

    graph = _GRAPHS.get(network.kind, traced_graph)
    model = graph(network, opset)
    helper.set_model_props(
        model,  # the data's column names: predict.py picks a table's columns by them
        {
            FEATURE_NAMES: json.dumps(network.feature_names),
            TARGET_NAMES: json.dumps(network.target_names),
            **({DESIGN: json.dumps(network.design)} if network.design else {}),
        },
    )
    onnx.save(model, str(path))


def load(path: Path) -> Predictor:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own unexported exception types
        raise ModelFileError(f"model={path} is not a valid ONNX model: {first_line(err)}") from err
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()
    if model_input.type not in INPUT_TYPES:
        raise ModelFileError(
            f"model={path} takes {model_input.type}; a linreg model takes float or double"
        )
    metadata = session.get_modelmeta().custom_metadata_map
    n_features, n_targets = model_input.shape[1], model_output.shape[1]
    return Predictor(
        n_features=n_features,
        n_targets=n_targets,
        dtype=INPUT_TYPES[model_input.type],
        predict=lambda rows: session.run(None, {model_input.name: rows})[0],
        feature_names=_column_names(metadata, FEATURE_NAMES, n_features, path),
        target_names=_column_names(metadata, TARGET_NAMES, n_targets, path),
        design=_design(metadata, path),
    )


def _design(metadata: dict[str, str], path: Path) -> Design | None:
    if DESIGN not in metadata:
        return None
    from linreg.data.design import Design

    try:
        return Design.from_record(json.loads(metadata[DESIGN]), f"model={path}")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ModelFileError(
            f"model={path}: its {DESIGN} metadata is not a design ({first_line(err)}); the file "
            "was edited or damaged: export it again"
        ) from None


def _column_names(metadata: dict[str, str], key: str, width: int, path: Path) -> list[str] | None:
    """The column names a file records under `key`, checked against its graph: `width` distinct
    names, or none recorded at all. A file that disagrees with itself is refused, never served
    by position."""
    if key not in metadata:
        return None
    try:
        names = json.loads(metadata[key])
    except json.JSONDecodeError:
        names = None
    if (
        not isinstance(names, list)
        or not all(isinstance(name, str) for name in names)
        or len(names) != width
        or len(set(names)) != width
    ):
        shown = metadata[key] if len(metadata[key]) <= 80 else metadata[key][:77] + "..."
        raise ModelFileError(
            f"model={path}: its {key} metadata {shown} is not a list of {width} distinct names "
            f"for its {width} columns; the file was edited or damaged: export it again"
        )
    return names


def traced_graph(network: Network, opset: int) -> onnx.ModelProto:
    """Any network, traced by torch.export and translated by the ONNX exporter."""
    import torch

    example = torch.zeros(2, network.n_features, dtype=network.standardize.mean.dtype)
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
    import onnx
    from onnx import helper, numpy_helper

    weights = [
        numpy_helper.from_array(tensor.detach().cpu().numpy(), name)
        for name, tensor in network.state_dict().items()
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "standardize.mean"], ["centered"]),
        helper.make_node("Div", ["centered", "standardize.std"], ["standardized"]),
        helper.make_node("MatMul", ["standardized", "decorrelate.rotation"], ["decorrelated"]),
        helper.make_node(  # without an intercept, Gemm's optional bias input is left out
            "Gemm",
            ["decorrelated", "linear.weight", *(["linear.bias"] if network.intercept else [])],
            ["linear"],
            transB=1,
        ),
        helper.make_node("Mul", ["linear", "target_standardize.std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "target_standardize.mean"], [OUTPUT_NAME]),
    ]
    element = weights[0].data_type  # every weight has the network's one dtype
    graph = helper.make_graph(
        nodes,
        "linear_regressor",
        [helper.make_tensor_value_info(INPUT_NAME, element, ["batch", network.n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, element, ["batch", network.n_targets])],
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


# Networks written node by node, by `Network.kind`; any other is traced.
_GRAPHS = {"linear": linear_graph}


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
