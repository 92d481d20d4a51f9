"""``inspectd store``'s loop: a SUB socket taking everything, batched into transactions.

One thread receives and writes: a batch is committed when it holds ``batch_max`` messages or
its first message has waited ``batch_ms``. While a commit runs, ZeroMQ keeps what arrives
(up to ``rcv_hwm`` messages; beyond that the publisher drops this subscriber's messages and
the next one received records the gap). The store takes every topic, so it follows ``seq``,
which numbers every message of a publisher.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveClient
from inspectd.store.database import Database
from inspectd.store.retention import Retention, RetentionPolicy
from inspectd.store.writer import GapRecord, StoreWriter


@dataclass(frozen=True)
class StoreOptions:
    batch_max: int = 2000
    batch_ms: float = 200.0
    rcv_hwm: int = 200_000
    retention: RetentionPolicy = RetentionPolicy()


class StoreService:
    def __init__(self, db: Database, addresses: Sequence[str], options: StoreOptions = StoreOptions(), *,
                 curve: CurveClient | None = None, on_gap: Callable[[GapRecord], None] | None = None,
                 context: zmq.Context | None = None):
        parsed = [parse_address(a, "connect", "address") for a in addresses]
        self.db = db
        self.options = options
        self.writer = StoreWriter(db, on_gap=on_gap)
        self.retention = Retention(db, options.retention) if options.retention.active else None
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, options.rcv_hwm)
        if curve is not None:
            curve.apply(self._sock)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self.endpoints = [a.attach(self._sock, "address") for a in parsed]
        except BaseException:
            self.close()
            raise

    def run(self, stop: threading.Event) -> None:
        """Receive and write until ``stop`` is set; the last batch is committed before it returns."""
        opts = self.options
        writer = self.writer
        sock = self._sock
        batch_ns = round(opts.batch_ms * 1e6)
        next_retention = time.monotonic() + 1.0 if self.retention else None
        try:
            while not stop.is_set():
                since = writer.pending_since_ns
                if since is None:
                    wait_ms = 250
                else:
                    wait_ms = max(0, (since + batch_ns - time.time_ns()) // 1_000_000)
                if sock.poll(min(wait_ms, 250), zmq.POLLIN):
                    # Take what is there, up to a batch, without waiting again.
                    while writer.pending < opts.batch_max:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        writer.add(parts[0], parts[1] if len(parts) > 1 else b"", parts[2:], time.time_ns())
                since = writer.pending_since_ns
                if since is not None and (writer.pending >= opts.batch_max or time.time_ns() - since >= batch_ns):
                    writer.flush()
                if next_retention is not None and time.monotonic() >= next_retention:
                    writer.flush()
                    self.retention.run()
                    next_retention = time.monotonic() + opts.retention.interval_s
        finally:
            writer.flush()

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()
