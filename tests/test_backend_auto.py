"""``inference.backend: auto`` (the default): CUDA where a GPU is, else the fastest CPU runtime
installed, logged with its reason.

Runtimes cannot be uninstalled per test: an absent one is simulated by hiding its module from
``importlib.util.find_spec``, which is all the choice looks at.
"""
from __future__ import annotations

import importlib.util

import pytest
import structlog
import torch

from inspectd.backends import choose_backend, create_backend
from inspectd.config import default_config
from inspectd.runtime.inference import InferenceConfig

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _hide(monkeypatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_auto_is_the_default_everywhere():
    assert InferenceConfig().backend == "auto" and InferenceConfig().precision == "auto"
    assert default_config().inference.backend == "auto"
    from pathlib import Path

    from inspectd.config import load_config
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("inspectd.yaml", "camera-example.yaml"):
        assert load_config(root / name).inference.backend == "auto", name


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU: auto takes CUDA (tested below)")
@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed")
def test_auto_on_a_cpu_takes_openvino_with_bf16_where_the_cpu_has_it():
    from inspectd.backends.openvino_backend import cpu_has_bf16
    c = choose_backend(InferenceConfig())
    assert (c.backend, c.device) == ("openvino", "cpu")
    assert c.precision == ("bf16" if cpu_has_bf16() else "fp32")
    assert "no CUDA device" in c.reason and ("native bf16" in c.reason) == cpu_has_bf16()
    # precision can still be pinned
    assert choose_backend(InferenceConfig(precision="fp32")).precision == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU: auto takes CUDA")
def test_auto_falls_back_in_order_and_says_why(monkeypatch):
    _hide(monkeypatch, "openvino")
    c = choose_backend(InferenceConfig())
    assert c.backend == "onnxruntime" and "openvino not installed" in c.reason
    _hide(monkeypatch, "openvino", "onnxruntime")
    c = choose_backend(InferenceConfig())
    assert (c.backend, c.device) == ("torch", "cpu")
    assert "neither OpenVINO nor ONNX Runtime" in c.reason and "pip install" in c.reason


def test_explicit_backend_and_device_are_kept():
    assert choose_backend(InferenceConfig(backend="torch")).backend == "torch"
    assert choose_backend(InferenceConfig(backend="onnxruntime", device="cpu")).backend == "onnxruntime"
    # auto with device: cpu never takes the GPU
    assert choose_backend(InferenceConfig(device="cpu")).device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_auto_takes_cuda_where_a_gpu_is():
    c = choose_backend(InferenceConfig())
    assert (c.backend, c.device) == ("torch", "cuda") and "CUDA device" in c.reason


def test_the_choice_is_logged_with_its_reason(tmp_path, monkeypatch):
    from stand_ins import tiny_checkpoint
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    _hide(monkeypatch, "openvino", "onnxruntime")        # torch: quick to build
    ckpt = tiny_checkpoint(tmp_path / "m.safetensors")
    with structlog.testing.capture_logs() as logs:
        backend = create_backend(InferenceConfig(model=ckpt, device="cpu"))
    backend.close()
    chosen = [e for e in logs if e["event"] == "inference_backend"]
    assert len(chosen) == 1 and chosen[0]["backend"] == backend.name == "torch"
    assert chosen[0]["requested"] == "auto" and "pip install" in chosen[0]["reason"]
