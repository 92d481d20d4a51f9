"""A recording read with OpenCV: for replay, demos and tests."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.sources.base import CorruptFrames, PositionFn
from inspectd.runtime.sources.jpeg_check import jpeg_damage

# A container's frame count can be an estimate (variable frame rate, some muxers); a
# shortfall up to this many frames (or 2 %) at the end is not called corruption.
_COUNT_SLACK_FRAMES = 2
_COUNT_SLACK_FRACTION = 0.02


class VideoSource:
    """Frames of a video file, decoded into one reused buffer.

    The file is opened and its first frame decoded at construction, so a missing,
    unreadable or undecodable file is reported before anything starts.

    Damaged frames are never inspected as if whole (OpenCV's FFmpeg decoder conceals
    damage and reports nothing): ``read`` raises ``CorruptFrames`` for them, and the
    acquisition thread reports them uninspected (reason ``corrupt``).

    - MJPEG (each frame a JPEG, as industrial recorders write): the packets are read as they
      are in the file, each checked (``jpeg_check``) and decoded by OpenCV's JPEG decoder; a
      truncated or damaged one, or one that does not decode to the first frame's size, is
      corrupt. (A stream whose first frame this decoder cannot read, e.g. JPEGs without their
      Huffman tables, is decoded by FFmpeg instead, without the per-frame check.)
    - Any codec: a file that ends before the frame count its header states (less a small
      slack for estimated counts) is truncated or corrupt: the frames it could not deliver are
      corrupt, reported at its end.
    """

    live = False

    def __init__(self, path: str | Path, camera: str, channels: int = 1, loop: bool = False,
                 fps: float | None = None, position: PositionFn | None = None) -> None:
        self.path = Path(path)
        self.camera = camera
        self.channels = channels
        self.loop = loop
        self.position = position
        self.checked = False              # packets checked and decoded here (MJPG): set below
        self._cap = self._open()
        file_fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps: float | None = fps or (file_fps if file_fps and file_fps > 0 else None)
        self.frame_count: int | None = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").upper()
        self.checked = fourcc == "MJPG" and self._first_packet_decodes()
        if self.checked:
            self._cap.release()
            self._cap = self._open()
        ok, first = self._read_one(None)
        if not ok or first is None:
            self._cap.release()
            raise InspectdError(f"video file {self.path}: no frame can be decoded (empty or corrupt file)")
        if isinstance(first, str):
            self._cap.release()
            raise InspectdError(f"video file {self.path}: its first frame is {first}")
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise InspectdError(f"video file {self.path}: decodes to {first.shape} {first.dtype}, expected 8-bit BGR")
        self._decoded: np.ndarray = first                 # reused by every later read
        self._pending_first = True                        # the first frame is already decoded
        self._gray = np.empty(first.shape[:2], np.uint8) if channels == 1 else None
        self.frame_shape: tuple[int, ...] = first.shape[:2] if channels == 1 else (*first.shape[:2], 3)
        self._index = 0          # next frame index (keeps counting over loops)
        self._in_pass = 0        # frames read in the current pass over the file
        self._passes = 0
        self._corrupt = 0
        self._ended = False
        self._reopen = False     # the pass ended: the next read starts the file again (loop)

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
        if self.checked and not cap.set(cv2.CAP_PROP_FORMAT, -1):
            raise InspectdError(f"video file {self.path}: this OpenCV build cannot read it packet by packet")
        return cap

    def _first_packet_decodes(self) -> bool:
        """Whether this stream's packets are JPEGs that OpenCV's own decoder reads."""
        if not self._cap.set(cv2.CAP_PROP_FORMAT, -1):
            return False
        ok, packet = self._cap.read()
        return bool(ok) and packet is not None and jpeg_damage(packet.tobytes()) is None \
            and cv2.imdecode(packet, cv2.IMREAD_COLOR) is not None

    def _read_one(self, into: np.ndarray | None) -> tuple[bool, np.ndarray | str | None]:
        """(False, None) at the end of the file; (True, image); or (True, what is damaged)."""
        if not self.checked:
            ok, img = self._cap.read(into) if into is not None else self._cap.read()
            return ok, img
        ok, packet = self._cap.read()
        if not ok or packet is None:
            return False, None
        damage = jpeg_damage(packet.tobytes())
        if damage is not None:
            return True, f"a {damage} JPEG"
        decoded = cv2.imdecode(packet, cv2.IMREAD_COLOR)
        if decoded is None:
            return True, "a JPEG that does not decode"
        if into is not None and decoded.shape != into.shape:
            return True, f"{decoded.shape[1]} x {decoded.shape[0]}, the first was {into.shape[1]} x {into.shape[0]}"
        return True, decoded

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._pending_first:
            self._pending_first = False
            img = self._decoded
        else:
            if self._ended:
                return None
            if self._reopen:
                self._reopen = False
                self._cap.release()
                self._cap = self._open()   # reopen: more reliable than seeking for every codec
            ok, got = self._read_one(self._decoded)    # decodes into the same array where it can
            if not ok:
                self._end_of_pass()                      # raises CorruptFrames for what it lacked
                if not self.loop:
                    self._ended = True
                    return None
                self._cap.release()
                self._cap = self._open()
                ok, got = self._read_one(self._decoded)
                if not ok:
                    raise InspectdError(f"video file {self.path}: no frame can be decoded on reopening")
            if isinstance(got, str):
                self._skip(1, f"video file {self.path}: frame {self._in_pass} of the file is {got}")
            assert got is not None                       # ok: an image or what is wrong with it
            img = got
            if img.shape != self._decoded.shape:
                self._skip(1, f"video file {self.path}: frame {self._in_pass} of the file is {img.shape}, "
                              f"the first was {self._decoded.shape}")
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

    def _skip(self, count: int, detail: str) -> NoReturn:
        """Count ``count`` frames as read and corrupt, and say so (``CorruptFrames``)."""
        first = self._index
        self._index += count
        self._in_pass += count
        self._corrupt += count
        raise CorruptFrames(first, count, detail)

    def _end_of_pass(self) -> None:
        expected = self.frame_count
        missing = 0
        if expected and self._in_pass < expected - max(_COUNT_SLACK_FRAMES, _COUNT_SLACK_FRACTION * expected):
            missing = expected - self._in_pass
        got = self._in_pass
        self._passes += 1
        self._in_pass = 0
        if missing:
            if self.loop:
                self._reopen = True
            else:
                self._ended = True
            first = self._index
            self._index += missing
            self._corrupt += missing
            raise CorruptFrames(first, missing, f"video file {self.path}: ends after {got} of the {expected} "
                                                "frames its header states (truncated or corrupt)")

    def stop(self) -> None:
        self._cap.release()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "video", "path": str(self.path), "frames": self._index,
            "passes": self._passes, "frame_count": self.frame_count, "frames_checked": self.checked,
            "frames_corrupt": self._corrupt, "frame_id_gaps": 0, "frames_lost": 0,
        }
