"""The rolling line: where on the strip a frame lies, and when that strip reaches the reject gate.

Geometry (one convention for the whole daemon):

- The strip moves past the camera, then, ``gate_distance_m`` further on, past the reject gate.
- A frame's first row (row 0) is its downstream edge: the part of the strip that reaches the
  gate first. Row ``y`` lies ``y * mm_per_px`` millimetres further upstream. A camera mounted
  the other way round has its image flipped by the source, not here.
- The strip position of a frame is the position of its first row, in metres, counted from
  the start of the stream (or from the encoder's zero). Positions grow with time: frame
  ``i + 1`` is further upstream than frame ``i``.
- ``gate_distance_m`` is measured from the camera's view of the first row at the moment of
  capture to the gate. So the first row reaches the gate ``gate_distance_m / speed_m_per_s``
  after capture, and the frame's last row ``frame_length / speed`` later: between those two
  instants the gate must act on the frame's strip.

Times are taken at the configured line speed; an encoder gives positions, not speed.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from inspectd.configtools import doc, fail
from inspectd.errors import InspectdError


@dataclass
class LineConfig:
    speed_m_per_s: float = doc(
        "Line speed in metres per second. Turns strip distances into times: the deadline by which "
        "the reject gate must act on a frame, and (without an encoder) nothing else.",
        default=10.0,
    )
    mm_per_px: float = doc(
        "Size of one image pixel on the strip, in millimetres (the same along and across the strip). "
        "Converts defect boxes and areas to strip millimetres.",
        default=0.5,
    )
    gate_distance_m: float = doc(
        "Distance in metres from where the camera sees a frame's first (downstream) row to the "
        "reject gate.",
        default=5.0,
    )
    frame_length_m: float | None = doc(
        "Length of strip, in metres, that one frame advances. null: the frame height times "
        "`mm_per_px` (a line-scan camera or a camera triggered once per frame length).",
        default=None,
    )
    encoder_m_per_count: float | None = doc(
        "Metres of strip per encoder count. null: no encoder; a frame's strip position is its "
        "index times the frame length.",
        default=None,
    )
    encoder_zero_count: int = doc("Encoder count at strip position 0.", default=0)

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        for name in ("speed_m_per_s", "mm_per_px"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                fail(where, p + name, f"must be a positive number, got {value!r}")
        if not (math.isfinite(self.gate_distance_m) and self.gate_distance_m >= 0):
            fail(where, p + "gate_distance_m", f"must be zero or more metres, got {self.gate_distance_m!r}")
        for name in ("frame_length_m", "encoder_m_per_count"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                fail(where, p + name, f"must be a positive number or null, got {value!r}")

    def frame_length(self, frame_height_px: int) -> float:
        """Strip length in metres that one frame of ``frame_height_px`` rows advances."""
        if self.frame_length_m is not None:
            return self.frame_length_m
        return frame_height_px * self.mm_per_px / 1000.0


def strip_position_m(line: LineConfig, frame_index: int, frame_height_px: int,
                     encoder_count: int | None = None) -> float:
    """Strip position (metres) of a frame's first row.

    From the encoder count when one is given, else from the frame index times the frame
    length (which assumes that consecutive frames abut, as they do on a line-scan camera or
    one triggered per frame length).
    """
    if encoder_count is not None:
        if line.encoder_m_per_count is None:
            raise InspectdError(
                "line.encoder_m_per_count: the source gives encoder counts but no encoder scale is configured"
            )
        return (encoder_count - line.encoder_zero_count) * line.encoder_m_per_count
    return frame_index * line.frame_length(frame_height_px)


def position_fn(line: LineConfig, frame_height_px: int) -> Callable[[int], float]:
    """``index -> strip position`` for sources without an encoder (``sources.base.PositionFn``)."""
    return lambda index: strip_position_m(line, index, frame_height_px)


def gate_deadline_wall_ns(line: LineConfig, capture_wall_ns: int, frame_position_m: float = 0.0,
                          position_m: float | None = None) -> int:
    """Wall-clock time (ns since the epoch) at which a point of the strip reaches the gate.

    The frame whose first row was at ``frame_position_m`` was captured at ``capture_wall_ns``;
    ``position_m`` is the strip point of interest (default: the frame's first row, which is
    the earliest any part of the frame reaches the gate). A point ``d`` metres upstream of
    the first row reaches the gate ``d / speed`` later than the first row.
    """
    offset_m = 0.0 if position_m is None else position_m - frame_position_m
    return capture_wall_ns + round((line.gate_distance_m + offset_m) / line.speed_m_per_s * 1e9)


def gate_window_wall_ns(line: LineConfig, capture_wall_ns: int, frame_length_m: float) -> tuple[int, int]:
    """(first row reaches the gate, last row has passed it) for one frame, in wall ns."""
    start = gate_deadline_wall_ns(line, capture_wall_ns)
    return start, start + round(frame_length_m / line.speed_m_per_s * 1e9)
