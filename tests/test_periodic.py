"""Periodic defects: the detector on published verdicts, and the daemon on real recordings.

The end-to-end tests run the service's pipeline with the shipped model on real video files:
one made here (a clean strip with a real NEU defect pasted at a fixed pitch, as a damaged
roll would mark it) must raise the alarm with the right pitch, class and cross position;
the bundled NEU sample recording (defects everywhere, none periodic) must raise none.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from bus_helpers import assert_valid
from inspectd.config import default_config, load_config
from inspectd.configtools import ConfigError
from inspectd.model import default_model_path
from inspectd.runtime.periodic import PeriodicConfig, PeriodicDetector, check_classes
from inspectd.runtime.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "neu_strip.mkv"
needs_model = pytest.mark.skipif(not default_model_path().is_file(), reason="the shipped model is not there")
MM = 0.5


# -- the detector, fed published verdict payloads ------------------------------------------
def frame(index: int, defects: list[tuple[str, float, float, float, float]], height: int = 400,
          advance: int = 400, coil: str | None = "C1", head_m: float = 0.0, score: float = 0.9) -> dict:
    """A verdict payload as published: frame ``index`` of a strip advancing ``advance`` px per
    frame, ``defects`` as (class, x1, y1, x2, y2) in frame pixels."""
    pos = index * advance * MM / 1000.0
    return {
        "kind": "verdict", "frame": index, "height": height, "strip_position_m": pos,
        "frame_length_m": advance * MM / 1000.0, "coil": coil,
        "coil_position_m": None if coil is None else pos - head_m,
        "defects": [{"class": c, "score": score, "box": [x1, y1, x2, y2],
                     "box_mm": [x1 * MM, pos * 1000 + y1 * MM, x2 * MM, pos * 1000 + y2 * MM]}
                    for c, x1, y1, x2, y2 in defects],
    }


def feed(detector: PeriodicDetector, frames: list[dict]) -> list[dict]:
    out = []
    for f in frames:
        out += detector.observe(f)
    return out


def strip(marks_px: list[tuple[str, float, float, float, float]], length_px: int, height: int = 400,
          advance: int = 400, **kw) -> list[dict]:
    """Frames over a strip with marks at strip pixel boxes; a mark crossing a frame edge is cut,
    as a camera cuts it, and appears in each frame that sees part of it."""
    frames = []
    for i in range(-(-length_px // advance)):
        top = i * advance
        seen = [(c, x1, max(y1, top) - top, x2, min(y2, top + height) - top)
                for c, x1, y1, x2, y2 in marks_px if y1 < top + height and y2 > top]
        frames.append(frame(i, seen, height, advance, **kw))
    return frames


def test_a_mark_every_turn_raises_then_repeats_then_ends():
    # 1.234 m pitch = 2468 px; jitter of a pixel or two as a detector would see it.
    marks = [("inclusion", 300 + j, 500 + k * 2468 + j, 330 + j, 540 + k * 2468) for k, j in enumerate([0, 2, -1, 1])]
    det = PeriodicDetector(PeriodicConfig(), MM)
    alarms = feed(det, strip(marks, 500 + 7 * 2468))
    assert [a["state"] for a in alarms] == ["raised", "repeated", "ended"]
    raised = alarms[0]
    assert raised["class"] == "inclusion" and raised["repeats"] == 3 and raised["turns"] == 2
    assert raised["pitch_m"] == pytest.approx(1.234, abs=0.002)
    assert raised["cross_mm"] == pytest.approx(157.5, abs=1.0)
    assert raised["first"]["strip_position_m"] == pytest.approx(0.26, abs=0.001)
    assert raised["latest"]["strip_position_m"] == pytest.approx(0.26 + 2 * 1.234, abs=0.002)
    assert raised["coil"] == "C1" and raised["latest"]["coil_position_m"] == raised["latest"]["strip_position_m"]
    assert alarms[1]["repeats"] == 4 and alarms[1]["alarm_id"] == raised["alarm_id"]
    assert alarms[2]["ended_by"] == "missed"


def test_the_number_of_repeats_is_configurable():
    marks = [("scratches", 400, 300 + k * 3000, 412, 380 + k * 3000) for k in range(6)]
    for repeats in (2, 3, 5):
        alarms = feed(PeriodicDetector(PeriodicConfig(repeats=repeats), MM), strip(marks, 300 + 6 * 3000))
        assert alarms[0]["state"] == "raised" and alarms[0]["repeats"] == repeats
        assert alarms[0]["pitch_m"] == pytest.approx(1.5)


def test_a_missed_turn_is_allowed_once():
    ks = [0, 1, 3, 4]                                          # turn 2 unseen (an uninspected frame, say)
    marks = [("patches", 100, 300 + k * 1600, 140, 340 + k * 1600) for k in ks]
    alarms = feed(PeriodicDetector(PeriodicConfig(), MM), strip(marks, 300 + 6 * 1600))
    assert [(a["state"], a["repeats"], a["turns"]) for a in alarms][:2] == [("raised", 3, 3), ("repeated", 4, 4)]
    assert alarms[0]["pitch_m"] == pytest.approx(0.8, abs=0.001)
    two_missed = [("patches", 100, 300 + k * 1600, 140, 340 + k * 1600) for k in (0, 1, 4)]
    assert not feed(PeriodicDetector(PeriodicConfig(), MM), strip(two_missed, 300 + 6 * 1600))


def test_a_mark_cut_by_frame_edges_or_seen_twice_is_one_mark():
    # Frames of 400 rows every 300 rows (overlap 100): each mark straddles a frame edge and
    # lies partly in the overlap, so two frames see (parts of) it.
    marks = [("scratches", 200, 370 + k * 1500, 215, 470 + k * 1500) for k in range(3)]
    frames = strip(marks, 370 + 3 * 1500, advance=300)
    assert sum(len(f["defects"]) for f in frames) > 3
    alarms = feed(PeriodicDetector(PeriodicConfig(), MM), frames)
    assert len(alarms) == 1 and alarms[0]["repeats"] == 3
    assert alarms[0]["pitch_m"] == pytest.approx(0.75, abs=1e-6)
    first = alarms[0]["first"]["box_mm"]
    assert first[1] == pytest.approx(185.0) and first[3] == pytest.approx(235.0)   # joined back to whole


def test_what_does_not_repeat_alike_raises_nothing():
    cfg = PeriodicConfig()
    pitch = 2000
    wandering = [("inclusion", 300 + 30 * k, 200 + k * pitch, 330 + 30 * k, 240 + k * pitch) for k in range(4)]
    irregular = [("inclusion", 300, 200 + y, 330, 240 + y) for y in (0, 2000, 4030, 6100)]
    growing = [("inclusion", 315 - 5 * 4 ** k, 200 + k * pitch, 315 + 5 * 4 ** k, 240 + k * pitch) for k in range(4)]
    texture = [("crazing", 0, 200 + k * pitch, 200, 400 + k * pitch) for k in range(4)]
    too_far = [("inclusion", 300, 200 + k * 14000, 330, 240 + k * 14000) for k in range(4)]   # 7 m > max pitch
    for marks in (wandering, irregular, growing, texture, too_far):
        assert not feed(PeriodicDetector(cfg, MM), strip(marks, marks[-1][4] + 400)), marks[:2]
    assert feed(PeriodicDetector(PeriodicConfig(classes=["crazing"]), MM), strip(texture, texture[-1][4] + 400))


def test_a_new_coil_ends_the_alarm_and_starts_afresh():
    marks = [("patches", 100, 300 + k * 1600, 140, 340 + k * 1600) for k in range(6)]
    frames = strip(marks, 300 + 6 * 1600)
    for f in frames[10:]:                                      # a new coil from frame 10 (2.0 m) on
        f["coil"], f["coil_position_m"] = "C2", f["strip_position_m"] - 2.0
    alarms = feed(PeriodicDetector(PeriodicConfig(), MM), frames)
    assert [(a["state"], a["coil"], a["ended_by"]) for a in alarms] == [
        ("raised", "C1", None), ("ended", "C1", "coil"), ("raised", "C2", None)]
    assert alarms[2]["first"]["coil_position_m"] == pytest.approx(2.56 - 2.0, abs=0.001)


def test_config_checks():
    for kw, key in [({"repeats": 1}, "repeats"), ({"min_pitch_m": 2.0, "max_pitch_m": 1.0}, "max_pitch_m"),
                    ({"pitch_tolerance_mm": 200.0}, "pitch_tolerance_mm"), ({"max_size_ratio": 0.5}, "max_size_ratio")]:
        with pytest.raises(ConfigError, match=key):
            PeriodicConfig(**kw).validate("x.yaml", "alarms.periodic")
    with pytest.raises(ConfigError, match="alarms.periodic.classes: rust"):
        check_classes(PeriodicConfig(classes=["rust"]), ["inclusion", "patches"])


def test_config_file_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("alarms:\n  periodic:\n    repeats: 4\n    max_pitch_m: 3.0\ncontrol:\n  address: tcp://127.0.0.1:5570\n")
    cfg = load_config(p)
    assert cfg.alarms.periodic.repeats == 4 and cfg.control.address == "tcp://127.0.0.1:5570"
    p.write_text("control:\n  address: udp://x\n")
    with pytest.raises(ConfigError, match="control.address"):
        load_config(p)


# -- the daemon on real recordings -----------------------------------------------------------
def sample_strip() -> tuple[np.ndarray, dict]:
    """The bundled sample's strip of NEU images, read back from its (lossless) video."""
    truth = json.loads(SAMPLE.with_name(SAMPLE.name + ".json").read_text())
    cap = cv2.VideoCapture(str(SAMPLE))
    out = np.zeros((truth["strip_height"] + truth["frame_height"], truth["strip_width"]), np.uint8)
    k = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        y = k * truth["advance_px"]
        out[y:y + truth["frame_height"]] = img[..., 0]
        k += 1
    cap.release()
    return out[:truth["strip_height"]], truth


def make_periodic_recording(path: Path, stem: str, pitch_px: int, marks: int, x0: int, y0: int = 300,
                            margin: int = 6, frame_h: int = 480, advance: int = 384) -> tuple[str, list[tuple]]:
    """A clean strip with the NEU defect of ``stem`` (its first annotated box, cut from the sample
    recording with a small margin that fades into the strip) pasted every ``pitch_px`` rows at
    column ``x0``; written as a lossless video of overlapping frames like the sample's. Returns the
    class and the pasted boxes in strip pixels."""
    pixels, truth = sample_strip()
    box = next(b for b in truth["strip_boxes"] if b["stem"] == stem)
    tile = next(t for t in truth["tiles"] if t["stem"] == stem)
    x1, y1, x2, y2 = (int(round(v)) for v in box["box"])
    cx1, cy1 = max(tile["x"], x1 - margin), max(tile["y"], y1 - margin)
    cx2, cy2 = min(tile["x"] + 200, x2 + margin), min(tile["y"] + 200, y2 + margin)
    crop = pixels[cy1:cy2, cx1:cx2].astype(np.float32)
    h, w = crop.shape
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    length = y0 + (marks - 1) * pitch_px + h + 400
    n = -(-(length - frame_h) // advance) + 1
    rng = np.random.default_rng(5)
    canvas = cv2.GaussianBlur(rng.normal(0, 6, ((n - 1) * advance + frame_h, 600)).astype(np.float32), (0, 0), 2)
    canvas += float(np.median(border))
    ramp = lambda k: np.minimum(np.arange(k), np.arange(k)[::-1]) / margin  # noqa: E731
    alpha = np.clip(np.minimum(ramp(h)[:, None], ramp(w)[None, :]), 0, 1)
    pasted = []
    for k in range(marks):
        y = y0 + k * pitch_px
        canvas[y:y + h, x0:x0 + w] = alpha * crop + (1 - alpha) * canvas[y:y + h, x0:x0 + w]
        pasted.append((x0 + x1 - cx1, y + y1 - cy1, x0 + x2 - cx1, y + y2 - cy1))
    img = np.clip(canvas, 0, 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), 50.0, (600, frame_h),
                             [cv2.VIDEOWRITER_PROP_IS_COLOR, 0])
    assert writer.isOpened()
    for k in range(n):
        writer.write(img[k * advance:k * advance + frame_h])
    writer.release()
    return box["class"], pasted


def run_daemon(video: Path, coil: str | None = None) -> list[dict]:
    """The service's pipeline on ``video`` with the shipped model and the sample's line geometry;
    every message it sends."""
    cfg = load_config(ROOT / "configs" / "inspectd.yaml", {"source.path": str(video)})
    cfg.log.verdicts = "none"
    cfg.control.address = None          # not needed here; a daemon running beside the tests may hold the port
    messages: list[dict] = []
    lock = threading.Lock()

    def tap(topic, msg):
        with lock:
            messages.append(msg)
    result = Pipeline(cfg, realtime=False, tap=tap, handle_signals=False, coil=coil).run()
    assert result.exit_code == 0
    return messages


@needs_model
def test_a_pasted_defect_at_a_fixed_pitch_raises_the_alarm(tmp_path):
    video = tmp_path / "roll_mark.mkv"
    pitch_px = 1700                                            # 0.85 m: a roll of 270 mm diameter
    cls, pasted = make_periodic_recording(video, "patches_60", pitch_px, marks=5, x0=350)
    messages = run_daemon(video, coil="R-17")
    alarms = [m for m in messages if m["kind"] == "alarm"]
    for m in alarms:
        assert_valid(m)
    raised = [a for a in alarms if a["state"] == "raised"]
    assert len(raised) == 1, alarms
    a = raised[0]
    assert (a["class"], a["coil"], a["repeats"]) == (cls, "R-17", 3)
    assert a["pitch_m"] == pytest.approx(pitch_px * MM / 1000, abs=0.005)
    cross = (pasted[0][0] + pasted[0][2]) / 2 * MM
    assert a["cross_mm"] == pytest.approx(cross, abs=5.0)
    centre = lambda b: (b[1] + b[3]) / 2 * MM / 1000  # noqa: E731 - strip pixels -> metres
    assert a["first"]["strip_position_m"] == pytest.approx(centre(pasted[0]), abs=0.01)
    assert a["latest"]["strip_position_m"] == pytest.approx(centre(pasted[2]), abs=0.01)
    # The alarm follows the verdict of the frame that completed its third mark, and then grows.
    later = [m for m in alarms if m["alarm_id"] == a["alarm_id"]]
    assert [m["repeats"] for m in later] == [3, 4, 5]
    assert later[-1]["latest"]["coil_position_m"] == pytest.approx(centre(pasted[4]), abs=0.01)


@needs_model
def test_no_alarm_on_the_sample_recording():
    # Every frame of it holds defects of several classes, tiled on a 100 mm grid: plenty of
    # chances for chance coincidences, none of them a roll mark.
    messages = run_daemon(SAMPLE)
    assert sum(m["kind"] == "verdict" for m in messages) == 31
    assert sum(m["kind"] == "defect" for m in messages) > 300
    assert [m for m in messages if m["kind"] == "alarm"] == []
    # Among all those defects, a mark that does repeat is still found, a little later than on a
    # clean strip (the crowd makes a chain of 3 likely chance).
    det = PeriodicDetector(PeriodicConfig(), MM)
    raised = []
    for v in (m for m in messages if m["kind"] == "verdict"):
        top = v["strip_position_m"] * 1000
        for k in range(7):
            y = 300 + 850 * k
            if top <= y and y + 25 <= top + v["height"] * MM:
                v["defects"].append({"class": "patches", "score": 0.9, "box_mm": [140, y, 160, y + 25]})
        raised += [a for a in det.observe(v) if a["state"] == "raised"]
    assert [(a["pitch_m"], a["cross_mm"]) for a in raised] == [(0.85, 150.0)]
    assert raised[0]["repeats"] <= 5


# -- the detector's thread ---------------------------------------------------------------------
def test_a_slow_detector_never_holds_up_the_verdicts():
    from bus_helpers import verdict
    from inspectd.bus.config import BusConfig
    from inspectd.bus.messages import EventEncoder
    from inspectd.bus.publisher import EventPublisher
    from inspectd.domain.frames import CoilMark
    from inspectd.line import LineConfig
    from inspectd.runtime.alarm_thread import AlarmThread

    gate = threading.Event()

    class Slow(PeriodicDetector):
        def observe(self, v):
            gate.wait(60)
            return super().observe(v)

    sent: list[dict] = []
    cond = threading.Condition()

    def tap(topic, msg):
        with cond:
            sent.append(msg)
            cond.notify_all()
    alarms = AlarmThread(Slow(PeriodicConfig(classes=["crazing"]), 0.5),
                         lambda kind, body: pub.publish_event(kind, body)).start()
    pub = EventPublisher(BusConfig(heartbeat_interval_s=5.0), EventEncoder("cam0", LineConfig()), tap=tap,
                         watcher=alarms).start()
    try:
        for i in (4, 6, 8):                        # the same crazing mark every 0.4 m
            pub.publish_verdict(verdict(i, n_defects=1, coil=CoilMark("C1", 0.0)))
        with cond:                                 # every verdict is out while the detector is stuck
            assert cond.wait_for(lambda: sum(m["kind"] == "verdict" for m in sent) == 3, 60)
        assert not [m for m in sent if m["kind"] == "alarm"]
        gate.set()
        with cond:
            assert cond.wait_for(lambda: any(m["kind"] == "alarm" for m in sent), 60)
    finally:
        gate.set()
        assert alarms.close()
        pub.close()
    alarm = next(m for m in sent if m["kind"] == "alarm")
    assert_valid(alarm)
    assert (alarm["state"], alarm["pitch_m"], alarm["coil"]) == ("raised", 0.4, "C1")
    assert [m["kind"] for m in sent if m["kind"] != "heartbeat"][-1] == "alarm"   # after its verdicts


def test_when_the_detector_falls_behind_it_drops_verdicts_not_the_bus():
    from inspectd.runtime.alarm_thread import AlarmThread

    gate = threading.Event()

    class Stuck:
        def observe(self, v):
            gate.wait(60)
            return []
    t = AlarmThread(Stuck(), lambda kind, body: True, queue_size=2).start()
    t.observe({"frame": 0})
    while t.stats()["queued"]:                     # the thread holds frame 0
        threading.Event().wait(0.01)
    for i in range(1, 6):
        t.observe({"frame": i})                    # returns at once: 2 wait, 3 are dropped
    assert t.stats()["dropped"] == 3 and t.stats()["queued"] == 2
    gate.set()
    assert t.close()
    assert t.stats()["verdicts"] == 3
