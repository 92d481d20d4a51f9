"""Messages to rows: one transaction per batch, and every hole in the record written down.

``StoreWriter.add`` takes one received message (its topic, payload and further parts), checks
its ``seq`` against the publisher's last one and queues the rows; ``flush`` writes the queued
rows in one transaction. The per-publisher state (last ``seq``, the camera's latest publisher,
the open coils) is read back from the database at start, so a restarted store continues the
count where the last committed batch left it and records what it missed meanwhile.

Gaps (one row each in ``gaps``):

- ``lost``: a jump in ``seq`` while the store was running (the subscriber was too slow, the
  network dropped messages, or the publisher lost them itself);
- ``store_down``: the first message of a known publisher after the store restarted came with
  a jump: what was published while the store was not listening (or not yet committed);
- ``restart``: a new publisher id for a camera already heard from: the daemon restarted. The
  previous publisher's last stored ``seq`` and the new one's first ``seq`` are in the row;
  ``missing`` counts only the new publisher's messages before the first one received;
- ``joined``: the first message ever heard from a camera had ``seq`` > 0: what it published
  before the store started listening.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inspectd.store.database import Database

Op = tuple[str, tuple[Any, ...]]

_VERDICT_SQL = """INSERT INTO verdicts (publisher, seq, camera, coil, frame, status, defects, capture_wall_ns,
    publish_wall_ns, received_wall_ns, inference_start_wall_ns, inference_end_wall_ns, strip_position_m,
    coil_position_m, frame_length_m, width, height, late, gate_deadline_wall_ns, payload)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

_DEFECT_COLUMNS = ("publisher, verdict_seq, idx, defect_seq, camera, coil, frame, class, score, x1, y1, x2, y2, "
                   "x1_mm, x2_mm, pos_m, pos_end_m, area_px, area_mm2, branch, rejects, verdict_status, "
                   "capture_wall_ns, received_wall_ns, crop, payload")
_DEFECT_VALUES = ", ".join("?" * 26)
_DEFECT_FROM_VERDICT_SQL = (f"INSERT INTO defects ({_DEFECT_COLUMNS}) VALUES ({_DEFECT_VALUES}) "
                            "ON CONFLICT DO NOTHING")
# A defect message completes the row its verdict made (or makes it, if the verdict was lost).
_DEFECT_MESSAGE_SQL = (f"INSERT INTO defects ({_DEFECT_COLUMNS}) VALUES ({_DEFECT_VALUES}) "
                       "ON CONFLICT (publisher, verdict_seq, idx) DO UPDATE SET defect_seq = excluded.defect_seq, "
                       "crop = excluded.crop, payload = excluded.payload")
_CROP_SQL = ("INSERT INTO crops (publisher, verdict_seq, idx, received_wall_ns, bytes, jpeg) VALUES (?, ?, ?, ?, ?, ?) "
             "ON CONFLICT DO NOTHING")
_UNINSPECTED_SQL = """INSERT INTO uninspected (publisher, seq, camera, coil, reason, first_frame, last_frame, count,
    strip_start_m, strip_end_m, coil_start_m, coil_end_m, first_capture_wall_ns, last_capture_wall_ns,
    received_wall_ns, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
_EVENT_SQL = """INSERT INTO events (publisher, seq, kind, camera, topic, publish_wall_ns, received_wall_ns, payload)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
_GAP_SQL = """INSERT INTO gaps (publisher, camera, reason, expected_seq, received_seq, missing, previous_publisher,
    previous_last_seq, received_wall_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_PUBLISHER_SQL = """INSERT INTO publishers (publisher, camera, first_seq, last_seq, first_received_ns, last_received_ns,
    last_publish_wall_ns, last_heartbeat_wall_ns, messages) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (publisher) DO UPDATE SET last_seq = excluded.last_seq, last_received_ns = excluded.last_received_ns,
    last_publish_wall_ns = excluded.last_publish_wall_ns,
    last_heartbeat_wall_ns = COALESCE(excluded.last_heartbeat_wall_ns, publishers.last_heartbeat_wall_ns),
    messages = publishers.messages + excluded.messages"""


@dataclass(frozen=True)
class GapRecord:
    publisher: str
    camera: str
    reason: str
    expected: int | None
    received: int | None
    missing: int | None
    previous_publisher: str | None = None
    previous_last_seq: int | None = None

    def describe(self) -> str:
        if self.reason == "restart":
            return (f"camera {self.camera} restarted: new publisher {self.publisher} (previous "
                    f"{self.previous_publisher}, last seq {self.previous_last_seq}); first seq {self.received}")
        what = {"lost": "lost", "store_down": "published while the store was down",
                "joined": "published before the store joined"}.get(self.reason, self.reason)
        return (f"gap: {self.missing} messages from camera {self.camera} {what} "
                f"(publisher {self.publisher}, seq {self.expected}..{(self.received or 0) - 1})")


@dataclass
class _Publisher:
    camera: str
    first_seq: int
    last_seq: int
    first_received_ns: int
    resumed: bool = False                 # loaded from the database: no message since the store started
    messages: int = 0                     # received since the last flush
    last_publish_wall_ns: int | None = None
    last_heartbeat_wall_ns: int | None = None
    last_received_ns: int = 0
    dirty: bool = False


@dataclass
class _Pending:
    verdicts: list[tuple] = field(default_factory=list)
    # (publisher, verdict_seq, idx) -> a row, or the arguments to build one from the verdict
    # later: a defect message in the same batch replaces it, so most defects are built once.
    defects: dict[tuple, Any] = field(default_factory=dict)
    defect_messages: list[tuple] = field(default_factory=list)   # defects whose verdict came earlier
    crops: list[tuple] = field(default_factory=list)
    uninspected: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)      # coil updates, in the order they happened
    messages: int = 0
    first_received_ns: int | None = None
    last_publish_wall_ns: int | None = None
    publishers: list[tuple] = field(default_factory=list)   # filled by take()


# JSON gives exactly int, float, str, bool, None, list, dict: exact type checks are enough (and
# quick: these run for every field of every message).
def _int(v: Any) -> int | None:
    t = type(v)
    return v if t is int else int(v) if t is float else None


def _num(v: Any) -> float | None:
    t = type(v)
    return v if t is float else float(v) if t is int else None


def _str(v: Any) -> str | None:
    return v if type(v) is str else None


class StoreWriter:
    """Turns messages into rows; ``flush`` commits them. Use from one thread."""

    def __init__(self, db: Database, on_gap: Callable[[GapRecord], None] | None = None):
        self.db = db
        self.on_gap = on_gap
        self._pending = _Pending()
        self._pubs: dict[str, _Publisher] = {}
        self._latest_of_camera: dict[str, str] = {}
        self._open_coils: dict[str, str] = {}          # camera -> coil id of its open coil
        self._coil_extent: dict[str, float] = {}       # camera -> furthest position in the open coil
        self._coil_told: set[str] = set()              # cameras whose open coil row has its start's data
        self.received = 0
        self.committed = 0
        self.duplicates = 0
        self.gaps = 0
        self.batches = 0
        self.last_commit_lag_ns: int | None = None     # commit time - publish time of the batch's last message
        self._load()

    # -- state from the database ---------------------------------------------------------
    def _load(self) -> None:
        rows = self.db.query("SELECT publisher, camera, first_seq, last_seq, first_received_ns, last_received_ns "
                             "FROM publishers ORDER BY last_received_ns")
        for pub, camera, first_seq, last_seq, first_ns, last_ns in rows:
            self._pubs[pub] = _Publisher(camera, int(first_seq), int(last_seq), int(first_ns or 0), resumed=True,
                                         last_received_ns=int(last_ns or 0))
            self._latest_of_camera[camera] = pub          # ordered by time: the latest wins
        for camera, coil, told in self.db.query("SELECT camera, coil, start_payload IS NOT NULL FROM coils "
                                                "WHERE status = 'open' ORDER BY id"):
            self._open_coils[camera] = coil
            if told:
                self._coil_told.add(camera)
            else:
                self._coil_told.discard(camera)

    @property
    def pending(self) -> int:
        return self._pending.messages

    @property
    def pending_since_ns(self) -> int | None:
        return self._pending.first_received_ns

    # -- one message -------------------------------------------------------------------------
    def add(self, topic: bytes, payload: bytes, extra: list[bytes] | tuple[bytes, ...] = (),
            received_ns: int | None = None) -> None:
        now = time.time_ns() if received_ns is None else received_ns
        p = self._pending
        self.received += 1
        p.messages += 1
        if p.first_received_ns is None:
            p.first_received_ns = now
        topic_text = topic.decode("utf-8", "replace")
        try:
            text = payload.decode("utf-8")
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError):
            p.events.append((None, None, "undecodable", None, topic_text, None, now,
                             payload.decode("utf-8", "replace")))
            return
        kind = str(msg.get("kind") or "unknown")
        pub, camera, seq = _str(msg.get("publisher")), _str(msg.get("camera")), _int(msg.get("seq"))
        publish_ns = _int(msg.get("publish_wall_ns"))
        if publish_ns is not None:
            p.last_publish_wall_ns = publish_ns
        if pub is not None and camera is not None and seq is not None:
            if not self._track(pub, camera, seq, kind, publish_ns, now):
                self.duplicates += 1
                return
        try:
            if kind == "verdict" and camera is not None and seq is not None:
                self._verdict(msg, text, now)
            elif kind == "defect" and camera is not None:
                self._defect(msg, text, extra, now)
            elif kind == "uninspected" and camera is not None and seq is not None:
                self._uninspected(msg, text, now)
            else:
                if kind in ("coil_start", "coil_end") and camera is not None:
                    self._coil_event(kind, msg, text, now)
                elif kind == "heartbeat" and camera is not None and isinstance(msg.get("open_coil"), dict):
                    self._coil_heard(camera, msg, text, now)
                p.events.append((pub, seq, kind, camera, topic_text, publish_ns, now, text))
        except (TypeError, ValueError, OverflowError):
            # A field of an unexpected type (a NaN, a string for a number): the message is kept
            # as it came, under a kind of its own, and the store goes on.
            p.events.append((pub, None, f"unstorable_{kind}"[:40], camera, topic_text, publish_ns, now, text))

    def _track(self, pub: str, camera: str, seq: int, kind: str, publish_ns: int | None, now: int) -> bool:
        """Update the publisher's count; False for a message stored already."""
        state = self._pubs.get(pub)
        if state is None:
            prev = self._latest_of_camera.get(camera)
            if prev is not None and prev != pub:
                prev_state = self._pubs.get(prev)
                self._gap(GapRecord(pub, camera, "restart", 0, seq, seq, prev,
                                    prev_state.last_seq if prev_state else None))
            elif seq > 0:
                self._gap(GapRecord(pub, camera, "joined", 0, seq, seq))
            state = _Publisher(camera, seq, seq - 1, now)
            self._pubs[pub] = state
            self._latest_of_camera[camera] = pub
        elif seq <= state.last_seq:
            return False
        elif seq > state.last_seq + 1:
            self._gap(GapRecord(pub, camera, "store_down" if state.resumed else "lost",
                                state.last_seq + 1, seq, seq - state.last_seq - 1))
        if self._latest_of_camera.get(camera) != pub:
            self._latest_of_camera[camera] = pub
        state.resumed = False
        state.last_seq = seq
        state.messages += 1
        state.last_received_ns = now
        state.dirty = True
        if publish_ns is not None:
            state.last_publish_wall_ns = publish_ns
            if kind == "heartbeat":
                state.last_heartbeat_wall_ns = publish_ns
        return True

    def _gap(self, gap: GapRecord) -> None:
        self._pending.gaps.append(gap)
        self.gaps += 1
        if self.on_gap is not None:
            self.on_gap(gap)

    # -- coils -------------------------------------------------------------------------
    def _coil_of(self, msg: dict[str, Any], camera: str, position: float | None, now: int) -> str | None:
        """The message's coil; opens a coil row for one first named here (the store joined mid-coil)."""
        coil = _str(msg.get("coil"))
        if coil is None:
            return None
        if self._open_coils.get(camera) != coil:
            self._close_coil(camera, now, "superseded")
            self._pending.ops.append((
                "INSERT INTO coils (coil, camera, publisher, status, started_wall_ns, received_wall_ns) "
                "VALUES (?, ?, ?, 'open', ?, ?)",
                (coil, camera, _str(msg.get("publisher")), _int(msg.get("capture_wall_ns")) or now, now)))
            self._open_coils[camera] = coil
            self._coil_told.discard(camera)
        if position is not None and position > self._coil_extent.get(camera, 0.0):
            self._coil_extent[camera] = position
        return coil

    def _close_coil(self, camera: str, now: int, reason: str, ended_ns: int | None = None,
                    length_m: float | None = None, end_payload: str | None = None, status: str = "closed") -> None:
        coil = self._open_coils.pop(camera, None)
        extent = self._coil_extent.pop(camera, None)
        self._coil_told.discard(camera)
        if coil is None:
            return
        self._pending.ops.append((
            "UPDATE coils SET status = ?, ended_wall_ns = ?, end_reason = ?, "
            "length_m = COALESCE(?, length_m), end_payload = ? WHERE camera = ? AND coil = ? AND status = 'open'",
            (status, ended_ns or now, reason, length_m if length_m is not None else extent, end_payload, camera, coil)))

    def _coil_event(self, kind: str, msg: dict[str, Any], text: str, now: int) -> None:
        """``coil_start`` (coil, width_mm, meta, start_wall_ns) and ``coil_end`` (coil, closed_by:
        end | next_start | stop, end_wall_ns, length_m, ...), as the daemon sends them."""
        camera = str(msg["camera"])
        coil = _str(msg.get("coil"))
        meta = msg.get("meta")
        meta_text = json.dumps(meta) if meta else None
        if kind == "coil_start":
            if coil is None:
                return
            when = _int(msg.get("start_wall_ns")) or _int(msg.get("publish_wall_ns")) or now
            if self._open_coils.get(camera) is not None:
                self._close_coil(camera, now, "next_start", when)
            self._pending.ops.append((
                "INSERT INTO coils (coil, camera, publisher, status, started_wall_ns, width_mm, meta, start_payload, "
                "received_wall_ns) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?)",
                (coil, camera, _str(msg.get("publisher")), when, _num(msg.get("width_mm")), meta_text, text, now)))
            self._open_coils[camera] = coil
            self._coil_extent.pop(camera, None)
            self._coil_told.add(camera)
            return
        # coil_end: of the open coil (or, if the store never saw its start, a row of its own)
        coil = coil or self._open_coils.get(camera)
        if coil is None:
            return
        when = _int(msg.get("end_wall_ns")) or _int(msg.get("publish_wall_ns")) or now
        length = _num(msg.get("length_m"))
        reason = _str(msg.get("closed_by")) or "end"
        status = "ended" if reason == "end" else "closed"
        if self._open_coils.get(camera) == coil:
            self._close_coil(camera, now, reason, when, length, text, status=status)
        else:
            self._pending.ops.append((
                "INSERT INTO coils (coil, camera, publisher, status, started_wall_ns, ended_wall_ns, end_reason, "
                "width_mm, length_m, meta, end_payload, received_wall_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (coil, camera, _str(msg.get("publisher")), status, _int(msg.get("start_wall_ns")), when, reason,
                 _num(msg.get("width_mm")), length, meta_text, text, now)))

    def _coil_heard(self, camera: str, msg: dict[str, Any], text: str, now: int) -> None:
        """A heartbeat's ``open_coil``: the coil whose start this store missed (it joined, or was
        down, after the ``coil_start``) is opened, or completed, with what the start said; the
        heartbeat is kept as the row's ``start_payload``."""
        o = msg["open_coil"]
        coil = _str(o.get("coil"))
        if coil is None:
            return
        meta = o.get("meta")
        meta_text = json.dumps(meta) if meta else None
        when = _int(o.get("start_wall_ns")) or now
        if self._open_coils.get(camera) != coil:
            self._close_coil(camera, now, "superseded")
            self._pending.ops.append((
                "INSERT INTO coils (coil, camera, publisher, status, started_wall_ns, width_mm, meta, start_payload, "
                "received_wall_ns) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?)",
                (coil, camera, _str(msg.get("publisher")), when, _num(o.get("width_mm")), meta_text, text, now)))
            self._open_coils[camera] = coil
        elif camera not in self._coil_told:
            # opened from the first verdict naming it: the start's time and data come now
            self._pending.ops.append((
                "UPDATE coils SET started_wall_ns = ?, width_mm = ?, meta = ?, start_payload = ? "
                "WHERE camera = ? AND coil = ? AND status = 'open'",
                (when, _num(o.get("width_mm")), meta_text, text, camera, coil)))
        self._coil_told.add(camera)

    # -- the kinds with tables of their own ----------------------------------------------------
    def _verdict(self, msg: dict[str, Any], text: str, now: int) -> None:
        pub, seq, camera = str(msg["publisher"]), int(msg["seq"]), str(msg["camera"])
        strip = _num(msg.get("strip_position_m"))
        coil_pos = _num(msg.get("coil_position_m"))
        length = _num(msg.get("frame_length_m"))
        base = coil_pos if coil_pos is not None else strip
        coil = self._coil_of(msg, camera, None if base is None else base + (length or 0.0), now)
        raw = msg.get("defects")
        defects = raw if isinstance(raw, list) else []
        capture = _int(msg.get("capture_wall_ns"))
        self._pending.verdicts.append((
            pub, seq, camera, coil, _int(msg.get("frame")), _str(msg.get("status")), len(defects), capture,
            _int(msg.get("publish_wall_ns")), now, _int(msg.get("inference_start_wall_ns")),
            _int(msg.get("inference_end_wall_ns")), strip, coil_pos, length, _int(msg.get("width")),
            _int(msg.get("height")), int(bool(msg.get("late"))), _int(msg.get("gate_deadline_wall_ns")), text))
        if defects:
            pending = self._pending.defects
            frame, status = _int(msg.get("frame")), _str(msg.get("status"))
            for i, d in enumerate(defects):
                if isinstance(d, dict):
                    pending[(pub, seq, i)] = (d, pub, seq, i, None, camera, coil, frame, strip, base, status,
                                              capture, now, None, None)

    @staticmethod
    def _defect_row(d: dict[str, Any], pub: str, verdict_seq: int, idx: int, defect_seq: int | None, camera: str,
                    coil: str | None, frame: int | None, strip: float | None, base: float | None,
                    verdict_status: str | None, capture: int | None, now: int, crop: str | None,
                    payload: str | None) -> tuple:
        raw = d.get("box")
        box = raw if isinstance(raw, list) and len(raw) == 4 else [None] * 4
        box_mm = d.get("box_mm") if isinstance(d.get("box_mm"), list) and len(d["box_mm"]) == 4 else None
        pos = pos_end = base
        x1_mm = x2_mm = None
        if box_mm is not None:
            x1_mm, x2_mm = _num(box_mm[0]), _num(box_mm[2])
            if base is not None and strip is not None and _num(box_mm[1]) is not None and _num(box_mm[3]) is not None:
                # box_mm's y is a strip position in mm; the offset within the frame carries over
                # to the coil position.
                pos = base + (float(box_mm[1]) - strip * 1000.0) / 1000.0
                pos_end = base + (float(box_mm[3]) - strip * 1000.0) / 1000.0
        return (pub, verdict_seq, idx, defect_seq, camera, coil, frame, str(d.get("class")), _num(d.get("score")),
                _num(box[0]), _num(box[1]), _num(box[2]), _num(box[3]), x1_mm, x2_mm, pos, pos_end,
                _int(d.get("area_px")), _num(d.get("area_mm2")), _str(d.get("branch")), int(bool(d.get("rejects"))),
                verdict_status, capture, now, crop, payload)

    def _defect(self, msg: dict[str, Any], text: str, extra: Any, now: int) -> None:
        pub, camera = str(msg.get("publisher")), str(msg["camera"])
        verdict_seq, idx = _int(msg.get("verdict_seq")), _int(msg.get("index"))
        if verdict_seq is None or idx is None:
            self._pending.events.append((pub, _int(msg.get("seq")), "defect", camera, None,
                                         _int(msg.get("publish_wall_ns")), now, text))
            return
        strip = _num(msg.get("strip_position_m"))
        coil_pos = _num(msg.get("coil_position_m"))
        base = coil_pos if coil_pos is not None else strip
        coil = _str(msg.get("coil"))
        crop = msg.get("crop") if isinstance(msg.get("crop"), dict) else None
        row = self._defect_row(
            msg, pub, verdict_seq, idx, _int(msg.get("seq")), camera, coil, _int(msg.get("frame")), strip, base,
            _str(msg.get("verdict_status")), _int(msg.get("capture_wall_ns")), now,
            json.dumps(crop, separators=(",", ":")) if crop is not None else None, text)
        key = (pub, verdict_seq, idx)
        if key in self._pending.defects:
            self._pending.defects[key] = row          # its verdict is in this batch: one row, written once
        else:
            self._pending.defect_messages.append(row)
        if crop is not None and extra:
            jpeg = bytes(extra[0])
            self._pending.crops.append((pub, verdict_seq, idx, now, len(jpeg), jpeg))

    def _uninspected(self, msg: dict[str, Any], text: str, now: int) -> None:
        camera = str(msg["camera"])
        start, end = _num(msg.get("strip_start_m")), _num(msg.get("strip_end_m"))
        c_start, c_end = _num(msg.get("coil_start_m")), _num(msg.get("coil_end_m"))
        coil = self._coil_of(msg, camera, c_end if c_end is not None else end, now)
        self._pending.uninspected.append((
            str(msg["publisher"]), int(msg["seq"]), camera, coil, _str(msg.get("reason")),
            _int(msg.get("first_frame")), _int(msg.get("last_frame")), _int(msg.get("count")), start, end,
            c_start, c_end, _int(msg.get("first_capture_wall_ns")), _int(msg.get("last_capture_wall_ns")), now, text))

    # -- one transaction -----------------------------------------------------------------------
    def take(self) -> _Pending | None:
        """Hand the queued rows over as one batch (with the publishers' rows as of now), or None.

        ``take`` runs on the receiving thread, ``commit`` may run on another: the store
        receives the next batch while the database writes this one.
        """
        p = self._pending
        if not p.messages:
            return None
        p.publishers = [(pub, s.camera, s.first_seq, s.last_seq, s.first_received_ns, s.last_received_ns,
                         s.last_publish_wall_ns, s.last_heartbeat_wall_ns, s.messages)
                        for pub, s in self._pubs.items() if s.dirty]
        for s in self._pubs.values():
            s.dirty = False
            s.messages = 0
        self._pending = _Pending()
        return p

    def commit(self, p: _Pending) -> int:
        """Write one batch in one transaction; returns the number of messages committed."""
        db = self.db
        with db.transaction():
            if p.verdicts:
                db.executemany(_VERDICT_SQL, p.verdicts)
            if p.defects:
                db.executemany(_DEFECT_FROM_VERDICT_SQL, [
                    r if len(r) == 26 else self._defect_row(*r) for r in p.defects.values()])
            if p.defect_messages:
                db.executemany(_DEFECT_MESSAGE_SQL, p.defect_messages)
            if p.crops:
                db.executemany(_CROP_SQL, p.crops)
            if p.uninspected:
                db.executemany(_UNINSPECTED_SQL, p.uninspected)
            if p.events:
                db.executemany(_EVENT_SQL, p.events)
            for sql, params in p.ops:
                db.execute(sql, params)
            if p.gaps:
                db.executemany(_GAP_SQL, [
                    (g.publisher, g.camera, g.reason, g.expected, g.received, g.missing, g.previous_publisher,
                     g.previous_last_seq, p.first_received_ns) for g in p.gaps])
            if p.publishers:
                db.executemany(_PUBLISHER_SQL, p.publishers)
        self.committed += p.messages
        self.batches += 1
        if p.last_publish_wall_ns is not None:
            self.last_commit_lag_ns = time.time_ns() - p.last_publish_wall_ns
        return p.messages

    def flush(self) -> int:
        """Write what is queued in one transaction (``take`` + ``commit``); returns the messages committed."""
        p = self.take()
        return 0 if p is None else self.commit(p)
