"""What is known about a frame apart from its pixels (the runtime's ``Frame`` holds those)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoilMark:
    """The coil a frame belongs to: its id and the strip position of its head (metres)."""

    coil: str
    head_m: float


@dataclass(slots=True)
class FrameMeta:
    """Everything about a frame except its pixels: what outlives the ring-buffer slot."""

    index: int
    camera: str
    capture_ns: int
    capture_wall_ns: int
    height: int
    width: int
    camera_frame_id: int | None = None
    camera_timestamp_ns: int | None = None
    strip_position_m: float | None = None
    coil: CoilMark | None = None
