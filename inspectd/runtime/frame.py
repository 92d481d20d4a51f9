"""A frame as it travels from the source through the ring buffer to inference.

Its metadata without the pixels (``FrameMeta``, ``CoilMark``) is plain data in
``inspectd.domain.frames``: the bus encodes it without importing the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspectd.domain.frames import CoilMark, FrameMeta


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

    def meta(self) -> FrameMeta:
        """Everything about this frame except its pixels: what outlives its ring-buffer slot."""
        h, w = self.image.shape[:2]
        return FrameMeta(
            index=self.index, camera=self.camera, capture_ns=self.capture_ns,
            capture_wall_ns=self.capture_wall_ns, height=h, width=w,
            camera_frame_id=self.camera_frame_id,
            camera_timestamp_ns=self.camera_timestamp_ns,
            strip_position_m=self.strip_position_m, coil=self.coil,
        )
