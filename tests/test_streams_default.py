"""inference.streams and inference.in_flight at 0 (the defaults): OpenVINO computes one frame per
core on a CPU of 2 or more cores, and the stage keeps one frame more with it than it computes."""
from __future__ import annotations

import os

import pytest

from inspectd.backends.config import InferenceConfig
from inspectd.configtools import ConfigError, from_mapping
from inspectd.runtime.inference import InferenceStage
from inspectd.runtime.merge import MergeConfig
from stand_ins import ThresholdBackend

CORES = os.cpu_count() or 1


def test_defaults_resolve_by_backend_and_cores():
    cfg = InferenceConfig()
    assert (cfg.streams, cfg.in_flight) == (0, 0)
    assert cfg.streams_for("openvino") == min(2, CORES)
    assert cfg.streams_for("torch") == cfg.streams_for("onnxruntime") == 1
    assert cfg.in_flight_for(1) == 2 and cfg.in_flight_for(2) == 3
    # Never more streams than frames in flight, and explicit values win.
    assert InferenceConfig(in_flight=1).streams_for("openvino") == 1
    assert InferenceConfig(streams=1).streams_for("openvino") == 1
    assert InferenceConfig(in_flight=4).in_flight_for(2) == 4


def test_the_stage_keeps_one_frame_more_than_the_backend_computes():
    assert InferenceStage(ThresholdBackend(), InferenceConfig(), MergeConfig()).in_flight == 2
    two = ThresholdBackend()
    two.concurrent_calls = 2
    stage = InferenceStage(two, InferenceConfig(), MergeConfig())
    assert stage.in_flight == 3
    stage.close_model()


@pytest.mark.parametrize("section, key", [
    ({"in_flight": 5}, "inference.in_flight"),
    ({"in_flight": -1}, "inference.in_flight"),
    ({"streams": -1}, "inference.streams"),
    ({"streams": 3, "in_flight": 2}, "inference.streams"),
    ({"streams": 2, "backend": "onnxruntime"}, "inference.streams"),
])
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(InferenceConfig, section, "cfg.yaml", "inference")


def test_openvino_runs_two_streams_by_default(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    if CORES < 2:
        pytest.skip("one core: one stream")
    from inspectd.backends.openvino_backend import create
    from stand_ins import tiny_checkpoint
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    backend = create(ckpt, InferenceConfig(model=ckpt, backend="openvino", precision="fp32"))
    try:
        assert backend.concurrent_calls == 2
        stage = InferenceStage(backend, InferenceConfig(model=ckpt), MergeConfig())
        assert stage.in_flight == 3
        stage.close_model()
    finally:
        backend.close()
