"""Coils: which product unit each frame belongs to, and where on it the frame lies.

The line says when a coil starts and ends (``inspectd coil start|end`` through the control
socket, or ``replay --coil``). The control thread calls ``start``/``end``; the acquisition
thread calls ``stamp`` on every frame as it is read, so a coil begins with the first frame
read after its start was received (its head: coil position 0 there) and ends with the last
frame read before its end. Frames already read when a coil changes keep the coil they were
read in, however late their verdicts come. The two threads meet only here, under one lock;
each frame carries its ``CoilMark`` from then on (immutable), so ``runtime.placement.place``
needs no lock to compute ``coil`` and ``coil_position_m`` when the verdict is made.

A start while a coil is open first ends that coil (``closed_by: next_start``); the service
ends the open coil when it stops (``closed_by: stop``). A restarted daemon has no coil open
until the line sends the next start.
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame

COIL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:#+/\-]{0,63}$")
META_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,31}$")
MAX_META = 32
MAX_META_VALUE = 256


class CoilError(InspectdError):
    """A coil request that cannot be done (bad id, no coil open): answered, not fatal."""


def check_coil_id(value: Any, what: str = "coil id") -> str:
    if not isinstance(value, str) or not COIL_ID.match(value):
        raise CoilError(f"{what} {value!r}: expected 1 to 64 letters, digits or _ . : # + / - "
                        "(starting with a letter or digit)")
    return value


def check_meta(meta: Any) -> dict[str, str]:
    """Coil metadata: a few short ``key: text`` pairs (grade, customer order, ...)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise CoilError(f"coil meta: expected key=value pairs, got {type(meta).__name__}")
    if len(meta) > MAX_META:
        raise CoilError(f"coil meta: at most {MAX_META} keys, got {len(meta)}")
    out: dict[str, str] = {}
    for k, v in meta.items():
        if not isinstance(k, str) or not META_KEY.match(k):
            raise CoilError(f"coil meta key {k!r}: expected a letter, then letters, digits or _ . - (at most 32)")
        if not isinstance(v, (str, int, float)) or isinstance(v, bool) or len(str(v)) > MAX_META_VALUE:
            raise CoilError(f"coil meta {k}: expected a text of at most {MAX_META_VALUE} characters")
        out[k] = str(v)
    return out


def check_width(width_mm: Any) -> float | None:
    if width_mm is None:
        return None
    if isinstance(width_mm, bool) or not isinstance(width_mm, (int, float)) \
            or not math.isfinite(width_mm) or width_mm <= 0:
        raise CoilError(f"coil width_mm {width_mm!r}: expected a positive number of millimetres")
    return float(width_mm)


@dataclass
class _Open:
    coil: str
    width_mm: float | None
    meta: dict[str, str]
    start_wall_ns: int
    head_m: float | None = None          # strip position of its first frame (None until read)
    first_frame: int | None = None
    last_frame: int | None = None
    frames: int = 0
    end_m: float | None = None           # strip position just past its last frame
    mark: CoilMark | None = field(default=None, repr=False)


class CoilTracker:
    """The open coil, shared by the control thread and the acquisition thread.

    ``position(frame_index, height)`` and ``frame_length(height)`` give the strip geometry
    for frames that carry no strip position of their own (``inspectd.line``).
    """

    def __init__(self, position: Callable[[int, int], float], frame_length: Callable[[int], float]):
        self._position = position
        self._frame_length = frame_length
        self._lock = threading.Lock()
        self._open: _Open | None = None

    # -- control thread ---------------------------------------------------------------
    def start(self, coil: str, width_mm: float | None = None, meta: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Open ``coil``; returns (the ``coil_end`` body of the coil it closed, or None;
        the ``coil_start`` body)."""
        coil = check_coil_id(coil)
        width = check_width(width_mm)
        meta = check_meta(meta)
        now = time.time_ns()
        with self._lock:
            closed = self._close("next_start", now) if self._open is not None else None
            self._open = _Open(coil, width, meta, now)
        return closed, {"coil": coil, "width_mm": width, "meta": meta, "start_wall_ns": now}

    def end(self, coil: str | None = None, closed_by: str = "end") -> dict[str, Any]:
        """Close the open coil (``coil``, if given, must be it); returns the ``coil_end`` body."""
        if coil is not None:
            check_coil_id(coil)
        with self._lock:
            if self._open is None:
                raise CoilError("no coil is open")
            if coil is not None and coil != self._open.coil:
                raise CoilError(f"coil {coil!r} is not the open coil ({self._open.coil!r}); nothing was ended")
            return self._close(closed_by, time.time_ns())

    def close(self) -> dict[str, Any] | None:
        """The service stops: end the open coil, if any (``closed_by: stop``)."""
        with self._lock:
            return self._close("stop", time.time_ns()) if self._open is not None else None

    def current(self) -> dict[str, Any] | None:
        """The open coil as the control socket reports it, or None."""
        with self._lock:
            o = self._open
            if o is None:
                return None
            return {"coil": o.coil, "width_mm": o.width_mm, "meta": dict(o.meta),
                    "start_wall_ns": o.start_wall_ns, "frames": o.frames, **self._extent(o)}

    def _close(self, closed_by: str, now: int) -> dict[str, Any]:
        o = self._open
        assert o is not None
        self._open = None
        return {"coil": o.coil, "closed_by": closed_by, "width_mm": o.width_mm, "meta": dict(o.meta),
                "start_wall_ns": o.start_wall_ns, "end_wall_ns": now, "frames": o.frames, **self._extent(o)}

    @staticmethod
    def _extent(o: _Open) -> dict[str, Any]:
        length = None if o.head_m is None or o.end_m is None else round(o.end_m - o.head_m, 6)
        return {"first_frame": o.first_frame, "last_frame": o.last_frame, "length_m": length}

    # -- acquisition thread -----------------------------------------------------------
    def stamp(self, frame: Frame) -> None:
        """Mark a frame just read with the open coil (or none)."""
        h = int(frame.image.shape[0])
        frame.coil = self._mark(frame.index, frame.strip_position_m, h)

    def stamp_meta(self, meta: FrameMeta) -> None:
        """The same for a frame the camera lost (only its metadata exists)."""
        meta.coil = self._mark(meta.index, meta.strip_position_m, meta.height)

    def _mark(self, index: int, position_m: float | None, height: int) -> CoilMark | None:
        with self._lock:
            o = self._open
            if o is None:
                return None
            pos = float(position_m) if position_m is not None else self._position(index, height)
            if o.mark is None:
                o.head_m, o.first_frame = pos, index
                o.mark = CoilMark(o.coil, pos)
            o.frames += 1
            o.last_frame = index if o.last_frame is None else max(o.last_frame, index)
            end = pos + self._frame_length(height)
            o.end_m = end if o.end_m is None else max(o.end_m, end)
            return o.mark


class EventSink(Protocol):
    """Where coil events go: the publisher (``EventPublisher.publish_event``)."""

    def publish_event(self, kind: str, body: dict[str, Any]) -> bool: ...


_REQUEST_KEYS = {
    "coil_start": {"command", "coil", "width_mm", "meta"},
    "coil_end": {"command", "coil"},
    "coil_status": {"command"},
}


class CoilDesk:
    """Coil requests (the control socket, ``replay --coil``) -> the tracker; their events -> the bus.

    Requests and replies are the control socket's JSON objects (docs/events.md, "Coils")::

        {"command": "coil_start", "coil": "C123", "width_mm": 1250, "meta": {"grade": "S235"}}
        {"command": "coil_end"}            {"command": "coil_end", "coil": "C123"}
        {"command": "coil_status"}
    """

    def __init__(self, tracker: CoilTracker, sink: EventSink, camera: str):
        self.tracker = tracker
        self.sink = sink
        self.camera = camera
        self._lock = threading.Lock()     # a start's two events stay together
        self._last_closed: dict[str, Any] | None = None

    def start(self, coil: str, width_mm: float | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        with self._lock:
            current = self.tracker.current()
            if current is not None and current["coil"] == check_coil_id(coil):
                # A repeated start (a client that retried after a lost reply) changes nothing.
                return {"ok": True, "camera": self.camera, "coil": current, "closed": None, "repeated": True}
            closed, started = self.tracker.start(coil, width_mm, meta)
            if closed is not None:
                self._last_closed = closed
                self.sink.publish_event("coil_end", closed)
            self.sink.publish_event("coil_start", started)
        return {"ok": True, "camera": self.camera, "coil": started, "closed": closed}

    def end(self, coil: str | None = None) -> dict[str, Any]:
        with self._lock:
            last = self._last_closed
            if coil is not None and self.tracker.current() is None and last is not None and last["coil"] == coil:
                # A repeated end of the coil that was just ended (a retry) changes nothing.
                return {"ok": True, "camera": self.camera, "coil": None, "closed": last, "repeated": True}
            closed = self.tracker.end(coil)
            self._last_closed = closed
            self.sink.publish_event("coil_end", closed)
        return {"ok": True, "camera": self.camera, "coil": None, "closed": closed}

    def stop(self) -> None:
        """The service stops: the open coil ends here (``closed_by: stop``)."""
        with self._lock:
            closed = self.tracker.close()
            if closed is not None:
                self.sink.publish_event("coil_end", closed)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command not in _REQUEST_KEYS:
            raise CoilError(f"unknown command {command!r} (expected one of {', '.join(_REQUEST_KEYS)})")
        unknown = sorted(set(request) - _REQUEST_KEYS[command])
        if unknown:
            raise CoilError(f"{command}: unknown field(s) {', '.join(unknown)}")
        if command == "coil_start":
            if "coil" not in request:
                raise CoilError("coil_start: the coil id is missing")
            return self.start(request["coil"], request.get("width_mm"), request.get("meta"))
        if command == "coil_end":
            return self.end(request.get("coil"))
        return {"ok": True, "camera": self.camera, "coil": self.tracker.current(), "closed": None}
