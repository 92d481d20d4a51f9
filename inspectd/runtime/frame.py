"""A frame as it travels from the source through the ring buffer to inference."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CoilMark:
    """The coil a frame belongs to: its id and the strip position of its head (metres)."""

    coil: str
    head_m: float


@dataclass(slots=True)
class Frame:
    """One camera or recording frame.

    ``image`` is H x W (Mono8) or H x W x 3 (BGR) uint8. Inside the pipeline it is a
    view into a ring-buffer slot and is only valid until the slot is released.
    """

    index: int                      # 0-based index of the frame in its source
    image: np.ndarray
    camera: str                     # camera id from the config
    capture_ns: int                 # host time.monotonic_ns() when the frame was taken in
    capture_wall_ns: int            # host time.time_ns() at the same moment (for events)
    camera_frame_id: int | None = None       # the camera's own frame counter, if it gives one
    camera_timestamp_ns: int | None = None   # the camera's own timestamp, if it gives one
    strip_position_m: float | None = None    # strip position of the frame's first row
    coil: CoilMark | None = None             # set by the acquisition thread (runtime.coils)


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

    @classmethod
    def of(cls, frame: Frame) -> FrameMeta:
        h, w = frame.image.shape[:2]
        return cls(
            index=frame.index, camera=frame.camera, capture_ns=frame.capture_ns,
            capture_wall_ns=frame.capture_wall_ns, height=h, width=w,
            camera_frame_id=frame.camera_frame_id,
            camera_timestamp_ns=frame.camera_timestamp_ns,
            strip_position_m=frame.strip_position_m, coil=frame.coil,
        )
