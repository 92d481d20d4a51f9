"""Command-line options shared by ``run`` and ``replay`` that override config keys."""
from __future__ import annotations

import argparse
from pathlib import Path

from inspectd.config import CAMERA_ID, DaemonConfig
from inspectd.errors import ConfigError

# Config keys that a command-line option of run/replay may set, and the option.
OPTION_KEYS = {"camera": "--camera", "bus.publish": "--publish", "inference.model": "--model"}


def given_options(args: argparse.Namespace) -> dict[str, str]:
    """{config key: option} for the options given: a check that fails on such a key names the
    option, not the config file (it is configuration all the same: exit 78)."""
    return {key: f"{opt} {getattr(args, opt[2:])}" for key, opt in OPTION_KEYS.items()
            if getattr(args, opt[2:], None) is not None}


def apply_common_overrides(cfg: DaemonConfig, args: argparse.Namespace) -> None:
    """--camera, --publish, --model: command-line values win over the config file."""
    camera = getattr(args, "camera", None)
    if camera is not None:
        if not CAMERA_ID.match(camera):
            raise ConfigError(f"--camera {camera!r}: expected letters, digits, '_', '-' or '.'")
        cfg.camera = camera
    publish = getattr(args, "publish", None)
    if publish is not None:
        cfg.bus.publish = publish
    model = getattr(args, "model", None)
    if model is not None:
        path = Path(model).expanduser()
        if not path.exists():
            raise ConfigError(f"--model {model}: model file not found")
        cfg.inference.model = path.resolve()
