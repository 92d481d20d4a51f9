"""int8 static quantisation of a prepared ONNX graph (ONNX Runtime's QDQ format).

Only the network's own nodes (``/model/...`` in the exported graph: convolutions, their
activations, concatenations, resizes) are quantised, and not its last layers: the heads'
output convolutions and what follows them stay fp32, so the raw box, objectness and class
logits and the segmentation logits are not rounded to 256 levels per tensor. The tail stays
fp32 too: box decoding (pixel coordinates), the softmax and the label outputs. Weights are
quantised per output channel (symmetric int8), activations
per tensor (asymmetric uint8) with ranges calibrated on real tiles: a few dozen NEU
training images, padded exactly as training and evaluation pad them.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspectd.backends.onnx_model import (
    OnnxModel,
    file_sha256,
    read_metadata,
    save_atomically,
    set_metadata,
)
from inspectd.errors import InspectdError


def calibration_tiles(data_dir: str | Path, stems: Sequence[str], model: OnnxModel, count: int = 64) -> np.ndarray:
    """``count`` images of ``stems`` spread evenly over the list, as uint8 model tiles [N, C, H, W]."""
    from inspectd.data.neu import NeuDataset

    if not stems:
        raise InspectdError(f"calibration data {data_dir}: no stems")
    picks = [stems[i] for i in np.linspace(0, len(stems) - 1, min(count, len(stems))).round().astype(int)]
    cfg = model.config
    ds = NeuDataset(data_dir, picks, cfg.class_names, cfg.seg_class_names, in_channels=cfg.in_channels,
                    input_size=(cfg.input_size[0], cfg.input_size[1]), augment=None)
    return np.stack([ds[i]["image"].numpy() for i in range(len(ds))])


def network_nodes_to_quantize(proto) -> list[str]:
    """Names of the ``/model/`` nodes to quantise: all but the heads' output layers.

    The output layers are found from the graph, not by name: walking back from every
    input the decoding tail takes from the network, through the reshapes and resizes, up to
    and including the first convolution on each path.
    """
    inner = [n for n in proto.graph.node if n.name.startswith("/model/")]
    producer = {o: n for n in inner for o in n.output}
    keep_float: set[str] = set()
    stack = [producer[i] for n in proto.graph.node if not n.name.startswith("/model/")
             for i in n.input if i in producer]
    while stack:
        node = stack.pop()
        if node.name in keep_float:
            continue
        keep_float.add(node.name)
        if node.op_type not in ("Conv", "Shape"):    # a Shape reads no values: stop there too
            stack.extend(producer[i] for i in node.input if i in producer)
    return [n.name for n in inner if n.name not in keep_float]


def quantize_int8(model: OnnxModel, out: str | Path, tiles: np.ndarray, calibration: str = "",
                  batch: int = 8) -> OnnxModel:
    """Write an int8 (QDQ) version of ``model`` to ``out``, calibrated on ``tiles``.

    ``calibration`` says in words what the tiles are (kept in the file's metadata).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if model.precision != "fp32":
        raise InspectdError(f"model file {model.source} is already {model.precision}; quantise the fp32 model")
    if tiles.ndim != 4 or tiles.dtype != np.uint8 or len(tiles) == 0:
        raise ValueError(f"expected uint8 calibration tiles [N, C, H, W], got {tiles.dtype} {tiles.shape}")
    out = Path(out)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([tiles[i:i + batch] for i in range(0, len(tiles), batch)])

        def get_next(self):
            b = next(self._batches, None)
            return None if b is None else {"tiles": b}

    proto = onnx.load(str(model.path))
    nodes = network_nodes_to_quantize(proto)
    with tempfile.TemporaryDirectory(prefix="inspectd-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime recommends for static quantisation.
        quant_pre_process(str(model.path), str(pre), skip_symbolic_shape=True)
        q = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(q), _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        qproto = onnx.load(str(q))
    src = {p.key: p.value for p in proto.metadata_props}
    note = f"int8 static QDQ (per-channel weights, MinMax activations) calibrated on {len(tiles)} tiles"
    if calibration:
        note += f" ({calibration})"
    set_metadata(qproto, model.config, "int8", src.get("inspectd.source_sha256", file_sha256(model.path)), note)
    save_atomically(qproto, out)
    return read_metadata(out)
