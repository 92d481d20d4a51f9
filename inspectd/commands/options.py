"""Command-line options shared by ``run`` and ``replay`` that override config keys."""
from __future__ import annotations

import argparse
from pathlib import Path

from inspectd.config import CAMERA_ID, DaemonConfig
from inspectd.errors import InspectdError


def apply_common_overrides(cfg: DaemonConfig, args: argparse.Namespace) -> None:
    """--camera, --publish, --model: command-line values win over the config file."""
    camera = getattr(args, "camera", None)
    if camera is not None:
        if not CAMERA_ID.match(camera):
            raise InspectdError(f"--camera {camera!r}: expected letters, digits, '_', '-' or '.'")
        cfg.camera = camera
    publish = getattr(args, "publish", None)
    if publish is not None:
        cfg.bus.publish = publish
    model = getattr(args, "model", None)
    if model is not None:
        path = Path(model).expanduser()
        if not path.exists():
            raise InspectdError(f"--model {model}: model file not found")
        cfg.inference.model = path.resolve()
