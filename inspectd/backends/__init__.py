"""Inference backends behind one interface (``base.Backend``), chosen by the config."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog

from inspectd.errors import InspectdError

log = structlog.get_logger("inspectd.backends")

if TYPE_CHECKING:
    from inspectd.backends.base import Backend
    from inspectd.backends.config import InferenceConfig


def model_path(cfg: InferenceConfig) -> Path:
    """The checkpoint the config names, or the shipped default model; it must exist."""
    if cfg.model is not None:
        path = Path(cfg.model)
        if not path.is_file():
            raise InspectdError(f"inference.model: model file {path} not found")
        return path
    from inspectd.model import default_model_path
    path = default_model_path()
    if not path.is_file():
        raise InspectdError(
            f"inference.model: not set, and the shipped default model {path} is missing; "
            "set inference.model (or --model) to a checkpoint")
    return path


@dataclass(frozen=True)
class Choice:
    """What ``inference.backend: auto`` (and ``precision: auto``) came to, and why."""

    backend: str
    precision: str
    device: str
    reason: str


def _installed(*modules: str) -> str | None:
    """None if every module can be imported, else the first that cannot."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def _openvino_precision(requested: str) -> tuple[str, str]:
    if requested != "auto":
        return requested, f"precision {requested} as configured"
    from inspectd.backends.openvino_backend import cpu_has_bf16
    if cpu_has_bf16():
        return "bf16", "this CPU has native bf16 (avx512_bf16/AMX): bf16, same accuracy (models/README.md)"
    return "fp32", "this CPU has no native bf16: fp32"


def choose_backend(cfg: InferenceConfig) -> Choice:
    """Resolve ``auto``: PyTorch on CUDA where a GPU is (and ``device`` is not ``cpu``); else
    the fastest CPU runtime installed (OpenVINO, then ONNX Runtime, then PyTorch: about 4, 2.5
    and 1 times the speed on the test machine, BENCHMARKS.md). An explicit backend is kept."""
    precision: str = cfg.precision
    if cfg.backend != "auto":
        if cfg.backend == "openvino":
            precision, why = _openvino_precision(precision)
            return Choice("openvino", precision, cfg.device, f"configured; {why}")
        return Choice(cfg.backend, "fp32", cfg.device, "configured")
    if cfg.device != "cpu":
        import torch
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            return Choice("torch", "fp16" if cfg.half else "fp32", "cuda" if cfg.device == "auto" else cfg.device,
                          f"CUDA device {name}")
        if cfg.device.startswith("cuda"):
            return Choice("torch", "fp32", cfg.device, "inference.device asks for CUDA")   # fails with one line
    missing = _installed("openvino", "onnx", "onnxscript")
    if missing is None:
        precision, why = _openvino_precision(precision)
        return Choice("openvino", precision, "cpu", f"no CUDA device; OpenVINO installed; {why}")
    if _installed("onnxruntime", "onnx", "onnxscript") is None:
        return Choice("onnxruntime", "fp32", "cpu",
                      f"no CUDA device; OpenVINO not usable ({missing} not installed); ONNX Runtime installed")
    return Choice("torch", "fp32", "cpu",
                  f"no CUDA device; neither OpenVINO nor ONNX Runtime installed ({missing} missing): "
                  "PyTorch on the CPU, several times slower (pip install inspectd[openvino])")


def create_backend(cfg: InferenceConfig) -> Backend:
    """Build the backend ``cfg.backend`` names (``auto``: ``choose_backend``), loaded with the
    configured model; the choice and its reason are logged.

    Errors (missing model file, unreadable or mismatched checkpoint, unavailable device or
    runtime) are ``InspectdError`` with one line naming what is wrong.
    """
    path = model_path(cfg)
    choice = choose_backend(cfg)
    log.info("inference_backend", backend=choice.backend, precision=choice.precision, device=choice.device,
             reason=choice.reason, requested=cfg.backend)
    if choice.backend != cfg.backend or choice.precision != cfg.precision:
        # The choice's values are among the config's literals (cuda may carry an index).
        cfg = dataclasses.replace(cfg, backend=cast(Any, choice.backend), device=cast(Any, choice.device),
                                  precision=cast(Any, choice.precision if choice.backend == "openvino" else "fp32"))
    if cfg.backend == "torch":
        from inspectd.backends.torch_backend import TorchBackend
        return TorchBackend(path, device=cfg.device, half=cfg.half, threads=cfg.threads,
                            output_sets=cfg.in_flight_for(1))
    if cfg.backend == "onnxruntime":
        try:
            mod = importlib.import_module("inspectd.backends.onnx_backend")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("inspectd"):
                raise InspectdError("inference.backend: 'onnxruntime' is not available in this build") from None
            raise InspectdError(
                f"inference.backend: 'onnxruntime' needs the Python package {exc.name!r}; "
                "install inspectd[onnx]") from None
        return mod.create(path, cfg)
    if cfg.backend == "openvino":
        try:
            mod = importlib.import_module("inspectd.backends.openvino_backend")
        except ModuleNotFoundError as exc:
            raise InspectdError(
                f"inference.backend: 'openvino' needs the Python package {exc.name!r}; "
                "install inspectd[openvino]") from None
        return mod.create(path, cfg)
    raise InspectdError(
        f"inference.backend: unknown backend {cfg.backend!r} (known: torch, onnxruntime, openvino)")
