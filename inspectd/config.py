"""The daemon's configuration: one YAML file, one section per subsystem.

Each subsystem owns its section's dataclass (``source``, ``ring``, ``inference``, ``merge``,
``line``, ``bus``); this module composes them with the process-wide parts (``camera``,
``log``, ``service``) and loads the file. Every key has a default; a file need only say what
differs. Relative paths in a file are taken relative to the file's own folder, so a config
means the same thing whichever directory the daemon is started from.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from inspectd.backends.config import InferenceConfig
from inspectd.bus.config import BusConfig
from inspectd.configtools import doc, fail, from_mapping, load_yaml
from inspectd.control.config import ControlConfig
from inspectd.line import LineConfig
from inspectd.logging_setup import LogConfig
from inspectd.runtime.merge import MergeConfig
from inspectd.runtime.periodic import PeriodicConfig
from inspectd.runtime.ringbuffer import RingConfig
from inspectd.runtime.sources.config import SourceConfig

CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class ServiceConfig:
    notify: bool = doc(
        "Speak systemd's notify protocol when NOTIFY_SOCKET is set (READY, STATUS, WATCHDOG, STOPPING).",
        default=True,
    )
    ready_when: Literal["first-verdict", "started"] = doc(
        "When READY=1 is sent: `first-verdict` (the model is loaded and the first frame has been "
        "inspected) or `started` (the threads are running; for cameras that are only triggered "
        "while the line moves, so that start-up does not wait for the line).",
        default="first-verdict",
    )
    status_interval_s: float = doc(
        "Seconds between STATUS updates to systemd (and the supervisor's checks).", default=1.0
    )
    watchdog_when_idle: bool = doc(
        "Also feed systemd's watchdog while no frame is waiting to be inspected and the source "
        "still answers (a triggered camera whose reads time out because the line stands). By "
        "default the watchdog is fed only while frames are being inspected, so that a source "
        "that stops delivering gets the service restarted.",
        default=False,
    )
    shutdown_queued: Literal["inspect", "report"] = doc(
        "On SIGTERM/SIGINT, what happens to frames already in the ring buffer: `inspect` them "
        "(within `shutdown_grace_s`) or `report` them at once as uninspected. Frames being "
        "inspected at that moment are always finished.",
        default="inspect",
    )
    shutdown_grace_s: float = doc(
        "Longest time, in seconds, spent inspecting queued frames after SIGTERM; frames still "
        "queued then are reported as uninspected. Keep it below the unit's TimeoutStopSec.",
        default=5.0,
    )
    flush_timeout_s: float = doc(
        "Longest time, in seconds, the publisher may take at shutdown to send what it holds.",
        default=2.0,
    )

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if not self.status_interval_s > 0:
            fail(where, p + "status_interval_s", f"must be a positive number of seconds, got {self.status_interval_s!r}")
        for name in ("shutdown_grace_s", "flush_timeout_s"):
            if getattr(self, name) < 0:
                fail(where, p + name, f"must be zero or more seconds, got {getattr(self, name)!r}")


@dataclass
class AlarmsConfig:
    periodic: PeriodicConfig = doc(
        "Periodic defects: the same mark repeating at a constant pitch at one cross position "
        "(a damaged roll). Raises `alarm` events (docs/events.md#alarm).",
        default_factory=PeriodicConfig,
    )


@dataclass
class DaemonConfig:
    camera: str = doc(
        "Identifier of this camera: it names the process's events on the bus and its log lines. "
        "Letters, digits, '_', '-', '.'.",
        default="cam0",
    )
    source: SourceConfig = doc("Where frames come from: a camera, a video file or an image folder.",
                               default_factory=SourceConfig)
    line: LineConfig = doc("The rolling line: speed, frame geometry, the reject gate.", default_factory=LineConfig)
    ring: RingConfig = doc("The ring buffer between acquisition and inference.", default_factory=RingConfig)
    inference: InferenceConfig = doc("The model and how it runs.", default_factory=InferenceConfig)
    merge: MergeConfig = doc("How detections and segmentation become defects and a verdict.",
                             default_factory=MergeConfig)
    bus: BusConfig = doc("The ZeroMQ event bus.", default_factory=BusConfig)
    control: ControlConfig = doc("The control socket: the line says when coils start and end.",
                                 default_factory=ControlConfig)
    alarms: AlarmsConfig = doc("Alarms raised from the defects as they are published.",
                               default_factory=AlarmsConfig)
    log: LogConfig = doc("Logging.", default_factory=LogConfig)
    service: ServiceConfig = doc("Process supervision: systemd notify, watchdog, shutdown.",
                                 default_factory=ServiceConfig)

    def validate(self, where: str, prefix: str = "") -> None:
        if not CAMERA_ID.match(self.camera):
            fail(where, "camera", f"expected letters, digits, '_', '-' or '.' (at most 64), got {self.camera!r}")


def _absolute(p: Path, base: Path) -> Path:
    """``p`` made absolute against ``base`` ('~' expanded, '..' folded; symlinks kept)."""
    return Path(os.path.normpath(base / p.expanduser()))


def resolve_paths(obj: Any, base: Path) -> None:
    """Make every relative ``Path`` value (also in lists and nested sections) relative to ``base``."""
    def fix(p: Path) -> Path:
        return _absolute(p, base)

    if not dataclasses.is_dataclass(obj):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Path):
            setattr(obj, f.name, fix(value))
        elif isinstance(value, list) and any(isinstance(v, Path) for v in value):
            setattr(obj, f.name, [fix(v) if isinstance(v, Path) else v for v in value])
        elif dataclasses.is_dataclass(value):
            resolve_paths(value, base)


def default_config() -> DaemonConfig:
    """The configuration with every key at its default (what an empty file gives)."""
    return DaemonConfig()


# File paths that sections keep as strings (``Path`` fields are found by their type).
STRING_PATH_KEYS = ("source.path", "source.genicam.cti")


def _resolve_string_paths(cfg: DaemonConfig, base: Path) -> None:
    for dotted in STRING_PATH_KEYS:
        *parents, name = dotted.split(".")
        obj: Any = cfg
        for part in parents:
            obj = getattr(obj, part)
        value = getattr(obj, name)
        if isinstance(value, str) and value:
            setattr(obj, name, str(_absolute(Path(value), base)))
        elif isinstance(value, list):
            setattr(obj, name, [str(_absolute(Path(v), base)) if isinstance(v, str) else v for v in value])


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> DaemonConfig:
    """Load and validate a daemon config file; errors name the file and the key.

    Relative paths in the file are made absolute against the file's folder.
    ``overrides`` maps dotted keys (``"source.path"``) to values that replace the file's
    before validation: ``replay FILE`` needs no ``source.path`` in the file.
    """
    path = Path(path)
    data = load_yaml(path)
    for dotted, value in (overrides or {}).items():
        *parents, name = dotted.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[name] = value
    cfg = from_mapping(DaemonConfig, data, str(path))
    base = path.resolve().parent
    resolve_paths(cfg, base)
    _resolve_string_paths(cfg, base)
    return cfg
