"""``inspectd store``'s loop: a SUB socket taking everything, batched into transactions.

One thread receives and turns messages into rows, another commits them: a batch is handed
over when it holds ``batch_max`` messages or its first message has waited ``batch_ms``. While
commits fall behind, ZeroMQ keeps what arrives (up to ``rcv_hwm`` messages; beyond that the
publisher drops this subscriber's messages and
the next one received records the gap). The store takes every topic, so it follows ``seq``,
which numbers every message of a publisher.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveClient
from inspectd.errors import InspectdError
from inspectd.stop_signals import StopFlag
from inspectd.store.database import Database
from inspectd.store.retention import Retention, RetentionPolicy
from inspectd.store.writer import GapRecord, StoreWriter

_STOP = object()
# After stop, how long the database may take, in all, to accept and commit what was received
# before the store gives up on it (a lock wait, a dead server, a hung disk): an error naming what
# was not written, instead of a stop that never ends (the units' TimeoutStopSec is 30 s).
STOP_WAIT_S = 15.0
_RETENTION = object()


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
        self._committer: threading.Thread | None = None
        self._given_up = False                # run() stopped waiting for the database
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

    def run(self, stop: StopFlag) -> None:
        """Receive and write until ``stop`` is set; what was received is committed before it returns.

        This thread receives and builds rows; a second one commits (the database libraries
        release the GIL while they write). At most two batches wait for the committer: beyond
        that, this thread waits and ZeroMQ holds the messages.
        """
        opts = self.options
        writer = self.writer
        sock = self._sock
        batch_ns = round(opts.batch_ms * 1e6)
        handoff: queue.Queue = queue.Queue(maxsize=2)
        failed: list[BaseException] = []
        committer = threading.Thread(target=self._commit_loop, args=(handoff, failed), name="store-commit",
                                     daemon=True)
        committer.start()
        self._committer = committer
        next_retention = time.monotonic() + 1.0 if self.retention else None

        stop_by: float | None = None       # when the time after stop runs out (set on first sight)

        def left() -> float:
            nonlocal stop_by
            if stop_by is None:
                stop_by = time.monotonic() + STOP_WAIT_S
            return stop_by - time.monotonic()

        def hand_over(item: object, messages: int = 0) -> None:
            while True:
                if failed:
                    raise failed[0]
                if stop.is_set() and left() <= 0:
                    raise InspectdError(f"the database took no batch for {STOP_WAIT_S:g} s after stop: "
                                        f"{messages} received message(s), and those it was still given, "
                                        "are not written", exit_code=1)
                try:
                    handoff.put(item, timeout=0.25)
                    return
                except queue.Full:
                    continue

        try:
            while not stop.is_set():
                if failed:
                    raise failed[0]
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
                    batch = writer.take()
                    if batch is not None:
                        hand_over(batch, batch.messages)
                if next_retention is not None and time.monotonic() >= next_retention:
                    hand_over(_RETENTION)
                    next_retention = time.monotonic() + opts.retention.interval_s
            batch = writer.take()
            if batch is not None:
                hand_over(batch, batch.messages)
        finally:
            try:
                handoff.put(_STOP, timeout=max(0.0, left()))
            except queue.Full:
                self._given_up = True
            committer.join(max(0.0, left()))
            self._given_up = committer.is_alive()
        if failed:
            raise failed[0]
        if committer.is_alive():
            raise InspectdError(f"the database did not finish its last transaction within {STOP_WAIT_S:g} s "
                                "of stopping; what it held is not written", exit_code=1)

    def _commit_loop(self, handoff: queue.Queue, failed: list[BaseException]) -> None:
        while True:
            item = handoff.get()
            if item is _STOP or self._given_up:
                return                        # given up: what is still queued is reported, not written
            if failed:
                continue                      # drain: the receiving thread is told and stops
            try:
                if item is _RETENTION:
                    assert self.retention is not None      # queued only when there is one
                    self.retention.run()
                else:
                    self.writer.commit(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the receiving thread
                failed.append(exc)

    @property
    def committing(self) -> bool:
        """A transaction is still running (``run`` gave up waiting for it): keep the connection open."""
        return self._committer is not None and self._committer.is_alive()

    def close(self) -> None:
        self._sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()
