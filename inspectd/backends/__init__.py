"""Inference backends behind one interface (``base.Backend``), chosen by the config."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from inspectd.errors import InspectdError

if TYPE_CHECKING:
    from inspectd.backends.base import Backend
    from inspectd.runtime.inference import InferenceConfig


def model_path(cfg: "InferenceConfig") -> Path:
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


def create_backend(cfg: "InferenceConfig") -> "Backend":
    """Build the backend ``cfg.backend`` names, loaded with the configured model.

    Errors (missing model file, unreadable or mismatched checkpoint, unavailable device or
    runtime) are ``InspectdError`` with one line naming what is wrong.
    """
    path = model_path(cfg)
    if cfg.backend == "torch":
        from inspectd.backends.torch_backend import TorchBackend
        return TorchBackend(path, device=cfg.device, half=cfg.half, threads=cfg.threads,
                            output_sets=getattr(cfg, "in_flight", 1))
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
