"""What every frame source (camera, video file, image folder) offers the acquisition thread."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from inspectd.runtime.frame import Frame

#: Maps a frame index (0-based, in its source) to the strip position of the frame's
#: first row, in metres. Supplied by the service (inspectd.line).
PositionFn = Callable[[int], float]


class FrameTimeout(Exception):
    """``read()`` got no frame within the source's fetch timeout.

    Not the end of the stream and not an error by itself: a triggered camera is silent
    while the line stands still. The acquisition thread counts it, checks for stop and
    reads again.
    """


class CorruptFrames(Exception):
    """``read()`` met ``count`` frames from ``index`` on that it could not decode whole (a
    truncated or damaged JPEG, a recording that ends before its stated length, the decoder's
    or the camera's own error status). They are never inspected as if whole: the acquisition
    thread reports each as uninspected (reason ``corrupt``) and reads on. The source has
    already counted them: its next frame has index ``index + count``.
    """

    def __init__(self, index: int, count: int, detail: str):
        super().__init__(f"frames {index}..{index + count - 1}: {detail}" if count > 1 else f"frame {index}: {detail}")
        self.index = index
        self.count = count
        self.detail = detail


class AcquiredSource(Protocol):
    """What the pipeline holds and the ring and acquisition thread are built for: a ``Source``
    read in-process, or a GenICam camera read in its own process
    (``runtime.camera_process.CameraProcess``, which has no ``read``)."""

    camera: str                               # camera id from the config
    nominal_fps: float | None                 # frame rate of the file or the camera setting
    frame_shape: tuple[int, ...]              # (H, W) for Mono8, (H, W, 3) for BGR
    live: bool                                # a camera: paces itself, never ends
    position: PositionFn | None               # index -> strip position (m), if known

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@runtime_checkable
class Source(Protocol):
    """A stream of frames.

    Opening (``open_source``) checks everything that can be checked up front (file
    exists and decodes, camera found and configured) so that errors surface before any
    thread starts. ``start``/``read``/``stop`` are then called from the acquisition
    thread.

    ``read()`` returns the next frame, or None at the end of the stream (never for a
    camera). Its ``image`` may be a buffer the source reuses: it is valid only until
    the next ``read()``; the ring buffer copies it. ``index`` counts frames of the
    source from 0; for a camera it follows the camera's frame id, so a frame the camera
    lost leaves a gap in the indices (the acquisition thread reports those).
    """

    camera: str                               # camera id from the config
    nominal_fps: float | None                 # frame rate of the file or the camera setting
    frame_shape: tuple[int, ...]              # (H, W) for Mono8, (H, W, 3) for BGR
    live: bool                                # a camera: paces itself, never ends
    position: PositionFn | None               # index -> strip position (m), if known

    def start(self) -> None: ...

    def read(self) -> Frame | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        """Counters for status events: at least ``frames`` (frames read) and
        ``frame_id_gaps`` / ``frames_lost`` (camera frame-id gaps; 0 for files)."""
        ...
