"""Checkpoints: weights, model config and class names in one safetensors file.

safetensors holds only tensors plus string metadata, so loading never unpickles arbitrary
objects. The model config travels as JSON in the metadata; a checkpoint loaded against a
config it does not match fails with one line naming the first mismatch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inspectd.errors import InspectdError
from inspectd.model.config import ModelConfig
from inspectd.model.network import MultiTaskNet, build_model

FORMAT = "inspectd-model"
FORMAT_VERSION = "1"


def save_checkpoint(model: MultiTaskNet, path: str | Path, info: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """``half`` stores floating-point tensors as float16 (half the file; loading casts back to
    the model's dtype, costing nothing measurable in accuracy): how the shipped model is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(model.cfg.to_dict()),
        "info": json.dumps(info or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # never leave a half-written model where the daemon looks for one
    return path


def read_metadata(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        raise InspectdError(f"model file {path} not found")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InspectdError(f"model file {path} is not a readable inspectd checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InspectdError(f"model file {path} is not an inspectd checkpoint (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InspectdError(
            f"model file {path} has checkpoint format {meta.get('format_version')}, this inspectd reads {FORMAT_VERSION}")
    cfg = ModelConfig.from_dict(json.loads(meta["model_config"]), f"{path} (model config)")
    return cfg, json.loads(meta.get("info") or "{}")


def _first_config_difference(a: ModelConfig, b: ModelConfig) -> str | None:
    da, db = a.to_dict(), b.to_dict()
    for k in da:
        if k != "name" and da[k] != db.get(k):
            return f"{k}: checkpoint has {db.get(k)!r}, config expects {da[k]!r}"
    return None


def load_checkpoint(path: str | Path, expected: ModelConfig | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[MultiTaskNet, ModelConfig]:
    """Rebuild the model a checkpoint describes and load its weights.

    With ``expected``, the checkpoint must describe that same network (class names, sizes...).
    """
    path = Path(path)
    cfg, _ = read_metadata(path)
    if expected is not None:
        diff = _first_config_difference(expected, cfg)
        if diff:
            raise InspectdError(f"model file {path} does not match the model config: {diff}")
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise InspectdError(f"model file {path} could not be read: {exc}") from None
    model = build_model(cfg)
    load_state(model, state, str(path))
    return model, cfg


def load_state(model: MultiTaskNet, state: dict[str, torch.Tensor], where: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise InspectdError(f"{where}: weights missing for {missing[0]} (and {len(missing) - 1} more)")
    if unexpected:
        raise InspectdError(f"{where}: unexpected weights {unexpected[0]} (and {len(unexpected) - 1} more)")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise InspectdError(
                f"{where}: weight {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    # A NaN or inf anywhere ends up in every output below it: such a model judges nothing.
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in state.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        first = next(iter(bad))
        raise InspectdError(
            f"{where}: {sum(bad.values())} weights are NaN or infinite ({first}: {bad[first]} of "
            f"{state[first].numel()}; {len(bad)} tensors in all): the file is damaged or comes from a "
            "training run that diverged")
    model.load_state_dict(state)
