"""SIGTERM and SIGINT, caught without a lock.

A Python signal handler runs on the main thread between two bytecodes, wherever that thread
is: also inside ``threading``'s own code while it holds the lock of an ``Event`` or a
``Condition`` (``Event.wait`` re-takes it before it returns, ``Event.clear`` takes it). A handler
that calls ``Event.set()`` then waits for that lock, held by its own thread, forever, and the
daemon ignores every later SIGTERM until systemd kills it (CI saw ``inspectd run`` on the
simulated camera not stop within 120 s). A second signal arriving inside a handler that is
setting an Event has the same effect. So the handlers here take no lock: they count, and
write one byte to a non-blocking self-pipe (``Waker``) that the waiting thread polls.
"""
from __future__ import annotations

import os
import select
import signal
import threading
from types import TracebackType
from typing import Any, Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag(Protocol):
    """What a loop that runs until told to stop looks at (``threading.Event`` is one)."""

    def is_set(self) -> bool: ...


class Waker:
    """Wakes a thread blocked in ``wait()``. ``set()`` may be called from any thread and from a
    signal handler: it is one ``write`` to a non-blocking pipe, no lock."""

    def __init__(self) -> None:
        self._r = self._w = -1
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        # poll, not select: select fails on descriptors above 1023, which a daemon holding
        # sockets, cameras and a runtime's files may reach.
        self._poll = select.poll()
        self._poll.register(self._r, select.POLLIN)

    def set(self) -> None:
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass        # a full pipe already wakes the waiter; a closed one has no waiter left

    def wait(self, timeout: float | None) -> bool:
        """Wait until ``set()`` (True) or ``timeout`` seconds (False); then clear."""
        ready = self._poll.poll(None if timeout is None else max(0.0, timeout) * 1000.0)
        if ready:
            self.clear()
        return bool(ready)

    def clear(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def __del__(self) -> None:
        # Closed only when nothing can call set() any more: a descriptor closed while another
        # thread is about to write may be reused by then, and the byte would land in that file.
        for fd in (self._r, self._w):
            try:
                if fd >= 0:
                    os.close(fd)
            except OSError:
                pass


class StopSignals:
    """While entered: SIGTERM and SIGINT are counted (``count``) and wake ``waker``, nothing else.

    On a thread other than the main one, where signals cannot be caught, it catches nothing.
    The previous handlers are restored on exit. ``is_set()`` (a ``StopFlag``) is true after
    the first signal.
    """

    def __init__(self, waker: Waker | None = None, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.waker = waker if waker is not None else Waker()
        self.signals = signals
        self.count = 0
        self._old: dict[signal.Signals, Any] = {}

    def _handle(self, _signum: int, _frame: object) -> None:
        self.count += 1          # only the main thread runs handlers: no other writer
        self.waker.set()

    def is_set(self) -> bool:
        return self.count > 0

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for a signal (or another ``waker.set()``); True once signalled."""
        if not self.count:
            self.waker.wait(timeout)
        return self.count > 0

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
