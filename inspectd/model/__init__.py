"""The multitask defect network (after Zhang et al., Sensors 2022, 22, 9845)."""
from __future__ import annotations

from pathlib import Path

# The trained default model shipped with the package (see models/README.md for its card).
_DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "inspectd-n-neu.safetensors"


def default_model_path() -> Path:
    return _DEFAULT_MODEL
