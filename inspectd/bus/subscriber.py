"""The subscriber side: receive events, decode them, and notice every message that was missed.

Gap detection follows the sequence numbers of each publisher (``publisher`` id in every
payload, so it works through a proxy that merges several cameras):

- ``track="seq"`` checks ``seq``, which counts every message of a publisher. Right when the
  subscription takes everything (topic prefix ``""``).
- ``track="kind_seq"`` checks ``kind_seq`` per (publisher, kind), and each heartbeat's
  ``next_kind_seq`` for the kinds the subscription takes in full. Right for subscriptions
  by kind or by kind and camera (``verdict/``, ``verdict/cam0/``); subscribe to the
  heartbeats too, or the loss of a kind's last message goes unnoticed until the next one.
  A filter down to the detail (``verdict/cam0/reject``) sees jumps that are not losses.
- ``"auto"`` picks ``seq`` for an unfiltered subscription and ``kind_seq`` otherwise.

The first message from a publisher starts its count (a subscriber that joins late has
missed nothing it could know of). A new ``publisher`` id for a camera already heard from is
a restart, reported as such, not as a gap.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveClient
from inspectd.bus.messages import decode

Track = Literal["auto", "seq", "kind_seq"]


@dataclass(frozen=True)
class Gap:
    publisher: str
    camera: str
    kind: str | None       # None: a gap in ``seq`` (any kind); else in this kind's ``kind_seq``
    expected: int          # the number that should have come
    received: int          # the number that came

    @property
    def missing(self) -> int:
        return self.received - self.expected

    def describe(self) -> str:
        what = "messages" if self.kind is None else f"{self.kind} messages"
        field_name = "seq" if self.kind is None else "kind_seq"
        return (f"gap: missed {self.missing} {what} from camera {self.camera} "
                f"(publisher {self.publisher}, {field_name} {self.expected}..{self.received - 1})")


@dataclass
class Event:
    topic: bytes
    msg: dict[str, Any] | None            # None when the payload could not be decoded
    parts: list[bytes] = field(default_factory=list)   # parts after the payload (a defect's JPEG)
    gaps: list[Gap] = field(default_factory=list)      # losses noticed on this message
    restarted: bool = False               # first message of a new publisher for a known camera
    error: str | None = None              # why msg is None
    payload: bytes = b""                  # the payload part exactly as received


class GapTracker:
    """Sequence bookkeeping for any source of decoded payloads.

    ``covers(kind, camera)`` says whether the subscription receives every message of that
    kind from that camera; with it, ``kind_seq`` tracking also checks each heartbeat's
    ``next_kind_seq`` for those kinds, so that the loss of the last message of a kind
    (say, the last verdict before the line stops) shows within one heartbeat interval.
    """

    def __init__(self, track: Literal["seq", "kind_seq"] = "seq",
                 covers: Callable[[str, str], bool] | None = None):
        self.track = track
        self._covers = covers
        self._last: dict[tuple[str, str | None], int] = {}
        self._publisher_of: dict[str, str] = {}     # camera -> latest publisher id
        self.gaps = 0
        self.missing = 0
        self.out_of_order = 0
        self.restarts = 0

    def feed(self, msg: dict[str, Any]) -> tuple[list[Gap], bool]:
        pub, camera = str(msg.get("publisher")), str(msg.get("camera"))
        restarted = False
        known = self._publisher_of.get(camera)
        if known != pub:
            if known is not None and not any(k[0] == pub for k in self._last):
                restarted = True
                self.restarts += 1
            self._publisher_of[camera] = pub
        if self.track == "seq":
            key, number = (pub, None), msg.get("seq")
        else:
            key, number = (pub, msg.get("kind")), msg.get("kind_seq")
        if not isinstance(number, int):
            return [], restarted
        gaps: list[Gap] = []
        if self.track == "kind_seq" and msg.get("kind") == "heartbeat":
            self._check_announced(pub, camera, msg.get("next_kind_seq"), gaps)
        last = self._last.get(key)
        if last is not None:
            if number > last + 1:
                gaps.append(Gap(pub, camera, key[1], last + 1, number))
                self.gaps += 1
                self.missing += number - last - 1
            elif number <= last:
                self.out_of_order += 1
                return gaps, restarted
        self._last[key] = number
        return gaps, restarted

    def _check_announced(self, pub: str, camera: str, announced: Any, gaps: list[Gap]) -> None:
        if not isinstance(announced, dict):
            return
        for kind, nxt in announced.items():
            if kind == "heartbeat" or not isinstance(nxt, int):
                continue
            if self._covers is not None and not self._covers(kind, camera):
                continue
            key = (pub, kind)
            last = self._last.get(key)
            if last is None:
                if self._covers is not None:
                    self._last[key] = nxt - 1      # messages before this heartbeat predate us
                continue
            if nxt - 1 > last:
                gaps.append(Gap(pub, camera, kind, last + 1, nxt))
                self.gaps += 1
                self.missing += nxt - 1 - last
                self._last[key] = nxt - 1


class EventSubscriber:
    """A SUB socket on one or more publisher (or proxy) addresses.

    Use it from one thread. ``topics`` are ZeroMQ prefixes (see ``inspectd.bus.messages``).
    ``rcv_hwm`` and ``rcvbuf`` bound what waits for a slow reader; beyond them the publisher
    drops this subscriber's messages and the next message received reports the gap.
    """

    def __init__(self, addresses: str | Sequence[str], topics: Sequence[str | bytes] = (b"",), *,
                 curve: CurveClient | None = None, track: Track = "auto", rcv_hwm: int = 1000,
                 rcvbuf: int | None = None, context: zmq.Context | None = None):
        if isinstance(addresses, str):
            addresses = [addresses]
        parsed = [parse_address(a, "connect", "address") for a in addresses]
        prefixes = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in topics] or [b""]
        if track == "auto":
            track = "seq" if b"" in prefixes else "kind_seq"

        def covers(kind: str, camera: str) -> bool:
            full = f"{kind}/{camera}/".encode()
            return any(full.startswith(p) for p in prefixes)

        self.tracker = GapTracker(track, covers)
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcv_hwm)
        if rcvbuf is not None:
            self._sock.setsockopt(zmq.RCVBUF, rcvbuf)
        if curve is not None:
            curve.apply(self._sock)
        for p in prefixes:
            self._sock.setsockopt(zmq.SUBSCRIBE, p)
        try:
            self.endpoints = [a.attach(self._sock, "address") for a in parsed]
        except BaseException:
            self.close()
            raise
        self.received = 0
        self.undecodable = 0
        self._heard: dict[str, tuple[int, str, float]] = {}   # publisher -> (monotonic ns, camera, interval)

    def recv(self, timeout_s: float | None = None) -> Event | None:
        """The next event, or None if none came within ``timeout_s`` (None: wait for ever)."""
        if timeout_s is not None:
            if not self._sock.poll(max(0, round(timeout_s * 1000)), zmq.POLLIN):
                return None
        parts = self._sock.recv_multipart()
        topic = parts[0]
        try:
            if len(parts) < 2:
                raise ValueError("no payload part")
            msg = decode(parts[1])
        except (ValueError, UnicodeDecodeError) as exc:
            self.undecodable += 1
            return Event(topic, None, parts[2:], error=f"undecodable message on topic {topic!r}: {exc}",
                         payload=parts[1] if len(parts) > 1 else b"")
        self.received += 1
        gaps, restarted = self.tracker.feed(msg)
        interval = msg.get("interval_s") if msg.get("kind") == "heartbeat" else None
        prev = self._heard.get(str(msg.get("publisher")))
        if not isinstance(interval, (int, float)):
            interval = prev[2] if prev else 1.0
        self._heard[str(msg.get("publisher"))] = (time.monotonic_ns(), str(msg.get("camera")), float(interval))
        return Event(topic, msg, parts[2:], gaps, restarted, payload=parts[1])

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.recv()
            if ev is not None:
                yield ev

    def silent(self, factor: float = 3.0) -> list[tuple[str, str, float]]:
        """Publishers not heard from for ``factor`` heartbeat intervals: (publisher, camera, seconds)."""
        now = time.monotonic_ns()
        out = []
        for pub, (t, camera, interval) in self._heard.items():
            quiet = (now - t) / 1e9
            if quiet > factor * interval:
                out.append((pub, camera, quiet))
        return out

    def forget(self, publisher: str) -> None:
        """Stop watching a publisher (e.g. after reporting it silent)."""
        self._heard.pop(publisher, None)

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
