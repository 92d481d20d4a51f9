"""The OpenVINO backend: fp32 gives PyTorch's numbers; bf16 runs where the CPU has it.
Skipped when openvino is not installed (it is an optional extra: inspectd[openvino]).

Tolerance against PyTorch (fp32): box corners within 0.05 px, probabilities within 2e-4.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino")

from lively_model import lively_model  # noqa: E402

from inspectd.backends.onnx_model import prepare  # noqa: E402
from inspectd.backends.openvino_backend import OpenVinoBackend, cpu_has_bf16, create  # noqa: E402
from inspectd.backends.torch_backend import TorchBackend  # noqa: E402
from inspectd.errors import InspectdError  # noqa: E402
from inspectd.model.checkpoint import save_checkpoint  # noqa: E402
from inspectd.runtime.inference import InferenceConfig  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("INSPECTD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    model, _ = lively_model()
    ckpt = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "lively.safetensors")
    tiles = np.random.default_rng(0).integers(0, 256, (2, 1, 224, 224), dtype=np.uint8)
    det, seg = TorchBackend(ckpt, threads=1).infer(tiles)
    yield ckpt, prepare(ckpt), tiles, det, seg
    mp.undo()


def test_fp32_equals_torch(setup):
    _, model, tiles, det_t, seg_t = setup
    b = OpenVinoBackend(model, threads=1)
    det, seg = b.infer(tiles)
    np.testing.assert_allclose(det[..., :4], det_t[..., :4], atol=0.05, rtol=0)
    np.testing.assert_allclose(det[..., 4:], det_t[..., 4:], atol=2e-4, rtol=0)
    np.testing.assert_allclose(seg, seg_t, atol=2e-4, rtol=0)
    det2, labels, _ = b.infer_labels(tiles)
    np.testing.assert_allclose(det2, det, atol=1e-5)
    assert labels.dtype == np.uint8 and (labels == seg_t.argmax(1)).mean() >= 0.999
    # Another batch size compiles another model; the first keeps working.
    det1, _ = b.infer(tiles[:1])
    np.testing.assert_allclose(det1, det[:1], atol=1e-4)
    assert b.class_names == model.config.class_names


@pytest.mark.skipif(not cpu_has_bf16(), reason="CPU without native bf16")
def test_bf16_runs_close_to_fp32(setup):
    _, model, tiles, _, seg_t = setup
    b = OpenVinoBackend(model, threads=1, precision="bf16")
    det, _, conf = b.infer_labels(tiles)
    assert np.isfinite(det).all() and np.isfinite(conf).all()
    # bf16 keeps 8 bits of mantissa: probabilities move, but stay near.
    assert np.abs(conf - seg_t.max(1)).mean() < 0.05


def test_config_errors(setup):
    ckpt = setup[0]
    with pytest.raises(InspectdError, match="inference.device"):
        create(ckpt, InferenceConfig(model=ckpt, device="cuda"))
    with pytest.raises(InspectdError, match="fp32 or bf16"):
        OpenVinoBackend(setup[1], precision="int4")


def test_selected_from_the_config(tmp_path, monkeypatch):
    from inspectd.backends import create_backend
    from inspectd.config import load_config

    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = save_checkpoint(lively_model()[0], tmp_path / "m.safetensors")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"inference:\n  model: {ckpt}\n  backend: openvino\n  precision: fp32\n")
    backend = create_backend(load_config(cfg_file).inference)
    try:
        assert backend.name == "openvino"
        det, seg = backend.infer(np.zeros((1, 1, 224, 224), np.uint8))
        assert det.shape[0] == 1 and seg.shape[-2:] == (224, 224)
    finally:
        backend.close()


def test_streams_run_calls_concurrently_with_the_same_results(setup):
    """Two streams: two calls at once from two threads, each answer that of its own tiles."""
    import threading

    _, model, tiles, det_t, _ = setup
    b = OpenVinoBackend(model, threads=2, streams=2)
    assert b.concurrent_calls == 2
    inputs = [tiles[:1], tiles[1:]] * 6
    out: list = [None] * len(inputs)
    barrier = threading.Barrier(2)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(k, len(inputs), 2):
            out[i] = b.infer(inputs[i])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, det in enumerate(out):
        np.testing.assert_allclose(det[0, :, 4:], det_t[i % 2, :, 4:], atol=2e-4, rtol=0)
    assert len(b._pools) == 1 and b._pools[next(iter(b._pools))].qsize() == 2   # both requests back
    b.close()


def test_streams_config_errors(setup):
    with pytest.raises(InspectdError, match="inference.streams"):
        OpenVinoBackend(setup[1], streams=0)
    from inspectd.configtools import ConfigError
    for kw, where in (({"backend": "openvino", "streams": 2, "in_flight": 1}, "inference.streams"),
                      ({"backend": "torch", "streams": 2, "in_flight": 2}, "inference.streams"),
                      ({"in_flight": 5}, "inference.in_flight")):
        with pytest.raises(ConfigError, match=where):
            InferenceConfig(**kw).validate("c.yaml", "inference")
