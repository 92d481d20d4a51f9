"""The alarm detector's own thread: the publisher hands it each verdict and never waits.

The publisher thread sends what reject actuators act on; a defect storm (hundreds of marks
a frame) must not slow it down. So the detector (``runtime.periodic``) runs here: verdicts
wait in a bounded queue (when it is full the oldest is dropped and counted: the detector
then misses those marks, nothing else does), and the alarms go back to the publisher as
events, right behind the verdict that completed them or a little later.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import structlog

log = structlog.get_logger("inspectd.alarms")


class Detector(Protocol):
    def observe(self, verdict: dict[str, Any]) -> list[dict[str, Any]]: ...


class AlarmThread:
    """``observe`` (publisher thread) queues; the thread runs ``detector`` and ``publish``es
    each alarm body it returns (``EventPublisher.publish_event("alarm", body)``)."""

    def __init__(self, detector: Detector, publish: Callable[[str, dict[str, Any]], bool],
                 queue_size: int = 500, name: str = "alarms"):
        self.detector = detector
        self._publish = publish
        self._queue: deque[dict[str, Any]] = deque()
        self._size = queue_size
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.verdicts = 0
        self.dropped = 0
        self.alarms = 0
        self.errors = 0
        self._drop_logged = False

    def start(self) -> AlarmThread:
        self._thread.start()
        return self

    def observe(self, verdict: dict[str, Any]) -> None:
        with self._cond:
            if self._closing:
                return
            if len(self._queue) >= self._size:
                self._queue.popleft()
                self.dropped += 1
                if not self._drop_logged:
                    self._drop_logged = True
                    log.warning("alarm_detector_behind", queued=self._size,
                                note="verdicts are dropped from periodic-defect detection (stats alarms.dropped)")
            self._queue.append(verdict)
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> bool:
        """Run the detector over what is queued, publish its alarms, stop; False if it took too long."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"verdicts": self.verdicts, "dropped": self.dropped, "queued": len(self._queue),
                    "alarms": self.alarms, "errors": self.errors}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                verdict = self._queue.popleft()
            try:
                bodies = self.detector.observe(verdict)
            except Exception as exc:  # noqa: BLE001 - a detector bug must not end alarm detection
                self.errors += 1
                if self.errors == 1:
                    log.error("alarm_detector_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc,
                              note="further errors are only counted (stats alarms.errors)")
                continue
            self.verdicts += 1
            for body in bodies:
                if self._publish("alarm", body):
                    self.alarms += 1
