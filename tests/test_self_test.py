"""Nothing silently misjudged by a broken model: non-finite weights fail at load, and the
start-up self-test (a known frame through backend, decode and merge) fails a model that loads
but does not work, each with one line and exit 78 (the model file is the problem).

Real model files (the tiny preset, broken on purpose), a real recording and the real CLI.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from stand_ins import ThresholdBackend, tiny_checkpoint, write_video

from inspectd.config import default_config
from inspectd.errors import InspectdError
from inspectd.model.checkpoint import load_checkpoint
from inspectd.runtime.inference import InferenceStage
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.selftest import run_self_test

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG")}


def _rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of checkpoint ``src`` with its tensors changed by ``change(name, tensor)``."""
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        state = {k: change(k, f.get_tensor(k)) for k in f.keys()}
    save_file(state, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("selftest")
    good = tiny_checkpoint(d / "good.safetensors")
    nan = _rewrite(good, d / "nan.safetensors", lambda k, t: torch.full_like(t, float("nan"))
                   if t.is_floating_point() else t)
    zero = _rewrite(good, d / "zero.safetensors", lambda k, t: torch.zeros_like(t)
                    if t.is_floating_point() and not k.endswith("running_var") else t)
    # Finite weights whose products overflow: every convolution's weights scaled by 1e10.
    huge = _rewrite(good, d / "huge.safetensors", lambda k, t: t * 1e10 if t.ndim == 4 else t)
    video = d / "v.avi"
    write_video(video, 4, size=(240, 200))
    cfg = d / "torch.yaml"
    cfg.write_text("inference:\n  backend: torch\n  device: cpu\n")
    return {"good": good, "nan": nan, "zero": zero, "huge": huge, "video": video, "torch_cfg": cfg}


def _replay(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspectd.cli", "replay", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)


def _one_line(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith("inspectd: "), (r.returncode, r.stderr)
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_non_finite_weights_fail_at_load(files):
    with pytest.raises(InspectdError, match=r"nan\.safetensors: \d+ weights are NaN or infinite"):
        load_checkpoint(files["nan"])
    line = _one_line(_replay(files["video"], "--model", files["nan"], "--config", files["torch_cfg"]),
                     78, "nan.safetensors", "NaN or infinite")   # a wrong model: configuration (docs/cli.md)
    assert "Traceback" not in line


def test_a_model_that_does_not_respond_to_its_input_fails_the_self_test(files):
    _one_line(_replay(files["video"], "--model", files["zero"], "--config", files["torch_cfg"]),
              78, "zero.safetensors", "self-test failed", "does not respond to its input")


def test_a_model_whose_outputs_overflow_fails_the_self_test(files):
    _one_line(_replay(files["video"], "--model", files["huge"], "--config", files["torch_cfg"]),
              78, "huge.safetensors", "self-test failed", "NaN or infinite")


def test_a_sound_model_passes_on_every_backend_the_default_may_choose(files, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    from inspectd.backends import create_backend
    for backend in ("torch", "openvino", "onnxruntime"):
        pytest.importorskip(backend)
        cfg = default_config()
        cfg.inference.model, cfg.inference.backend = files["good"], backend
        b = create_backend(cfg.inference)
        try:
            found = run_self_test(InferenceStage(b, cfg.inference, cfg.merge), (200, 240), "m")
            assert found["status"] in ("ok", "reject")
        finally:
            b.close()


class _Broken(ThresholdBackend):
    def __init__(self, fault: str):
        super().__init__(input_size=(224, 224))
        self.fault = fault

    def infer(self, tiles):
        det, seg = super().infer(tiles)
        if self.fault == "nan":
            seg[:, :, :5, :5] = np.nan
        elif self.fault == "shape":
            det = det[:, :, :-1]
        elif self.fault == "range":
            det[..., 4] = 7.0
        elif self.fault == "constant":
            det[:], seg[:] = 0.25, 0.25
        return det, seg


@pytest.mark.parametrize("fault, message", [
    ("nan", "NaN or infinite"), ("shape", "detection output has shape"),
    ("range", "outside [0, 1]"), ("constant", "does not respond to its input"),
])
def test_the_pipeline_refuses_to_start_on_a_broken_runtime(files, fault, message):
    cfg = default_config()
    cfg.source.path = str(files["video"])
    with pytest.raises(InspectdError, match="self-test failed: .*" + message.replace("[", r"\[")) as err:
        Pipeline(cfg, backend=_Broken(fault), handle_signals=False)
    assert err.value.exit_code == 78


def test_a_sound_stand_in_starts_and_the_self_test_warms_the_real_frame_size(files):
    cfg = default_config()
    cfg.source.path = str(files["video"])
    backend = ThresholdBackend()
    pipe = Pipeline(cfg, backend=backend, handle_signals=False)
    assert backend.calls == 3           # the picture, its negative, then the frame through the stage
    assert pipe.run().counters["inspected"] == 4
