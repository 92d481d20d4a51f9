"""The ONNX Runtime backend: same outputs as the torch backend, end to end through the
inference stage, model config from the checkpoint, a cached export, clean errors.

Tolerance against PyTorch (fp32): box corners within 0.05 px, probabilities within 2e-4,
arg-max labels equal on at least 99.9 % of pixels (a pixel whose two best classes are
within rounding of each other may flip).
"""
from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import onnx
import pytest
from lively_model import lively_model

from inspectd.backends import create_backend
from inspectd.backends.onnx_model import META_CONFIG, prepare
from inspectd.backends.torch_backend import TorchBackend
from inspectd.errors import InspectdError
from inspectd.model.checkpoint import save_checkpoint
from inspectd.model.export import export_onnx
from inspectd.runtime.frame import Frame
from inspectd.runtime.inference import InferenceConfig, InferenceStage
from inspectd.runtime.merge import MergeConfig

BOX_ATOL = 0.05
PROB_ATOL = 2e-4


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = lively_model()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "lively.safetensors")


@pytest.fixture(scope="module")
def tiles():
    return np.random.default_rng(0).integers(0, 256, (3, 1, 224, 224), dtype=np.uint8)


def ort_cfg(path, **kw) -> InferenceConfig:
    return InferenceConfig(model=path, backend="onnxruntime", device="cpu", threads=1, **kw)


def test_equals_torch_backend(checkpoint, tiles, cache):
    ref = TorchBackend(checkpoint, threads=1)
    det_t, seg_t = ref.infer(tiles)
    b = create_backend(ort_cfg(checkpoint))
    assert b.name == "onnxruntime" and b.precision == "fp32"
    assert (b.input_size, b.channels) == (ref.input_size, ref.channels)
    assert b.class_names == ref.class_names and b.seg_class_names == ref.seg_class_names
    det, seg = b.infer(tiles)
    assert det.dtype == np.float32 and seg.dtype == np.float32
    np.testing.assert_allclose(det[..., :4], det_t[..., :4], atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(det[..., 4:], det_t[..., 4:], atol=PROB_ATOL, rtol=0)
    np.testing.assert_allclose(seg, seg_t, atol=PROB_ATOL, rtol=0)
    # The arg-max inside the graph: the stage's fast path.
    det2, labels, conf = b.infer_labels(tiles)
    assert labels.dtype == np.uint8 and labels.shape == (3, 224, 224) and conf.shape == labels.shape
    np.testing.assert_array_equal(det2, det)
    assert (labels == seg_t.argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(conf, seg_t.max(1), atol=PROB_ATOL, rtol=0)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1      # exported into the cache
    b.close()
    with pytest.raises(RuntimeError):
        b.infer(tiles)


def test_export_is_cached_and_follows_the_checkpoint(tmp_path, cache):
    model, _ = lively_model(seed=1)
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    first = prepare(ckpt)
    stamp = first.path.stat().st_mtime_ns
    again = prepare(ckpt)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp     # not exported twice
    model2, _ = lively_model(seed=2)
    save_checkpoint(model2, ckpt)                     # retrained model at the same path
    third = prepare(ckpt)
    assert third.path != first.path                   # never the stale graph


def test_class_names_come_from_the_checkpoint(tmp_path):
    model, cfg = lively_model()
    names = ["c0", "c1", "c2", "c3", "c4", "c5"]
    cfg.class_names = names        # same number of classes: the weights still fit
    model.cfg = cfg
    ckpt = save_checkpoint(model, tmp_path / "renamed.safetensors")
    b = create_backend(ort_cfg(ckpt))
    assert b.class_names == names
    # The prepared .onnx carries the config itself and can be given directly.
    onnx_path = prepare(ckpt).path
    b2 = create_backend(ort_cfg(onnx_path))
    assert b2.class_names == names and b2.model_config.input_size == [224, 224]


def test_stage_end_to_end_matches_torch(checkpoint):
    rng = np.random.default_rng(3)
    image = rng.integers(60, 140, (300, 420), dtype=np.uint8)
    image[120:160, 200:330] = 230                     # something for the model to react to
    merge = MergeConfig()
    verdicts = {}
    for name, backend in (("torch", TorchBackend(checkpoint, threads=1)),
                          ("onnxruntime", create_backend(ort_cfg(checkpoint)))):
        stage = InferenceStage(backend, ort_cfg(checkpoint), merge)
        f = Frame(index=7, image=image, camera="cam-test", capture_ns=time.monotonic_ns(),
                  capture_wall_ns=time.time_ns())
        verdict, labels = stage.process_with_mask(f)
        assert verdict.meta.index == 7 and labels.shape == image.shape
        verdicts[name] = (verdict, labels)
        stage.close()
    (vt, lt), (vo, lo) = verdicts["torch"], verdicts["onnxruntime"]
    assert vo.status == vt.status
    assert sorted(d.cls for d in vo.defects) == sorted(d.cls for d in vt.defects)
    for d in vo.defects:   # each ORT defect has its torch twin
        assert any(t.cls == d.cls and np.allclose(t.box, d.box, atol=0.5) for t in vt.defects)
    assert (lo == lt).mean() >= 0.999


def test_onnx_without_inspectd_metadata_is_refused(tmp_path):
    model, _ = lively_model()
    plain = export_onnx(model, tmp_path / "plain.onnx")     # `inspectd export`'s output: no metadata
    with pytest.raises(InspectdError, match="no inspectd model config"):
        create_backend(ort_cfg(plain))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InspectdError, match="not a readable ONNX model"):
        create_backend(ort_cfg(junk))


def test_metadata_holds_the_model_config(checkpoint):
    proto = onnx.load(str(prepare(checkpoint).path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert '"class_names"' in meta[META_CONFIG]
    assert [o.name for o in proto.graph.output] == ["det", "seg", "labels", "conf"]


def test_bad_tiles_and_device(checkpoint):
    b = create_backend(ort_cfg(checkpoint))
    with pytest.raises(ValueError, match="uint8 tiles"):
        b.infer(np.zeros((1, 1, 200, 200), np.uint8))
    with pytest.raises(ValueError, match="uint8 tiles"):
        b.infer(np.zeros((1, 1, 224, 224), np.float32))
    with pytest.raises(InspectdError, match="inference.device"):
        create_backend(InferenceConfig(model=checkpoint, backend="onnxruntime", device="cuda"))


def test_missing_onnxruntime_is_a_clean_error(checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)          # import onnxruntime -> ImportError
    monkeypatch.delitem(sys.modules, "inspectd.backends.onnx_backend", raising=False)
    with pytest.raises(InspectdError, match="needs the Python package 'onnxruntime'"):
        create_backend(ort_cfg(checkpoint))
    monkeypatch.undo()
    importlib.import_module("inspectd.backends.onnx_backend")    # back for the other tests


def test_missing_model_file(tmp_path):
    with pytest.raises(InspectdError, match="not found"):
        create_backend(ort_cfg(tmp_path / "nope.safetensors"))
