"""The exported inference graph: opset, and under ONNX Runtime the same numbers as PyTorch.

Tolerance (fp32 both sides, different kernels and summation orders): box corners within
0.05 px, objectness, class and segmentation probabilities within 2e-4.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from lively_model import lively_model

from inspectd.model.export import export_onnx
from inspectd.model.inference_graph import InferenceGraph

BOX_ATOL = 0.05
PROB_ATOL = 2e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, cfg = lively_model()
    path = export_onnx(model, tmp_path_factory.mktemp("export") / "n.onnx")
    return model, cfg, path


def test_opset_at_least_17_and_valid(exported):
    _, _, path = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    default = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    assert default and default[0] >= 17
    assert [i.name for i in proto.graph.input] == ["tiles"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in proto.graph.output] == ["det", "seg"]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_equals_pytorch(exported, batch):
    model, cfg, path = exported
    rng = np.random.default_rng(batch)
    tiles = rng.integers(0, 256, (batch, cfg.in_channels, *cfg.input_size), dtype=np.uint8)
    with torch.inference_mode():
        det_t, seg_t = (t.numpy() for t in InferenceGraph(model).eval()(torch.from_numpy(tiles)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    det_o, seg_o = sess.run(["det", "seg"], {"tiles": tiles})    # dynamic batch
    assert det_o.shape == det_t.shape and seg_o.shape == seg_t.shape
    np.testing.assert_allclose(det_o[..., :4], det_t[..., :4], atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(det_o[..., 4:], det_t[..., 4:], atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(seg_o, seg_t, atol=PROB_ATOL, rtol=0)
    # The lively model is not a constant: the comparison is not between two flat outputs.
    assert det_t[..., 4].std() > 1e-3 and seg_t.argmax(1).min() != seg_t.argmax(1).max()
