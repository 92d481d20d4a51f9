"""What an acquisition thread counts, for status events.

Written by the thread that feeds the ring (``AcquisitionThread`` for files and folders,
``CameraAcquisition`` for a camera process), read by the supervisor's status ticks: both
report the same fields, under the same names, from this one class.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AcquisitionCounts:
    """The counters at one moment; ``status()`` gives them as a status event's fields."""
    frames_read: int        # frames the source delivered whole
    frames_put: int         # of those, kept by the ring (the rest its overflow policy dropped)
    frames_lost: int        # frames the camera skipped (gaps in the frame indices)
    frames_corrupt: int     # frames delivered damaged or incomplete: never inspected
    timeouts: int           # reads that waited in vain for a frame
    last_frame_ns: int | None   # monotonic capture time of the last frame read

    def status(self) -> dict[str, Any]:
        return asdict(self)


class AcquisitionCounters:
    """The counters, behind one lock (the acquisition thread writes, a status tick reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read = self._put = self._lost = self._corrupt = self._timeouts = 0
        self._last_frame_ns: int | None = None

    def frame(self, capture_ns: int, put: bool) -> None:
        """One frame read; ``put``: the ring kept it."""
        with self._lock:
            self._read += 1
            self._put += put
            self._last_frame_ns = capture_ns

    def timeout(self) -> None:
        with self._lock:
            self._timeouts += 1

    def lost(self, count: int) -> None:
        with self._lock:
            self._lost += count

    def corrupt(self, count: int) -> int:
        """Count ``count`` corrupt frames; returns the total so far."""
        with self._lock:
            self._corrupt += count
            return self._corrupt

    @property
    def last_frame_ns(self) -> int | None:
        """Capture time of the last frame read; None before the first."""
        with self._lock:
            return self._last_frame_ns

    def snapshot(self) -> AcquisitionCounts:
        with self._lock:
            return AcquisitionCounts(frames_read=self._read, frames_put=self._put, frames_lost=self._lost,
                                     frames_corrupt=self._corrupt, timeouts=self._timeouts,
                                     last_frame_ns=self._last_frame_ns)
