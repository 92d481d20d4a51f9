"""The examples: the reject actuator's fail-safe logic and the rotating logger, driven by real publishers."""
from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path


from bus_helpers import TIMEOUT_S, assert_valid, given_up, publisher, put, verdict
from inspectd.bus.messages import camera_prefixes
from inspectd.bus.subscriber import Event, EventSubscriber, Gap
from inspectd.line import LineConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


actuator = load("reject_actuator")
event_logger = load("event_logger")

MS = 1_000_000


def ev(kind: str, gaps=(), restarted=False, **fields) -> Event:
    msg = {"kind": kind, "camera": "cam0", "publisher": "p", "publish_wall_ns": fields.get("now", 0), **fields}
    return Event(topic=b"", msg=msg, gaps=list(gaps), restarted=restarted)


def test_actuator_decisions():
    warnings: list[str] = []
    # (silence is tested last; until then heartbeats may be 5 s apart)
    logic = actuator.ActuatorLogic("cam0", silence_factor=50.0, default_span_s=0.5, warn=warnings.append)
    t = 10_000 * MS
    assert logic.state(t) == (True, "publisher not heard yet")
    logic.on_event(ev("heartbeat", interval_s=0.1, publish_wall_ns=t), t)
    assert logic.state(t)[0] and logic.state(t + 499 * MS)[0]       # what passed before we listened: unknown
    assert logic.state(t + 501 * MS) == (False, "")
    t += 600 * MS
    # a reject verdict: the gate acts exactly in its window
    logic.on_event(ev("verdict", status="reject", frame=7, capture_wall_ns=t, gate_deadline_wall_ns=t + 300 * MS,
                      gate_until_wall_ns=t + 320 * MS, publish_wall_ns=t + 10 * MS), t + 10 * MS)
    logic.on_event(ev("heartbeat", interval_s=0.1, publish_wall_ns=t + 20 * MS), t + 20 * MS)
    assert logic.span_ns == 320 * MS                                   # learnt: gate delay + one frame
    assert logic.state(t + 299 * MS) == (False, "")
    assert logic.state(t + 300 * MS) == (True, "reject frame 7")
    assert logic.fired[-1].at_ns == t + 300 * MS
    logic.on_event(ev("heartbeat", interval_s=0.1, publish_wall_ns=t + 310 * MS), t + 310 * MS)
    assert logic.state(t + 321 * MS) == (False, "")
    # an ok verdict does nothing
    logic.on_event(ev("verdict", status="ok", frame=8, capture_wall_ns=t + 30 * MS, gate_deadline_wall_ns=t + 330 * MS,
                      gate_until_wall_ns=t + 350 * MS), t + 330 * MS)
    assert logic.state(t + 340 * MS) == (False, "")
    # a late reject fires at once for what is left; one that has passed is reported as missed
    now = t + 400 * MS
    logic.on_event(ev("verdict", status="reject", frame=9, capture_wall_ns=now - 305 * MS,
                      gate_deadline_wall_ns=now - 5 * MS,
                      gate_until_wall_ns=now + 15 * MS), now)
    assert logic.state(now) == (True, "reject frame 9")
    logic.on_event(ev("verdict", status="reject", frame=10, capture_wall_ns=now - 350 * MS,
                      gate_deadline_wall_ns=now - 50 * MS,
                      gate_until_wall_ns=now - 30 * MS), now)
    assert [w.reason for w in logic.missed] == ["reject frame 10"] and "MISSED reject frame 10" in warnings[-1]
    assert [w.reason for w in logic.late] == ["reject frame 9", "reject frame 10"]
    # late verdicts: the strip now at the gate has no verdict yet either; reject until one comes in time
    assert logic.state(now + 16 * MS) == (True, "verdicts late: no verdict yet for the strip at the gate")
    logic.on_event(ev("verdict", status="ok", frame=11, capture_wall_ns=now - 290 * MS,
                      gate_deadline_wall_ns=now + 10 * MS, gate_until_wall_ns=now + 30 * MS), now + 5 * MS)
    assert logic.state(now + 6 * MS) == (False, "") and "in time again" in warnings[-1]
    # a late ok verdict is late too (its strip passed unjudged)
    logic.on_event(ev("verdict", status="ok", frame=12, capture_wall_ns=now - 280 * MS,
                      gate_deadline_wall_ns=now + 20 * MS, gate_until_wall_ns=now + 40 * MS), now + 25 * MS)
    assert logic.state(now + 50 * MS)[0] and logic.late[-1].end_ns == now + 25 * MS
    logic.on_event(ev("verdict", status="ok", frame=13, capture_wall_ns=now - 200 * MS,
                      gate_deadline_wall_ns=now + 100 * MS, gate_until_wall_ns=now + 120 * MS), now + 60 * MS)
    assert logic.state(now + 61 * MS) == (False, "")
    # uninspected strip is rejected
    now = t + 500 * MS
    logic.on_event(ev("uninspected", first_frame=11, last_frame=13, reason="ring_overflow",
                      gate_deadline_wall_ns=now + 100 * MS, gate_until_wall_ns=now + 160 * MS), now)
    assert logic.state(now + 100 * MS) == (True, "uninspected frames 11..13 (ring_overflow)")
    # a gap: unknown strip for one span from now
    now = t + 700 * MS
    logic.on_event(ev("heartbeat", interval_s=0.1, gaps=[Gap("p", "cam0", "verdict", 20, 23)], publish_wall_ns=now),
                   now)
    assert logic.state(now) == (True, "missed 3 messages")
    assert logic.state(now + 319 * MS)[0] and not logic.state(now + 321 * MS)[0]
    # heartbeats stop: reject until they come back, and one span after
    logic.silence_factor = 3.0
    quiet = now + 400 * MS
    assert logic.state(quiet) == (True, "no heartbeat from the publisher")
    back = quiet + 2000 * MS
    for k in range(4):
        logic.on_event(ev("heartbeat", interval_s=0.1, publish_wall_ns=back + k * 100 * MS), back + k * 100 * MS)
    assert logic.state(back + 319 * MS) == (True, "publisher was silent")
    assert logic.state(back + 321 * MS) == (False, "")
    # other cameras' events are not this gate's business
    logic.on_event(ev("verdict", status="reject", frame=1, capture_wall_ns=back + 80 * MS,
                      gate_deadline_wall_ns=back + 400 * MS,
                      gate_until_wall_ns=back + 420 * MS, camera="cam1"), back + 330 * MS)
    logic.on_event(ev("heartbeat", interval_s=0.1, publish_wall_ns=back + 390 * MS), back + 390 * MS)
    assert logic.state(back + 410 * MS) == (False, "")


class RecordingGate:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, str, int]] = []
        self.cond = threading.Condition()

    def set(self, active: bool, reason: str, now_ns: int) -> None:
        with self.cond:
            self.changes.append((active, reason, now_ns))
            self.cond.notify_all()

    def wait(self, pred, timeout_s: float = TIMEOUT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.changes), timeout_s), self.changes


def test_actuator_against_a_real_publisher_fires_on_rejects_uninspected_gaps_and_silence():
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        if msg["kind"] == "verdict" and msg["frame"] == 10:
            entered.set()
            release.wait(TIMEOUT_S)

    line = LineConfig(speed_m_per_s=10.0, gate_distance_m=3.0)     # the gate acts 0.3 s after capture
    pub = publisher(line=line, tap=tap, queue_size=1, heartbeat_interval_s=0.05)
    sub = EventSubscriber(pub.endpoint, camera_prefixes("cam0", ["verdict", "uninspected", "heartbeat"]))
    logic = actuator.ActuatorLogic("cam0", silence_factor=4.0, default_span_s=0.3, warn=lambda text: None)
    gate = RecordingGate()
    stop = threading.Event()
    loop = threading.Thread(target=actuator.run, args=(sub, logic, gate, stop), daemon=True)
    loop.start()

    def fired(text: str) -> list:
        return [f for f in logic.fired if text in f.reason]

    def wait_fired(text: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not fired(text) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired(text), f"no fire for {text!r}: {logic.fired}"

    try:
        # Closed from the start: until heard from, and then until the strip it could not know has passed.
        gate.wait(lambda ch: ch and ch[0][0] is True and ch[0][1] in ("publisher not heard yet", "publisher was silent"))
        gate.wait(lambda ch: ch[-1][0] is False)                  # heard, and the unknown strip has passed
        put(pub, verdict(0, line=line))            # the queue holds one item: hand over one at a time
        put(pub, verdict(1, n_defects=2, line=line))
        for i in (2, 3, 4):
            pub.publish_dropped(*given_up(i, line=line), "ring_overflow")
        wait_fired("reject frame 1")
        wait_fired("uninspected frames 2..4 (ring_overflow)")
        assert not fired("frame 0")
        # a real gap: the publisher thread stalls, two verdicts cannot be queued
        put(pub, verdict(10, line=line))
        assert entered.wait(TIMEOUT_S)
        assert pub.publish_verdict(verdict(11, line=line)) and not pub.publish_verdict(verdict(12, n_defects=1, line=line))
        assert not pub.publish_verdict(verdict(13, line=line))
        release.set()
        wait_fired("missed 2 messages")      # told by the next heartbeat, before any later verdict
        # the publisher goes away: the gate closes and stays closed
        pub.close()
        gate.wait(lambda ch: ch[-1][:2] == (True, "no heartbeat from the publisher"))
    finally:
        release.set()
        stop.set()
        loop.join(TIMEOUT_S)
        sub.close()
        pub.close()
    for f in logic.fired:
        assert f.at_ns >= f.start_ns, f"{f.reason} fired {(f.start_ns - f.at_ns) / 1e6:.1f} ms early"
    reject = fired("reject frame 1")[0]
    assert reject.end_ns - reject.start_ns == 20 * MS                 # one frame: 0.2 m at 10 m/s
    assert not logic.missed


def test_logger_writes_rotating_json_lines_with_gap_records(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        if msg["kind"] == "verdict" and msg["frame"] == 100:
            entered.set()
            release.wait(TIMEOUT_S)

    pub = publisher(tap=tap, queue_size=1)
    sub = EventSubscriber(pub.endpoint)
    out = event_logger.RotatingJsonLines(tmp_path / "log", max_bytes=40_000, backups=3)
    stop = threading.Event()
    loop = threading.Thread(target=event_logger.run, args=(sub, out, stop, 0.05), daemon=True)
    loop.start()
    try:
        # wait until the logger is subscribed (it has logged a heartbeat)
        deadline = time.monotonic() + TIMEOUT_S
        while b"heartbeat" not in (tmp_path / "log" / "events.jsonl").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(101):
            put(pub, verdict(i, n_defects=i % 3))
        assert entered.wait(TIMEOUT_S)
        pub.publish_verdict(verdict(101))
        assert not pub.publish_verdict(verdict(102))               # lost: one gap of one message
        release.set()
        put(pub, verdict(103))

        def logged() -> list[dict]:
            files = sorted((tmp_path / "log").glob("events.jsonl*"), key=lambda p: -int(p.suffix[1:] or 0)
                           if p.suffix != ".jsonl" else 0)
            return [json.loads(line) for p in files for line in p.read_text().splitlines()]

        deadline = time.monotonic() + TIMEOUT_S
        while not any(r.get("frame") == 103 for r in logged()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        release.set()
        stop.set()
        loop.join(TIMEOUT_S)
        out.close()
        sub.close()
        pub.close()
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    assert all(p.stat().st_size <= 40_000 for p in (tmp_path / "log").iterdir())
    records = logged()
    gaps = [r for r in records if r.get("logger") == "gap"]
    assert [(g["kind"], g["missing"]) for g in gaps] == [(None, 1)]
    payloads = [r for r in records if "logger" not in r]
    seqs = [r["seq"] for r in payloads]
    # oldest files were rotated away; what is kept is in order, and complete but for the logged gap
    assert seqs == sorted(seqs) and seqs[-1] - seqs[0] + 1 == len(seqs) + 1
    assert [r for r in payloads if r["kind"] == "verdict"][-1]["frame"] == 103
    for r in payloads[-20:]:
        assert_valid(r)
