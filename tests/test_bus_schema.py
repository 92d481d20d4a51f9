"""Every message kind, as received over a real socket, validates against the JSON Schema; so do the docs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from bus_helpers import Collector, assert_valid, bus_config, given_up, synced, verdict
from inspectd.bus.messages import KINDS, EventEncoder
from inspectd.bus.publisher import EventPublisher
from inspectd.bus.subscriber import EventSubscriber
from inspectd.domain.frames import CoilMark
from inspectd.line import LineConfig
from inspectd.runtime.alarm_thread import AlarmThread
from inspectd.runtime.periodic import PeriodicConfig, PeriodicDetector

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def test_every_kind_received_validates_and_crops_are_jpegs_of_the_defect():
    alarms = AlarmThread(PeriodicDetector(PeriodicConfig(classes=["crazing"]), 0.5),
                         lambda kind, body: pub.publish_event(kind, body)).start()
    pub = EventPublisher(
        bus_config(crops=True, crop_max_side_px=64, status_interval_s=0.1),
        EventEncoder("cam0", LineConfig()),
        status_source=lambda: {"frames": 3, "fps": 24.0, "latency_ms": {"p50": 11.0, "p99": 20.5}},
        watcher=alarms,
    ).start()
    sub = EventSubscriber(pub.endpoint)
    image = np.zeros((400, 600), np.uint8)
    image[20:90, 10:50] = 255                     # the first defect's box is bright
    try:
        synced(sub)
        col = Collector(sub)
        v = verdict(0, n_defects=3)
        assert pub.publish_verdict(v, image)
        image[:] = 0                              # the slot is reused at once: crops were cut already
        pub.publish_dropped(*given_up(1), "ring_overflow")
        pub.publish_status({"frames": 2})
        pub.publish_event("coil_start", {"coil": "C1", "width_mm": None, "meta": {}, "start_wall_ns": 1})
        for i in (4, 6, 8):                       # the same crazing mark every 0.4 m: a periodic alarm
            pub.publish_verdict(verdict(i, n_defects=1, coil=CoilMark("C1", 0.8)))
        pub.publish_event("coil_end", {"coil": "C1", "closed_by": "end", "width_mm": None, "meta": {},
                                       "start_wall_ns": 1, "end_wall_ns": 2, "frames": 5, "first_frame": 4,
                                       "last_frame": 8, "length_m": 1.0})
        pub.publish_verdict(verdict(10))
        col.wait(lambda evs: {e.msg["kind"] for e in evs} == set(KINDS)
                 and sum(e.msg["kind"] == "status" for e in evs) >= 2)
        events = col.stop()
    finally:
        sub.close()
        alarms.close()
        pub.close()
    for e in events:
        assert_valid(e.msg)
    defects = [e for e in events if e.msg["kind"] == "defect" and e.msg["frame"] == 0]
    assert len(defects) == 3
    for e in defects:
        crop = e.msg["crop"]
        assert crop is not None and len(e.parts) == 1 and len(e.parts[0]) == crop["bytes"]
        img = cv2.imdecode(np.frombuffer(e.parts[0], np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (crop["height"], crop["width"]) and max(img.shape[:2]) <= 64
    first = next(e for e in defects if e.msg["index"] == 0)
    x1, y1, x2, y2 = first.msg["crop"]["box"]
    assert (x1, y1) == (0, 4) and (x2, y2) == (66, 106)          # box 10,20-50,90 plus 16 px margin
    img = cv2.imdecode(np.frombuffer(first.parts[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.mean() > 60                                       # it shows the bright defect
    alarms = [e.msg for e in events if e.msg["kind"] == "alarm"]
    assert [(a["state"], a["class"], a["pitch_m"], a["repeats"], a["coil"]) for a in alarms][:1] == [
        ("raised", "crazing", 0.4, 3, "C1")]
    others = [e for e in events if e.msg["kind"] != "defect"]
    assert all(e.parts == [] for e in others)
    status = [e.msg for e in events if e.msg["kind"] == "status"]
    assert any(s["counters"] == {"frames": 2} and s["interval_s"] is None for s in status)
    assert any(s["counters"].get("fps") == 24.0 and s["interval_s"] == 0.1 for s in status)


def json_blocks(text: str) -> list[dict]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", text, flags=re.S)]


def test_docs_examples_validate_and_cover_every_kind():
    examples = [b for b in json_blocks(DOCS.read_text(encoding="utf-8")) if "kind" in b and "schema" in b]
    assert {m["kind"] for m in examples} == set(KINDS)
    for m in examples:
        assert_valid(m)
