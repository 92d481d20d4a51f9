"""Shared pieces of the event-bus tests: verdicts without a model, real sockets, waiting."""
from __future__ import annotations

import dataclasses
import functools
import threading
import time
from typing import Any, Callable

import jsonschema

from inspectd.bus.config import BusConfig
from inspectd.bus.messages import EventEncoder, load_schema
from inspectd.bus.publisher import EventPublisher
from inspectd.bus.subscriber import Event, EventSubscriber
from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.domain.placement import Placement
from inspectd.domain.verdicts import Defect, Verdict
from inspectd.line import LineConfig
from inspectd.runtime.placement import place

# Generous: the machine is shared with a training run.
TIMEOUT_S = 30.0

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def meta(index: int, camera: str = "cam0", h: int = 400, w: int = 600,
         capture_wall_ns: int | None = None, camera_frame_id: int | None = None,
         coil: CoilMark | None = None) -> FrameMeta:
    mono = time.monotonic_ns()
    return FrameMeta(index=index, camera=camera, capture_ns=mono,
                     capture_wall_ns=time.time_ns() if capture_wall_ns is None else capture_wall_ns,
                     height=h, width=w, camera_frame_id=camera_frame_id, coil=coil)


def given_up(index: int, camera: str = "cam0", line: LineConfig | None = None,
            **meta_kw: Any) -> tuple[FrameMeta, Placement]:
    """A frame given up, placed on ``line`` as the pipeline does: ``publish_dropped(*given_up(i), reason)``."""
    m = meta(index, camera, **meta_kw)
    return m, place(line or LineConfig(), m)


def defect(i: int = 0, rejects: bool = True) -> Defect:
    x = 10.0 + 37 * i
    return Defect(cls=CLASSES[i % len(CLASSES)], score=0.5 + 0.04 * (i % 10),
                  box=(x, 20.0 + i, x + 40.0, 90.0 + i), area_px=900 + i,
                  branch=("detection", "segmentation", "both")[i % 3], rejects=rejects)


def verdict(index: int, n_defects: int = 0, camera: str = "cam0", line: LineConfig | None = None,
            **meta_kw: Any) -> Verdict:
    """A verdict placed on ``line`` (default: ``LineConfig()``), as the inference stage does."""
    m = meta(index, camera, **meta_kw)
    defects = [defect(i) for i in range(n_defects)]
    return Verdict(meta=m, status="reject" if defects else "ok", placement=place(line or LineConfig(), m, defects),
                   defects=defects, inference_start_ns=m.capture_ns + 1_000_000,
                   inference_end_ns=m.capture_ns + 9_000_000)


def bus_config(**kw: Any) -> BusConfig:
    kw.setdefault("publish", "tcp://127.0.0.1:*")
    kw.setdefault("heartbeat_interval_s", 0.05)
    return BusConfig(**kw)


def publisher(camera: str = "cam0", line: LineConfig | None = None, tap: Callable | None = None,
              **cfg_kw: Any) -> EventPublisher:
    return EventPublisher(bus_config(**cfg_kw), EventEncoder(camera, line or LineConfig()), tap=tap).start()


def drain(pub: EventPublisher) -> None:
    """Wait until the publisher thread has taken everything queued."""
    deadline = time.monotonic() + TIMEOUT_S
    while pub.stats["queued"] and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pub.stats["queued"] == 0, "publisher thread does not take its queue"


def put(pub: EventPublisher, v: Verdict) -> None:
    """Publish into a small queue without losing anything: wait until it is free."""
    drain(pub)
    assert pub.publish_verdict(v)


def recv_until(sub: EventSubscriber, pred: Callable[[Event], bool], timeout_s: float = TIMEOUT_S) -> list[Event]:
    """Receive until ``pred(event)`` holds for one event; returns everything received (AssertionError on timeout)."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ev = sub.recv(0.2)
        if ev is None:
            continue
        got.append(ev)
        if pred(ev):
            return got
    raise AssertionError(f"condition not met within {timeout_s} s; received {len(got)} events")


def is_kind(kind: str, camera: str | None = None) -> Callable[[Event], bool]:
    return lambda ev: ev.msg is not None and ev.msg["kind"] == kind and (camera is None or ev.msg["camera"] == camera)


def synced(sub: EventSubscriber, camera: str | None = None) -> list[Event]:
    """Wait for a heartbeat: from then on the subscription is in place (no slow-joiner loss)."""
    return recv_until(sub, is_kind("heartbeat", camera))


@functools.lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def assert_valid(msg: dict) -> None:
    errors = sorted(validator().iter_errors(msg), key=lambda e: list(e.path))
    assert not errors, f"{msg.get('kind')} message does not match the schema: " + "; ".join(
        f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])


class Collector:
    """Receives on a thread until stopped: a subscriber that keeps up."""

    def __init__(self, sub: EventSubscriber):
        self.sub = sub
        self.events: list[Event] = []
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ev = self.sub.recv(0.05)
            if ev is not None:
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()

    def wait(self, pred: Callable[[list[Event]], bool], timeout_s: float = TIMEOUT_S) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: pred(self.events), timeout_s)
        assert ok, f"condition not met within {timeout_s} s; collected {len(self.events)} events"

    def stop(self) -> list[Event]:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        return self.events


def replace(cfg: Any, **kw: Any) -> Any:
    return dataclasses.replace(cfg, **kw)
