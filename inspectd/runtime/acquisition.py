"""The acquisition thread: source -> ring buffer, until the end of the stream or stop."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.acquisition_counters import AcquisitionCounters
from inspectd.runtime.frame import Frame
from inspectd.runtime.ringbuffer import RingBuffer
from inspectd.runtime.sources.base import CorruptFrames, FrameTimeout, Source

log = structlog.get_logger("inspectd.acquisition")


class AcquisitionThread(threading.Thread):
    """Reads frames from ``source`` and puts them into ``ring``.

    Runs ``source.start()``, then reads until the stream ends, ``stop_event`` is set or
    an error occurs; always calls ``source.stop()`` and closes the ring, so the consumer
    drains what is queued and then sees the end. A fatal error is kept in ``error`` (an
    ``InspectdError``, one line for the user) for the service to report after ``join``;
    it is never swallowed.

    ``realtime`` paces a file source at ``source.nominal_fps`` (a camera paces itself).
    Frames the camera lost (gaps in the frame indices, see ``Source``) never reach the
    ring; ``on_lost`` is called with a ``FrameMeta`` for each, estimated from its
    neighbours (capture time interpolated, no pixels) so that downstream can report the
    stretch as uninspected just as it does for the ring's ``on_drop``. ``on_frame`` sees each
    frame as it was read, before the ring does (the coil tracker marks it there). Frames the
    source could not deliver whole (``CorruptFrames``) never reach the ring either:
    ``on_corrupt`` is called with a ``FrameMeta`` for each.
    """

    def __init__(self, source: Source, ring: RingBuffer, stop_event: threading.Event,
                 realtime: bool = False, on_lost: Callable[[FrameMeta], None] | None = None,
                 name: str | None = None, on_frame: Callable[[Frame], None] | None = None,
                 on_corrupt: Callable[[FrameMeta], None] | None = None) -> None:
        super().__init__(name=name or f"acquisition-{source.camera}", daemon=True)
        self.source = source
        self.ring = ring
        self.stop_event = stop_event
        self.realtime = realtime
        self.on_lost = on_lost
        self.on_frame = on_frame
        self.on_corrupt = on_corrupt
        self._corrupt_logged = -1e9
        self._corrupt_events = 0
        self.error: InspectdError | None = None
        self.started_event = threading.Event()   # set once source.start() returned
        self._counts = AcquisitionCounters()
        self._ended = False   # the stream ended by itself (not stop, not error)
        if realtime and not source.live and not source.nominal_fps:
            raise InspectdError(
                f"camera {source.camera!r}: realtime pacing needs a frame rate; set source.fps"
            )

    def run(self) -> None:
        try:
            self._run()
        except InspectdError as exc:
            self.error = exc
        except Exception as exc:   # noqa: BLE001 - reported, not swallowed: the service must see it
            log.exception("acquisition failed", camera=self.source.camera)
            err = InspectdError(f"camera {self.source.camera!r}: acquisition failed: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self.error = err
        finally:
            try:
                self.source.stop()
            except Exception as exc:   # noqa: BLE001
                if self.error is None:
                    self.error = InspectdError(f"camera {self.source.camera!r}: cannot stop the source: {exc}")
            self.ring.close()
            self.started_event.set()   # also on failure, so nobody waits forever

    def _run(self) -> None:
        src, ring, stop = self.source, self.ring, self.stop_event
        src.start()
        self.started_event.set()
        period_ns = int(1e9 / src.nominal_fps) if self.realtime and not src.live and src.nominal_fps else 0
        next_due = time.monotonic_ns()
        prev_index = prev_ns = prev_wall = prev_fid = None
        while not stop.is_set():
            try:
                frame = src.read()
            except FrameTimeout:
                self._counts.timeout()
                continue
            except CorruptFrames as bad:
                # Strip the source could not deliver whole: uninspected, never inspected as whole.
                if period_ns:
                    delay = next_due - time.monotonic_ns()
                    if delay > 0 and stop.wait(delay / 1e9):
                        break
                    next_due = max(next_due, time.monotonic_ns() - period_ns) + bad.count * period_ns
                prev_index, prev_ns, prev_wall, prev_fid = self._report_corrupt(bad)
                continue
            if frame is None:
                self._ended = True
                break
            if period_ns:
                # Pace like a camera: one frame per period; if decoding fell behind,
                # restart the schedule instead of bursting to catch up.
                delay = next_due - time.monotonic_ns()
                if delay > 0 and stop.wait(delay / 1e9):
                    break
                now = time.monotonic_ns()
                next_due = max(next_due, now - period_ns) + period_ns
                frame.capture_ns, frame.capture_wall_ns = now, time.time_ns()
            if prev_index is not None and prev_ns is not None and prev_wall is not None \
                    and frame.index > prev_index + 1:
                self._report_lost(frame, prev_index, prev_ns, prev_wall, prev_fid)
            prev_index, prev_ns, prev_wall, prev_fid = frame.index, frame.capture_ns, frame.capture_wall_ns, frame.camera_frame_id
            if self.on_frame is not None:
                self.on_frame(frame)
            kept = ring.put(frame, cancel=stop)
            self._counts.frame(frame.capture_ns, kept)

    def _report_corrupt(self, bad: CorruptFrames) -> tuple[int, int, int, None]:
        """Report each frame of ``bad`` (``on_corrupt``); returns the last one's index and times
        (what the next frame's gap check compares with)."""
        total = self._counts.corrupt(bad.count)
        now = time.monotonic()
        self._corrupt_events += 1
        if self._corrupt_events <= 10 or now - self._corrupt_logged >= 1.0:   # a wrecked file: a line a second
            self._corrupt_logged = now
            log.warning("frames_corrupt", camera=self.source.camera, first=bad.index, count=bad.count,
                        total=total, detail=bad.detail, note="published as uninspected (corrupt), not inspected")
        h, w = self.source.frame_shape[:2]
        position = self.source.position
        now_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        for index in range(bad.index, bad.index + bad.count):
            if self.on_corrupt is not None:
                self.on_corrupt(FrameMeta(index=index, camera=self.source.camera, capture_ns=now_ns,
                                          capture_wall_ns=wall_ns, height=h, width=w,
                                          strip_position_m=position(index) if position else None))
        return bad.index + bad.count - 1, now_ns, wall_ns, None

    def _report_lost(self, frame: Frame, prev_index: int, prev_ns: int, prev_wall: int,
                     prev_fid: int | None) -> None:
        missing = frame.index - prev_index - 1
        self._counts.lost(missing)
        if self.on_lost is None:
            return
        h, w = frame.image.shape[:2]
        position = self.source.position
        for k in range(1, missing + 1):
            frac = k / (missing + 1)
            index = prev_index + k
            self.on_lost(FrameMeta(
                index=index, camera=frame.camera,
                capture_ns=prev_ns + int((frame.capture_ns - prev_ns) * frac),
                capture_wall_ns=prev_wall + int((frame.capture_wall_ns - prev_wall) * frac),
                height=h, width=w,
                camera_frame_id=None if prev_fid is None else prev_fid + k,
                strip_position_m=position(index) if position else None,
            ))

    @property
    def ended(self) -> bool:
        """True if the source reached its end by itself (a file replay that completed)."""
        return self._ended

    def stats(self) -> dict[str, Any]:
        """Counters for status events; the ring's counters are separate (``ring.counters()``)."""
        out = self._counts.snapshot().status()
        try:
            out["source"] = self.source.stats()
        except Exception:   # noqa: BLE001 - stats must never break a status report
            out["source"] = {}
        return out
