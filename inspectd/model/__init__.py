"""The multitask defect network (after Zhang et al., Sensors 2022, 22, 9845)."""
from __future__ import annotations

from pathlib import Path

# The trained default model, shipped inside the package (package data, so that a plain
# `pip install` carries it); its card is models/README.md in the source tree.
_DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "inspectd-n-light-neu.safetensors"


def default_model_path() -> Path:
    return _DEFAULT_MODEL
