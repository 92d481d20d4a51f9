"""Export the inference graph (uint8 tiles in; decoded boxes and seg probabilities out) to ONNX."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from inspectd.errors import InspectdError
from inspectd.model.inference_graph import InferenceGraph
from inspectd.model.network import MultiTaskNet

OPSET = 17


def export_onnx(model: MultiTaskNet, path: str | Path, batch: int | None = None, opset: int = OPSET) -> Path:
    """Write the graph with a fixed input size and a dynamic batch (unless ``batch`` is given)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise InspectdError("ONNX export needs the 'onnx' package: pip install 'inspectd[onnx]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    graph = InferenceGraph(model).eval()
    x = torch.zeros(batch or 2, cfg.in_channels, *cfg.input_size, dtype=torch.uint8)
    dynamic = None if batch else {"tiles": {0: "batch"}, "det": {0: "batch"}, "seg": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (x,), str(path), input_names=["tiles"], output_names=["det", "seg"],
                          opset_version=opset, dynamic_axes=dynamic, dynamo=False)
    return path
