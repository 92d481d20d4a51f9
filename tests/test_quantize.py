"""int8 static quantisation: the quantised file is a model of its own (precision and model
config in its metadata) that the ONNX Runtime backend runs. Its accuracy on NEU val is
measured by pipelines/backend_accuracy.py (BENCHMARKS.md), not here: a random-weight
network says nothing about it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from lively_model import lively_model

from inspectd.backends import create_backend
from inspectd.backends.onnx_model import prepare
from inspectd.backends.quantize import quantize_int8
from inspectd.errors import InspectdError
from inspectd.model.checkpoint import save_checkpoint
from inspectd.runtime.inference import InferenceConfig


def test_int8_model_runs_with_its_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    model, cfg = lively_model()
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    fp32 = prepare(ckpt)
    rng = np.random.default_rng(0)
    calib = rng.integers(40, 200, (4, 1, 224, 224), dtype=np.uint8)
    q = quantize_int8(fp32, tmp_path / "m.int8.onnx", calib, "4 random tiles", batch=2)
    assert q.precision == "int8" and "4 random tiles" in q.note
    assert q.config.class_names == cfg.class_names
    proto = onnx.load(str(q.path))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The decoding tail stays fp32: the softmax and the decoded boxes are computed from
    # float tensors, not from dequantised int8 ones.
    producer = {o: n for n in proto.graph.node for o in n.output}
    softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
    assert producer[softmax.input[0]].op_type != "DequantizeLinear"
    assert producer["det"].op_type != "DequantizeLinear"
    b = create_backend(InferenceConfig(model=q.path, backend="onnxruntime", device="cpu", threads=1))
    assert b.precision == "int8"
    det, labels, _ = b.infer_labels(calib[:2])
    assert det.shape[0] == 2 and labels.shape == (2, 224, 224) and np.isfinite(det).all()
    with pytest.raises(InspectdError, match="already int8"):
        quantize_int8(q, tmp_path / "again.onnx", calib)
