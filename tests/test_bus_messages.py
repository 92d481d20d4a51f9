"""Message encoding, line geometry, topics (with real ZeroMQ prefix filtering), configs, the schema."""
from __future__ import annotations

import threading
import time

import jsonschema
import pytest
import zmq

from bus_helpers import TIMEOUT_S, assert_valid, defect, meta, validator, verdict
from inspectd.bus import messages
from inspectd.bus.config import BusConfig
from inspectd.bus.messages import EventEncoder, camera_prefixes, topic_for
from inspectd.bus.subscriber import GapTracker
from inspectd.configtools import ConfigError, from_mapping
from inspectd.domain.frames import CoilMark
from inspectd.domain.placement import DefectPlacement, Placement, StretchPlacement
from inspectd.domain.verdicts import Uninspected, Verdict
from inspectd.errors import InspectdError
from inspectd.line import LineConfig, gate_deadline_wall_ns, gate_window_wall_ns, strip_position_m
from inspectd.runtime.placement import place


def test_strip_position_from_frame_index_or_encoder():
    line = LineConfig(mm_per_px=0.5)
    assert strip_position_m(line, 0, 400) == 0.0
    assert strip_position_m(line, 3, 400) == pytest.approx(0.6)        # 400 px * 0.5 mm = 0.2 m per frame
    line = LineConfig(frame_length_m=0.25, encoder_m_per_count=0.001, encoder_zero_count=1000)
    assert strip_position_m(line, 3, 400) == pytest.approx(0.75)
    assert strip_position_m(line, 3, 400, encoder_count=4500) == pytest.approx(3.5)
    with pytest.raises(InspectdError, match="line.encoder_m_per_count"):
        strip_position_m(LineConfig(), 3, 400, encoder_count=10)


def test_gate_deadline_is_when_the_strip_reaches_the_gate():
    line = LineConfig(speed_m_per_s=10.0, gate_distance_m=5.0, mm_per_px=0.5)
    t0 = 1_700_000_000_000_000_000
    assert gate_deadline_wall_ns(line, t0) == t0 + 500_000_000
    # a point 0.1 m upstream of the frame's first row arrives 10 ms later
    assert gate_deadline_wall_ns(line, t0, 2.0, 2.1) == t0 + 510_000_000
    assert gate_window_wall_ns(line, t0, 0.2) == (t0 + 500_000_000, t0 + 520_000_000)


def test_verdict_payload_fields():
    line = LineConfig(speed_m_per_s=10.0, gate_distance_m=5.0, mm_per_px=0.5)
    enc = EventEncoder("cam0", line, publisher_id="p1")
    v = verdict(7, n_defects=2, line=line, capture_wall_ns=1_700_000_000_000_000_000, camera_frame_id=1007)
    msg = enc.verdict(v, publish_wall_ns=1_700_000_000_020_000_000)
    assert msg["schema"] == messages.SCHEMA_VERSION and msg["kind"] == "verdict"
    assert (msg["seq"], msg["kind_seq"], msg["publisher"], msg["camera"]) == (0, 0, "p1", "cam0")
    assert (msg["frame"], msg["camera_frame_id"], msg["status"]) == (7, 1007, "reject")
    assert msg["strip_position_m"] == pytest.approx(1.4)                 # 7 frames of 0.2 m
    assert msg["frame_length_m"] == pytest.approx(0.2)
    assert msg["gate_deadline_wall_ns"] == 1_700_000_000_500_000_000
    assert msg["gate_until_wall_ns"] == 1_700_000_000_520_000_000
    assert msg["late"] is False
    assert msg["inference_start_wall_ns"] == v.meta.capture_wall_ns + 1_000_000
    assert msg["inference_end_wall_ns"] == v.meta.capture_wall_ns + 9_000_000
    d0 = msg["defects"][0]
    assert d0["class"] == v.defects[0].cls and d0["box"] == [10.0, 20.0, 50.0, 90.0]
    assert d0["box_mm"] == [5.0, 1410.0, 25.0, 1445.0]                     # y along the strip from 1.4 m
    assert d0["area_mm2"] == pytest.approx(900 * 0.25)
    assert_valid(msg)
    late = enc.verdict(v, publish_wall_ns=1_700_000_000_600_000_000)
    assert late["late"] is True and late["seq"] == 1 and late["kind_seq"] == 1


def test_the_encoder_copies_the_placement_the_runtime_made():
    """Positions and gate times come with the verdict or report: the encoder's own line plays no part
    in them (it only rounds for the wire), so a placement no line would give is what goes out."""
    enc = EventEncoder("cam0", LineConfig(speed_m_per_s=1.0, gate_distance_m=99.0, mm_per_px=7.0))
    v = verdict(5, n_defects=1)
    v.placement = Placement(
        strip_position_m=12.3456789, frame_length_m=0.25, coil=CoilMark("C7", 10.0), coil_position_m=2.3456789,
        gate_deadline_wall_ns=111, gate_until_wall_ns=222,
        defects=(DefectPlacement((1.04, 2.06, 3.0, 4.0), 5.5, 333, 444),))
    vm = enc.verdict(v, publish_wall_ns=112)
    assert (vm["strip_position_m"], vm["frame_length_m"], vm["coil"], vm["coil_position_m"]) == (12.345679, 0.25, "C7", 2.345679)
    assert (vm["gate_deadline_wall_ns"], vm["gate_until_wall_ns"], vm["late"]) == (111, 222, True)
    assert (vm["defects"][0]["box_mm"], vm["defects"][0]["area_mm2"]) == ([1.0, 2.1, 3.0, 4.0], 5.5)
    dm = enc.defect(v, 0, vm["seq"])
    assert (dm["strip_position_m"], dm["coil"], dm["coil_position_m"]) == (12.345679, "C7", 2.345679)
    assert (dm["gate_deadline_wall_ns"], dm["gate_until_wall_ns"], dm["box_mm"]) == (333, 444, [1.0, 2.1, 3.0, 4.0])
    span = StretchPlacement(strip_start_m=1.0000004, strip_end_m=2.5, coil="C7", coil_start_m=0.5, coil_end_m=None,
                            gate_deadline_wall_ns=555, gate_until_wall_ns=666)
    um = enc.uninspected(Uninspected(meta(6), meta(8), 3, "overflow", span))
    assert [um[k] for k in ("strip_start_m", "strip_end_m", "coil", "coil_start_m", "coil_end_m",
                            "gate_deadline_wall_ns", "gate_until_wall_ns")] == [1.0, 2.5, "C7", 0.5, None, 555, 666]


def test_defect_uninspected_heartbeat_status_payloads_validate():
    enc = EventEncoder("line1.cam-2", LineConfig())
    v = verdict(3, n_defects=3, camera="line1.cam-2")
    vm = enc.verdict(v)
    msgs = [vm] + [enc.defect(v, i, vm["seq"]) for i in range(3)]
    first, last = meta(4), meta(9)
    span = StretchPlacement.spanning(place(LineConfig(), first), place(LineConfig(), last))
    msgs.append(enc.uninspected(Uninspected(first, last, 6, "Ring overflow", span)))
    msgs.append(enc.heartbeat(0.5))
    msgs.append(enc.status({"fps": 24.5, "latency_ms": {"p50": 12.0, "p99": float("nan")}}, {"sent": 5}, 5.0))
    for m in msgs:
        assert_valid(m)
    d = msgs[2]
    assert (d["verdict_seq"], d["index"], d["count"], d["crop"]) == (vm["seq"], 1, 3, None)
    assert d["gate_deadline_wall_ns"] >= vm["gate_deadline_wall_ns"]
    assert d["gate_until_wall_ns"] <= vm["gate_until_wall_ns"]
    u = msgs[4]
    assert (u["first_frame"], u["last_frame"], u["count"], u["reason"]) == (4, 9, 6, "ring_overflow")
    assert u["strip_start_m"] == pytest.approx(0.8) and u["strip_end_m"] == pytest.approx(2.0)
    assert msgs[5]["last_frame"] == 9
    assert msgs[6]["counters"]["latency_ms"]["p99"] is None                # NaN is not JSON
    assert [m["seq"] for m in msgs] == list(range(len(msgs)))
    assert [topic_for(m) for m in msgs[3:]] == [
        b"defect/line1.cam-2/" + v.defects[2].cls.encode(), b"uninspected/line1.cam-2/ring_overflow",
        b"heartbeat/line1.cam-2/", b"status/line1.cam-2/"]


def test_the_schema_rejects_what_is_not_a_valid_message():
    enc = EventEncoder("cam0", LineConfig())
    good = enc.verdict(verdict(1, n_defects=1))
    assert_valid(good)
    bad = [
        {k: v for k, v in good.items() if k != "seq"},
        {**good, "status": "maybe"},
        {**good, "schema": 1},                 # the previous version
        {**good, "surprise": 1},
        {**good, "defects": [{**good["defects"][0], "class": "rust/red"}]},
        {**good, "kind": "defect"},
        {"kind": "heartbeat"},
    ]
    for msg in bad:
        with pytest.raises(jsonschema.ValidationError):
            validator().validate(msg)


def test_camera_ids_that_would_break_topics_are_refused():
    with pytest.raises(InspectdError, match="camera id 'cam/0'"):
        EventEncoder("cam/0", LineConfig())
    with pytest.raises(InspectdError, match="camera id 'cam 0'"):
        EventEncoder("cam 0", LineConfig())


def test_topic_prefixes_filter_by_kind_and_by_camera_on_a_real_socket():
    """cam.1 must not receive cam.10; kind prefixes take every camera."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    encs = {c: EventEncoder(c, LineConfig()) for c in ("cam.1", "cam.10")}

    def sub_for(prefixes: list[bytes]) -> zmq.Socket:
        s = ctx.socket(zmq.SUB)
        for p in prefixes:
            s.setsockopt(zmq.SUBSCRIBE, p)
        s.connect(f"tcp://127.0.0.1:{port}")
        return s

    by_camera = sub_for(camera_prefixes("cam.1"))
    by_kind = sub_for([messages.kind_prefix("verdict")])
    rejects_only = sub_for([messages.verdict_topic("cam.10", "reject")])
    subs = [by_camera, by_kind, rejects_only]
    try:
        # Send marker heartbeats of both cameras until every subscriber has some message (slow joiner).
        poller = zmq.Poller()
        for s in subs:
            poller.register(s, zmq.POLLIN)
        deadline = time.monotonic() + TIMEOUT_S
        seen: dict[zmq.Socket, list[bytes]] = {s: [] for s in subs}
        markers = 0
        while not all(seen.values()) and time.monotonic() < deadline:
            for cam, enc in encs.items():
                hb = enc.heartbeat()
                pub.send_multipart([topic_for(hb), messages.encode(hb)])
                v = enc.verdict(verdict(markers, n_defects=markers % 2, camera=cam))
                pub.send_multipart([topic_for(v), messages.encode(v)])
            markers += 1
            for s, _ in poller.poll(50):
                seen[s].append(s.recv_multipart()[0])
        for s in subs:
            while s.poll(200):
                seen[s].append(s.recv_multipart()[0])
    finally:
        for s in subs + [pub]:
            s.close(linger=0)
        ctx.term()
    assert seen[by_camera] and all(t.split(b"/")[1] == b"cam.1" for t in seen[by_camera])
    assert {t.split(b"/")[0] for t in seen[by_camera]} == {b"heartbeat", b"verdict"}
    assert {t.split(b"/")[1] for t in seen[by_kind]} == {b"cam.1", b"cam.10"}
    assert all(t.startswith(b"verdict/") for t in seen[by_kind])
    assert seen[rejects_only] and set(seen[rejects_only]) == {b"verdict/cam.10/reject"}


def test_seq_numbers_are_unique_and_dense_across_threads():
    enc = EventEncoder("cam0", LineConfig())
    seqs: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        local = [enc.heartbeat()["seq"] for _ in range(500)]
        with lock:
            seqs.extend(local)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(2000))
    enc.skip({"verdict": 3})
    m = enc.verdict(verdict(0))
    assert (m["seq"], m["kind_seq"]) == (2003, 3)


def test_gap_tracker_by_seq_by_kind_and_restarts():
    t = GapTracker("seq")
    feed = lambda **m: t.feed({"publisher": "a", "camera": "c", "kind": "verdict", "kind_seq": 0, **m})  # noqa: E731
    assert feed(seq=5) == ([], False)            # joined late: no gap
    assert feed(seq=6) == ([], False)
    gaps, _ = feed(seq=9)
    assert [(g.expected, g.received, g.missing) for g in gaps] == [(7, 9, 2)]
    assert feed(seq=9) == ([], False) and t.out_of_order == 1
    gaps, restarted = t.feed({"publisher": "b", "camera": "c", "kind": "heartbeat", "seq": 0})
    assert gaps == [] and restarted and t.restarts == 1
    k = GapTracker("kind_seq")
    k.feed({"publisher": "a", "camera": "c", "kind": "verdict", "seq": 0, "kind_seq": 0})
    k.feed({"publisher": "a", "camera": "c", "kind": "heartbeat", "seq": 5, "kind_seq": 0})
    gaps, _ = k.feed({"publisher": "a", "camera": "c", "kind": "verdict", "seq": 9, "kind_seq": 1})
    assert gaps == []                            # the seq jump is other kinds, not a loss
    gaps, _ = k.feed({"publisher": "a", "camera": "c", "kind": "verdict", "seq": 12, "kind_seq": 3})
    assert [(g.kind, g.missing) for g in gaps] == [("verdict", 1)]


def test_heartbeats_reveal_the_loss_of_a_kinds_last_messages():
    enc = EventEncoder("cam0", LineConfig())
    covers = lambda kind, camera: kind in ("verdict", "heartbeat")  # noqa: E731 - e.g. verdict/cam0/ + heartbeat/cam0/
    t = GapTracker("kind_seq", covers)
    first_hb = enc.heartbeat()
    assert first_hb["next_kind_seq"] == {"verdict": 0, "defect": 0, "uninspected": 0, "heartbeat": 1, "status": 0,
                                          "coil_start": 0, "coil_end": 0, "alarm": 0}
    assert t.feed(first_hb) == ([], False)                  # sets the baseline: verdicts from 0 on
    assert t.feed(enc.verdict(verdict(0))) == ([], False)
    enc.verdict(verdict(1))                                  # lost
    enc.verdict(verdict(2))                                  # lost, and no verdict follows
    enc.defect(verdict(2, n_defects=1), 0, 0)                # not subscribed: never a gap
    gaps, _ = t.feed(enc.heartbeat())
    assert [(g.kind, g.expected, g.received, g.missing) for g in gaps] == [("verdict", 1, 3, 2)]
    assert t.feed(enc.heartbeat()) == ([], False)            # reported once
    assert t.feed(enc.verdict(verdict(3))) == ([], False)
    lost_before_any = GapTracker("kind_seq", covers)
    enc2 = EventEncoder("cam1", LineConfig())
    lost_before_any.feed(enc2.heartbeat())
    enc2.verdict(verdict(0, camera="cam1"))                  # the first verdict after we joined is lost
    gaps, _ = lost_before_any.feed(enc2.heartbeat())
    assert [(g.kind, g.missing) for g in gaps] == [("verdict", 1)]


def test_line_and_bus_config_sections_validate_with_clear_errors():
    assert from_mapping(LineConfig, {"speed_m_per_s": 12, "frame_length_m": None}, "x.yaml").speed_m_per_s == 12.0
    with pytest.raises(ConfigError, match=r"x.yaml: line.speed_m_per_s: must be a positive number, got 0.0"):
        from_mapping(LineConfig, {"speed_m_per_s": 0}, "x.yaml", prefix="line")
    with pytest.raises(ConfigError, match=r"line.gate_distance_m: must be zero or more"):
        from_mapping(LineConfig, {"gate_distance_m": -1}, "x.yaml", prefix="line")
    cfg = from_mapping(BusConfig, {"publish": "tcp://*:5556", "curve": {"server_secret_key": "k/s.key_secret",
                                                                         "allowed_clients_dir": "k/clients"}},
                       "x.yaml", prefix="bus")
    assert cfg.curve.enabled and str(cfg.curve.allowed_clients_dir) == "k/clients"
    assert not BusConfig().curve.enabled
    with pytest.raises(ConfigError, match=r"bus.publish: address 'tcp//\*:5556': not a ZeroMQ address"):
        from_mapping(BusConfig, {"publish": "tcp//*:5556"}, "x.yaml", prefix="bus")
    with pytest.raises(ConfigError, match=r"bus.heartbeat_interval_s: must be a positive number"):
        from_mapping(BusConfig, {"heartbeat_interval_s": 0}, "x.yaml", prefix="bus")
    with pytest.raises(ConfigError, match=r"bus.crop_jpeg_quality: must be 1 to 100"):
        from_mapping(BusConfig, {"crop_jpeg_quality": 0}, "x.yaml", prefix="bus")
    with pytest.raises(ConfigError, match=r"bus.curve.allowed_clients_dir: CurveZMQ needs both"):
        from_mapping(BusConfig, {"curve": {"server_secret_key": "a"}}, "x.yaml", prefix="bus")


def test_every_config_field_is_documented():
    import dataclasses

    from inspectd.bus.config import CurveConfig

    for cls in (LineConfig, BusConfig, CurveConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc()"


def test_empty_verdict_and_defect_free_verdict():
    enc = EventEncoder("cam0", LineConfig())
    m = meta(0)
    msg = enc.verdict(Verdict(meta=m, status="ok", placement=place(LineConfig(), m)))
    assert msg["defects"] == [] and msg["inference_start_wall_ns"] is None
    assert_valid(msg)
    assert defect(0).cls == "crazing"
