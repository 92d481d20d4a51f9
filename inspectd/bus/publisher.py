"""The event publisher: one thread owns the PUB socket; the pipeline never waits for it.

The pipeline hands verdicts, dropped frames and status reports over through
``publish_*``; each call takes a lock for a few list operations and returns. What happens
when something cannot keep up, from the pipeline outwards:

- The hand-over queue (``bus.queue_size``) is full (the publisher thread itself is stuck,
  e.g. on a slow ``tap``): the verdict is not queued, counted as ``queue_full``, and its
  sequence numbers are skipped, so every subscriber sees the loss as a gap.
- A subscriber reads too slowly: ZeroMQ holds up to ``bus.send_hwm`` messages for it, then
  drops that subscriber's messages (and only that subscriber's). libzmq does not report
  these drops to the publisher; the subscriber sees them as gaps in ``seq``.
- The socket refuses a message (``zmq.Again`` or an error): counted as ``not_sent``.

Dropped frames are gathered into ``uninspected`` stretches of consecutive frames with the
same reason, each sent at most ``bus.uninspected_max_delay_s`` after its first frame. They
are not held in the bounded queue and are sent ahead of queued verdicts: an actuator
rejects on them.

Heartbeats come from the publisher thread at ``bus.heartbeat_interval_s``, always, also
while verdicts flow: a heartbeat proves that the thread that sends everything else is alive.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog
import zmq

from inspectd.bus.address import Address, parse_address
from inspectd.bus.config import BusConfig
from inspectd.bus.curve import CurveServer
from inspectd.bus.messages import EventEncoder, Wire, reason_token, wire
from inspectd.bus.sockets import load_curve_server, open_server_socket
from inspectd.domain.frames import FrameMeta
from inspectd.domain.placement import Placement, StretchPlacement
from inspectd.domain.verdicts import Uninspected, Verdict

# Plain ints, part by part: pyzmq's send_multipart does the same, combining enum flags in
# Python for every part.
_SEND_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_SEND_LAST = int(zmq.NOBLOCK)
# The backend's send, called directly: pyzmq's Python-level Socket.send only adds the DRAFT
# routing_id and group arguments before calling it, and costs as much again per part.
_zmq_send = zmq.backend.Socket.send

log = structlog.get_logger("inspectd.bus")

Tap = Callable[[bytes, dict], None]


class VerdictWatcher(Protocol):
    """Sees each verdict payload right after it was sent, on the publisher thread: it must
    only hand it over and return (``runtime.alarm_thread.AlarmThread``)."""

    def observe(self, verdict: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class _Item:
    kind: str                                  # "verdict" | "status" | "event" | "flush"
    data: Any                                  # Verdict | dict of counters | (kind, body) | Event
    crops: list | None = None                  # per defect: (pixels, (x1, y1, x2, y2)) or None
    lost_after: dict[str, int] | None = None   # messages that could not be queued behind it


@dataclass(slots=True)
class _Stretch:
    first: FrameMeta
    last: FrameMeta
    first_at: Placement                        # placed by the runtime, as each frame was given up
    last_at: Placement
    count: int
    reason: str
    due_ns: int                                # monotonic: send it by then

    def report(self) -> Uninspected:
        return Uninspected(self.first, self.last, self.count, self.reason,
                           StretchPlacement.spanning(self.first_at, self.last_at))


@dataclass
class _Counts:
    emitted: int = 0          # messages built (numbered) and handed to the socket and the tap
    sent: int = 0             # of those, accepted by the socket
    not_sent: int = 0         # of those, refused by the socket
    queue_full: int = 0       # messages never built: the hand-over queue was full (seq skipped)
    after_close: int = 0      # publish_* calls after close()
    abandoned: int = 0        # messages still waiting when close()'s time ran out
    heartbeats: int = 0
    uninspected_frames: int = 0
    merged_stretches: int = 0  # stretches merged because too many waited (the merge only widens them)
    tap_errors: int = 0
    watch_errors: int = 0
    status_errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class EventPublisher:
    """Publishes one camera's events; see the module text for what never blocks and why."""

    def __init__(self, cfg: BusConfig, encoder: EventEncoder, tap: Tap | None = None,
                 status_source: Callable[[], dict] | None = None, watcher: VerdictWatcher | None = None):
        self.cfg = cfg
        self.encoder = encoder
        self._tap = tap
        self._status_source = status_source
        self._watcher = watcher
        self._watch_error_logged = False
        self._address: Address | None = (
            parse_address(cfg.publish, "bind", "bus.publish") if cfg.publish else None
        )
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._pending: _Stretch | None = None
        self._stretches: deque[_Stretch] = deque()
        self._closing = False
        self._closed = False
        self._close_deadline_ns = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._error: BaseException | None = None
        self._endpoint: str | None = None
        self._counts = _Counts()
        self._tap_error_logged = False
        self._sock: zmq.Socket | None = None

    # -- the pipeline side (any thread; never waits) -------------------------------------
    def publish_verdict(self, verdict: Verdict, image: np.ndarray | None = None) -> bool:
        """Queue a verdict (and its defect messages). False if it was not queued.

        ``image`` is the frame (only read here, during the call, to cut defect crops when
        ``bus.crops`` is on): a ring-buffer slot may be released as soon as this returns.
        The verdict itself must not be changed afterwards.
        """
        crops = self._cut_crops(verdict, image) if (self.cfg.crops and image is not None) else None
        counts = {"verdict": 1}
        if self.cfg.defects and verdict.defects:
            counts["defect"] = len(verdict.defects)
        return self._put(_Item("verdict", verdict, crops), counts)

    def publish_status(self, counters: dict | Callable[[], dict]) -> bool:
        """Queue a ``status`` message with the pipeline's counters (copied now), or with what
        ``counters()`` returns when the message is sent (after everything queued before it)."""
        return self._put(_Item("status", counters if callable(counters) else dict(counters)), {"status": 1})

    def publish_event(self, kind: str, body: dict[str, Any]) -> bool:
        """Queue a ``coil_start``, ``coil_end`` or ``alarm`` message. These are rare and must
        not be lost, so the queue's bound does not apply to them. False only after close()."""
        with self._cond:
            if self._closed or self._closing:
                self._counts.after_close += 1
                return False
            self._queue.append(_Item("event", (kind, dict(body))))
            self._cond.notify()
            return True

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far has been sent (and seen by the watcher)."""
        done = threading.Event()
        with self._cond:
            if self._closed or self._closing or self._thread is None:
                return False
            self._queue.append(_Item("flush", done))
            self._cond.notify()
        return done.wait(timeout_s)

    def publish_dropped(self, meta: FrameMeta, placement: Placement, reason: str) -> None:
        """Report one frame that will not be inspected (ring overflow, camera loss, ...), with
        its placement on the strip (``runtime.placement.place``).

        Consecutive frames (index + 1) with the same reason become one ``uninspected``
        message, sent at most ``bus.uninspected_max_delay_s`` after the first of them.
        """
        token = reason_token(reason)
        now = time.monotonic_ns()
        with self._cond:
            if self._closed:
                self._counts.after_close += 1
                return
            p = self._pending
            if p is not None and p.reason == token and meta.index == p.last.index + 1 \
                    and meta.coil == p.last.coil:     # a stretch belongs to one coil
                p.last, p.last_at = meta, placement
                p.count += 1
                return
            if p is not None:
                self._push_stretch(p)
            self._pending = _Stretch(meta, meta, placement, placement, 1, token,
                                     now + round(self.cfg.uninspected_max_delay_s * 1e9))
            self._cond.notify()

    def _push_stretch(self, s: _Stretch) -> None:
        # Called with the lock held. Stretches are tiny, but a stuck publisher thread must not
        # make them pile up without bound: past the limit they merge into a wider stretch,
        # which may then also cover frames that were inspected -- on the safe side.
        if len(self._stretches) >= self.cfg.queue_size:
            last = self._stretches[-1]
            if s.first.index < last.first.index:
                last.first, last.first_at = s.first, s.first_at
            if s.last.index > last.last.index:
                last.last, last.last_at = s.last, s.last_at
            last.count += s.count
            if last.reason != s.reason:
                last.reason = "mixed"
            self._counts.merged_stretches += 1
        else:
            self._stretches.append(s)

    def _put(self, item: _Item, counts: dict[str, int]) -> bool:
        with self._cond:
            if self._closed or self._closing:
                self._counts.after_close += 1
                return False
            if len(self._queue) >= self.cfg.queue_size:
                # The numbers these messages would have had are skipped right after the
                # tail item is sent, so the gap shows exactly where they were lost.
                tail = self._queue[-1]
                if tail.lost_after is None:
                    tail.lost_after = {}
                for kind, n in counts.items():
                    tail.lost_after[kind] = tail.lost_after.get(kind, 0) + n
                self._counts.queue_full += sum(counts.values())
                return False
            self._queue.append(item)
            self._cond.notify()
            return True

    def _cut_crops(self, verdict: Verdict, image: np.ndarray) -> list:
        """Copy (and shrink) each defect's region now; JPEG encoding happens on the thread."""
        import cv2

        h, w = image.shape[:2]
        m = self.cfg.crop_margin_px
        side = self.cfg.crop_max_side_px
        crops: list = []
        for d in verdict.defects:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
                crops.append(None)
                continue
            cx1, cy1 = max(0, math.floor(x1) - m), max(0, math.floor(y1) - m)
            cx2, cy2 = min(w, math.ceil(x2) + m), min(h, math.ceil(y2) + m)
            if cx2 <= cx1 or cy2 <= cy1:
                crops.append(None)
                continue
            region = image[cy1:cy2, cx1:cx2]
            rh, rw = region.shape[:2]
            if max(rh, rw) > side:
                s = side / max(rh, rw)
                pixels = cv2.resize(region, (max(1, round(rw * s)), max(1, round(rh * s))),
                                    interpolation=cv2.INTER_AREA)
            else:
                pixels = region.copy()
            crops.append((pixels, (cx1, cy1, cx2, cy2)))
        return crops

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> EventPublisher:
        """Start the thread (binding the socket, if any); raises InspectdError if it cannot."""
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        curve = None
        if self._address is not None:
            curve = load_curve_server(
                self.cfg.curve, "bus.curve", "bus_curve_no_clients",
                "no subscriber can connect until a client key is added and the daemon restarted")
        self._thread = threading.Thread(target=self._main, args=(curve,),
                                        name=f"publisher-{self.encoder.camera}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join(5.0)
            raise self._start_error
        return self

    def close(self, timeout_s: float = 2.0) -> bool:
        """Send what is queued (and any pending uninspected stretch), then close the socket.

        Waits at most ``timeout_s``; returns False if the thread had not finished by then.
        """
        with self._cond:
            if self._closed:
                return True
            self._closing = True
            self._close_deadline_ns = time.monotonic_ns() + round(max(0.0, timeout_s) * 1e9)
            self._cond.notify_all()
        ok = True
        if self._thread is not None:
            self._thread.join(max(0.0, timeout_s))
            ok = not self._thread.is_alive()
            if not ok:
                log.warning("bus_close_timeout", queued=len(self._queue), timeout_s=timeout_s)
        with self._cond:
            self._closed = True
        return ok

    def __enter__(self) -> EventPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoint(self) -> str | None:
        """The address actually bound (wildcard port resolved), or None without a socket."""
        return self._endpoint

    @property
    def stats(self) -> dict[str, int]:
        """Counters (see ``_Counts``) plus what waits now: ``queued`` items, ``pending_uninspected``."""
        c = self._counts
        with self._cond:
            queued = len(self._queue)
            pending = sum(s.count for s in self._stretches) + (self._pending.count if self._pending else 0)
        out = {k: v for k, v in vars(c).items() if k != "by_kind"}
        out.update(queued=queued, pending_uninspected=pending)
        out.update({f"emitted_{k}": v for k, v in dict(c.by_kind).items()})
        return out

    # -- the publisher thread -------------------------------------------------------------
    def _main(self, curve: CurveServer | None) -> None:
        server = None
        try:
            if self._address is not None:
                server = open_server_socket(self._address, zmq.PUB,
                                            {zmq.SNDHWM: self.cfg.send_hwm, zmq.LINGER: 0},
                                            curve, "bus.publish")
                self._endpoint = server.endpoint
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._ready.set()
            return
        self._sock = server.sock if server is not None else None
        self._ready.set()
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - the service must learn that the bus is down
            self._error = exc
            raise
        finally:
            if server is not None:
                # Give what libzmq still holds the rest of the close() time to reach subscribers.
                server.close(linger_ms=max(0, (self._close_deadline_ns - time.monotonic_ns()) // 1_000_000))

    @property
    def error(self) -> BaseException | None:
        """Why the publisher thread stopped, if it died: nothing is sent any more."""
        return self._error

    def _loop(self) -> None:
        hb_every = round(self.cfg.heartbeat_interval_s * 1e9)
        st_every = round(self.cfg.status_interval_s * 1e9)
        now = time.monotonic_ns()
        hb_next = now                                   # one heartbeat at once: subscribers sync on it
        st_next = now + st_every if self._status_source else None
        while True:
            work: _Item | _Stretch | None = None
            finished = False
            with self._cond:
                while True:
                    now = time.monotonic_ns()
                    if self._closing and now > self._close_deadline_ns:
                        # Out of close() time: what still waits is counted, not sent.
                        self._counts.abandoned += sum(
                            1 + (len(i.data.defects) if i.kind == "verdict" and self.cfg.defects else 0)
                            for i in self._queue)
                        self._counts.abandoned += len(self._stretches) + (self._pending is not None)
                        self._queue.clear()
                        self._stretches.clear()
                        self._pending = None
                        finished = True
                        break
                    if self._stretches:
                        work = self._stretches.popleft()
                        break
                    p = self._pending
                    if p is not None and (self._closing or now >= p.due_ns):
                        work, self._pending = p, None
                        break
                    if now >= hb_next or (st_next is not None and now >= st_next):
                        break
                    if self._queue:
                        work = self._queue.popleft()
                        break
                    if self._closing:
                        finished = True
                        break
                    wake = min(hb_next, st_next if st_next is not None else hb_next,
                               p.due_ns if p is not None else hb_next)
                    self._cond.wait(max(0.0, (wake - now) / 1e9))
            if finished:
                return
            now = time.monotonic_ns()
            if now >= hb_next:
                self._send(self.encoder.heartbeat(self.cfg.heartbeat_interval_s))
                self._counts.heartbeats += 1
                hb_next += hb_every
                if hb_next <= now:          # after a stall: back on a fresh beat, no burst
                    hb_next = now + hb_every
            if st_next is not None and now >= st_next:
                self._emit_status_from_source()
                st_next += st_every
                if st_next <= now:
                    st_next = now + st_every
            if isinstance(work, _Stretch):
                self._emit_stretch(work)
            elif isinstance(work, _Item):
                if work.kind == "verdict":
                    self._emit_verdict(work)
                elif work.kind == "event":
                    self._send(self.encoder.event(*work.data))
                elif work.kind == "flush":
                    work.data.set()
                else:
                    counters = work.data() if callable(work.data) else work.data
                    self._send(self.encoder.status(counters, self._bus_counts()))
                if work.lost_after:
                    self.encoder.skip(work.lost_after)

    def _emit_stretch(self, s: _Stretch) -> None:
        self._send(self.encoder.uninspected(s.report()))
        self._counts.uninspected_frames += s.count

    def _bus_counts(self) -> dict[str, int]:
        c = self._counts
        return {"emitted": c.emitted, "sent": c.sent, "not_sent": c.not_sent, "queue_full": c.queue_full,
                "queued": len(self._queue), "uninspected_frames": c.uninspected_frames}

    def _emit_status_from_source(self) -> None:
        try:
            counters = self._status_source() if self._status_source else {}
        except Exception as exc:  # noqa: BLE001 - a broken counter must not stop the bus
            self._counts.status_errors += 1
            log.warning("bus_status_source_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._send(self.encoder.status(counters, self._bus_counts(), self.cfg.status_interval_s))

    def _emit_verdict(self, item: _Item) -> None:
        v: Verdict = item.data
        # A stretch of dropped frames that precedes this frame goes out first: the stream then
        # mostly follows the strip, and the stretch does not wait for its delay to run out.
        with self._cond:
            p = self._pending
            if p is not None and v.meta.index > p.last.index:
                self._pending = None
            else:
                p = None
        if p is not None:
            self._emit_stretch(p)
        # Dicts only for those who read them: the tap (all messages) and the watcher (verdicts).
        tapped = self._tap is not None
        out, shared = self.encoder.verdict_wire(v, as_dict=tapped or self._watcher is not None)
        self._send_wire(out)
        if self.cfg.defects:
            for i in range(len(v.defects)):
                crop_meta, jpeg = None, None
                if item.crops is not None and i < len(item.crops) and item.crops[i] is not None:
                    crop_meta, jpeg = self._encode_crop(*item.crops[i])
                self._send_wire(self.encoder.defect_wire(v, i, shared, crop=crop_meta, as_dict=tapped), jpeg)
        if self._watcher is not None:
            self._watch(out.message())          # the alarm detector sees what was sent

    def _watch(self, msg: dict) -> None:
        if self._watcher is None:
            return
        try:
            self._watcher.observe(msg)
        except Exception as exc:  # noqa: BLE001 - a failing watcher must not stop the bus
            self._counts.watch_errors += 1
            if not self._watch_error_logged:
                self._watch_error_logged = True
                log.error("bus_watcher_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc,
                          note="further errors are only counted (stats watch_errors)")

    def _encode_crop(self, pixels: np.ndarray, box: tuple[int, int, int, int]) -> tuple[dict | None, bytes | None]:
        import cv2

        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.crop_jpeg_quality])
        if not ok:
            return None, None
        data = buf.tobytes()
        return {"format": "jpeg", "box": list(box), "width": int(pixels.shape[1]),
                "height": int(pixels.shape[0]), "bytes": len(data)}, data

    def _send(self, msg: dict, extra: bytes | None = None) -> None:
        self._send_wire(wire(msg), extra)

    def _send_wire(self, w: Wire, extra: bytes | None = None) -> None:
        c = self._counts
        c.emitted += 1
        c.by_kind[w.kind] = c.by_kind.get(w.kind, 0) + 1
        sock = self._sock
        if sock is not None:
            try:
                _zmq_send(sock, w.topic, _SEND_MORE)
                if extra is None:
                    _zmq_send(sock, w.payload, _SEND_LAST)
                else:
                    _zmq_send(sock, w.payload, _SEND_MORE)
                    _zmq_send(sock, extra, _SEND_LAST)
                c.sent += 1
            except zmq.Again:
                c.not_sent += 1
            except zmq.ZMQError as exc:
                c.not_sent += 1
                log.warning("bus_send_failed", error=exc.strerror, seq=w.seq)
        if self._tap is not None:
            try:
                self._tap(w.topic, w.message())
            except Exception as exc:  # noqa: BLE001 - a failing --out file must not stop the bus
                c.tap_errors += 1
                if not self._tap_error_logged:
                    self._tap_error_logged = True
                    log.error("bus_tap_failed", error=f"{type(exc).__name__}: {exc}",
                              note="further tap errors are only counted (stats tap_errors)")
