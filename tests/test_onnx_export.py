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


def test_export_command_writes_a_model_the_runtime_backends_load(tmp_path, capsys):
    """`inspectd export` -> a file that works as inference.model: config and class names in the
    metadata, the label outputs the backends ask for, the same numbers as PyTorch."""
    from inspectd.backends import create_backend
    from inspectd.backends.torch_backend import TorchBackend
    from inspectd.cli import main
    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.runtime.inference import InferenceConfig

    model, cfg = lively_model()
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(ckpt), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    backend = create_backend(InferenceConfig(model=out, backend="onnxruntime", device="cpu"))
    assert backend.class_names == list(cfg.class_names)
    tiles = np.random.default_rng(2).integers(0, 256, (2, 1, 224, 224), dtype=np.uint8)
    det, labels, conf = backend.infer_labels(tiles)
    det_t, seg_t = TorchBackend(ckpt, threads=1).infer(tiles)
    np.testing.assert_allclose(det[..., 4:], det_t[..., 4:], atol=PROB_ATOL, rtol=0)
    assert (labels == seg_t.argmax(1)).mean() >= 0.999
    assert main(["export", "--model", str(ckpt), "--out", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
