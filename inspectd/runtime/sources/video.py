"""A recording read with OpenCV: for replay, demos and tests."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.sources.base import PositionFn

# A container's frame count can be an estimate (variable frame rate, some muxers); a
# shortfall up to this many frames (or 2 %) at the end is not called corruption.
_COUNT_SLACK_FRAMES = 2
_COUNT_SLACK_FRACTION = 0.02


class VideoSource:
    """Frames of a video file, decoded into one reused buffer.

    The file is opened and its first frame decoded at construction, so a missing,
    unreadable or undecodable file is reported before anything starts. A file that ends
    well before the frame count its header states is reported as truncated or corrupt
    when its end is reached.
    """

    live = False

    def __init__(self, path: str | Path, camera: str, channels: int = 1, loop: bool = False,
                 fps: float | None = None, position: PositionFn | None = None) -> None:
        self.path = Path(path)
        self.camera = camera
        self.channels = channels
        self.loop = loop
        self.position = position
        self._cap = self._open()
        file_fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps: float | None = fps or (file_fps if file_fps and file_fps > 0 else None)
        self.frame_count: int | None = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise InspectdError(f"video file {self.path}: no frame can be decoded (empty or corrupt file)")
        self._decoded: np.ndarray = first                 # reused by every later read
        self._pending_first = True                        # the first frame is already decoded
        self._gray = np.empty(first.shape[:2], np.uint8) if channels == 1 else None
        self.frame_shape: tuple[int, ...] = first.shape[:2] if channels == 1 else (*first.shape[:2], 3)
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise InspectdError(f"video file {self.path}: decodes to {first.shape} {first.dtype}, expected 8-bit BGR")
        self._index = 0          # next frame index (keeps counting over loops)
        self._in_pass = 0        # frames read in the current pass over the file
        self._passes = 0
        self._ended = False

    def _open(self) -> cv2.VideoCapture:
        if not self.path.exists():
            raise InspectdError(f"video file {self.path}: not found")
        if not self.path.is_file():
            raise InspectdError(f"video file {self.path}: not a file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InspectdError(
                f"video file {self.path}: cannot be opened (not a video, corrupt, or a format this OpenCV build cannot read)"
            )
        return cap

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._pending_first:
            self._pending_first = False
            img = self._decoded
        else:
            if self._ended:
                return None
            ok, img = self._cap.read(self._decoded)   # decodes into the same array where it can
            if not ok:
                self._ended = not self.loop
                self._end_of_pass()
                if not self.loop:
                    return None
                self._cap.release()
                self._cap = self._open()   # reopen: more reliable than seeking for every codec
                ok, img = self._cap.read(self._decoded)
                if not ok:
                    raise InspectdError(f"video file {self.path}: no frame can be decoded on reopening")
            if img.shape != self._decoded.shape:
                raise InspectdError(
                    f"video file {self.path}: frame {self._in_pass} is {img.shape}, the first was {self._decoded.shape}"
                )
            self._decoded = img
        now_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        if self._gray is not None:
            cv2.cvtColor(img, cv2.COLOR_BGR2GRAY, dst=self._gray)
            img = self._gray
        index = self._index
        self._index += 1
        self._in_pass += 1
        return Frame(
            index=index, image=img, camera=self.camera, capture_ns=now_ns, capture_wall_ns=wall_ns,
            strip_position_m=self.position(index) if self.position else None,
        )

    def _end_of_pass(self) -> None:
        expected = self.frame_count
        if expected and self._in_pass < expected - max(_COUNT_SLACK_FRAMES, _COUNT_SLACK_FRACTION * expected):
            raise InspectdError(
                f"video file {self.path}: ends after {self._in_pass} of the {expected} frames its header "
                "states (truncated or corrupt)"
            )
        self._passes += 1
        self._in_pass = 0

    def stop(self) -> None:
        self._cap.release()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "video", "path": str(self.path), "frames": self._index,
            "passes": self._passes, "frame_count": self.frame_count,
            "frame_id_gaps": 0, "frames_lost": 0,
        }
