"""The publisher over real ZeroMQ sockets on loopback: ordering, loss, heartbeats, uninspected stretches."""
from __future__ import annotations

import statistics
import threading
import time

import pytest

from bus_helpers import TIMEOUT_S, Collector, assert_valid, given_up, publisher, recv_until, synced, verdict
from inspectd.bus.config import BusConfig
from inspectd.bus.messages import EventEncoder
from inspectd.bus.publisher import EventPublisher
from inspectd.bus.subscriber import EventSubscriber
from inspectd.errors import InspectdError
from inspectd.line import LineConfig


def test_subscriber_that_keeps_up_receives_every_seq_in_order():
    pub = publisher()
    sub = EventSubscriber(pub.endpoint)
    try:
        synced(sub)
        col = Collector(sub)
        n = 400
        for i in range(n):
            if i % 50 == 7:
                pub.publish_dropped(*given_up(i), "ring_overflow")
            else:
                assert pub.publish_verdict(verdict(i, n_defects=i % 3))
            if i % 100 == 99:
                pub.publish_status({"frames": i + 1})
        col.wait(lambda evs: any(e.msg["kind"] == "verdict" and e.msg["frame"] == n - 1 for e in evs))
        # The last dropped frame (357) was followed by verdicts, so its stretch went out before them.
        events = col.stop()
    finally:
        sub.close()
        pub.close()
    seqs = [e.msg["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq must arrive complete and in order"
    assert sub.tracker.gaps == 0 and sub.tracker.missing == 0
    frames = [e.msg["frame"] for e in events if e.msg["kind"] == "verdict"]
    assert frames == [i for i in range(n) if i % 50 != 7]
    uninspected = [(e.msg["first_frame"], e.msg["last_frame"]) for e in events if e.msg["kind"] == "uninspected"]
    assert uninspected == [(i, i) for i in range(n) if i % 50 == 7]
    defects = [e.msg for e in events if e.msg["kind"] == "defect"]
    assert len(defects) == sum(i % 3 for i in range(n) if i % 50 != 7)
    by_seq = {e.msg["seq"]: e.msg for e in events}
    for d in defects:   # each defect follows its verdict and points back at it
        v = by_seq[d["verdict_seq"]]
        assert v["kind"] == "verdict" and v["frame"] == d["frame"] and v["defects"][d["index"]]["box"] == d["box"]
    for kind in {e.msg["kind"] for e in events}:
        ks = [e.msg["kind_seq"] for e in events if e.msg["kind"] == kind]
        assert ks == list(range(ks[0], ks[0] + len(ks)))
    for e in events:
        assert_valid(e.msg)


def test_stalled_subscriber_does_not_slow_the_pipeline_and_sees_the_gap_on_waking():
    # Small buffers on both ends so that the stalled subscriber's share overflows quickly.
    pub = publisher(send_hwm=20, defects=False)
    sub = EventSubscriber(pub.endpoint, rcv_hwm=20, rcvbuf=131072)
    try:
        synced(sub)
        # The subscriber now sleeps: nothing reads `sub` until the pipeline has published everything.
        # Publish well over what the kernel can buffer on the way (its largest TCP send buffer).
        try:
            wmem_max = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
        except (OSError, IndexError, ValueError):
            wmem_max = 16 << 20
        batch = 500
        n = max(6000, -(-2 * (wmem_max + 131072) // 2500 // batch) * batch)
        returned = 0
        for start in range(0, n, batch):
            for i in range(start, start + batch):
                pub.publish_verdict(verdict(i, n_defects=12))     # ~2.5 kB each
                returned += 1
            # Waiting on the publisher thread (never on the subscriber): it must drain the queue
            # although the subscriber reads nothing, i.e. sending never blocks.
            deadline = time.monotonic() + TIMEOUT_S
            while pub.stats["queued"] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pub.stats["queued"] == 0, "publisher thread is stuck behind a stalled subscriber"
        assert returned == n
        stats = pub.stats
        assert stats["queue_full"] == 0 and stats["emitted_verdict"] == n
        # libzmq took every message; it dropped the stalled subscriber's share at its high-water
        # mark without telling the publisher. The subscriber wakes, reads what was buffered for
        # it, and finds out from seq when the first message sent after its wake-up arrives.
        events = []
        deadline = time.monotonic() + TIMEOUT_S
        k = n
        next_probe = 0.0
        while not any(e.msg["kind"] == "verdict" and e.msg["frame"] >= n for e in events):
            assert time.monotonic() < deadline, "no message sent after waking arrived"
            if time.monotonic() >= next_probe:
                pub.publish_verdict(verdict(k))
                k += 1
                next_probe = time.monotonic() + 0.1
            if (ev := sub.recv(0.02)) is not None:
                events.append(ev)
    finally:
        sub.close()
        pub.close()
    received = [e.msg["seq"] for e in events]
    assert received == sorted(received)
    first_seq_after_sync = events[0].msg["seq"]
    span = events[-1].msg["seq"] - first_seq_after_sync + 1
    gaps = [g for e in events for g in e.gaps]
    assert gaps, "the woken subscriber must report the messages it missed"
    assert sum(g.missing for g in gaps) == span - len(events)
    assert sub.tracker.missing == span - len(events) > 0
    assert all(g.kind is None and g.missing > 0 for g in gaps)


def test_stuck_publisher_thread_counts_what_it_could_not_queue_and_subscribers_see_exactly_that_gap():
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        if msg["kind"] == "verdict" and msg["frame"] == 0:
            entered.set()
            release.wait(TIMEOUT_S)      # e.g. a --out file on a disk that hangs

    pub = publisher(tap=tap, queue_size=5, heartbeat_interval_s=0.05)
    sub = EventSubscriber(pub.endpoint)
    try:
        synced(sub)
        assert pub.publish_verdict(verdict(0, n_defects=1))
        assert entered.wait(TIMEOUT_S)
        queued = [pub.publish_verdict(verdict(i, n_defects=1)) for i in range(1, 6)]
        refused = [pub.publish_verdict(verdict(i, n_defects=1)) for i in range(6, 13)]
        dropped_while_stuck = [pub.publish_dropped(*given_up(i), "ring_overflow") for i in range(13, 16)]
        # 15 calls returned while the publisher thread was stuck: the pipeline never waited.
        assert queued == [True] * 5 and refused == [False] * 7 and dropped_while_stuck == [None] * 3
        assert pub.stats["queue_full"] == 7 * 2      # each verdict: itself and one defect message
        release.set()
        deadline = time.monotonic() + TIMEOUT_S
        while pub.stats["queued"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub.publish_verdict(verdict(16))
        events = recv_until(sub, lambda e: e.msg["kind"] == "verdict" and e.msg["frame"] == 16)
    finally:
        release.set()
        sub.close()
        pub.close()
    msgs = [e.msg for e in events]
    v5 = next(m for m in msgs if m["kind"] == "verdict" and m["frame"] == 5)
    gaps = [g for e in events for g in e.gaps]
    assert [(g.expected, g.missing) for g in gaps] == [(v5["seq"] + 2, 14)], \
        "exactly the 14 unqueued messages, right after verdict 5 and its defect"
    frames = [m["frame"] for m in msgs if m["kind"] == "verdict"]
    assert frames == [0, 1, 2, 3, 4, 5, 16]
    # The dropped frames were never at risk: they do not wait in the bounded queue.
    un = [m for m in msgs if m["kind"] == "uninspected"]
    assert [(m["first_frame"], m["last_frame"], m["count"]) for m in un] == [(13, 15, 3)]


def test_heartbeats_arrive_at_the_configured_interval_with_and_without_frames():
    interval = 0.2
    pub = publisher(heartbeat_interval_s=interval)
    sub = EventSubscriber(pub.endpoint, ["heartbeat/"])
    try:
        synced(sub)
        t0 = time.monotonic()
        idle = []
        while time.monotonic() - t0 < 2.5:
            ev = sub.recv(0.5)
            if ev is not None:
                idle.append(ev.msg)
        # Now frames flow (the subscriber takes only heartbeats): heartbeats keep coming.
        stop = threading.Event()

        def pipeline() -> None:
            i = 0
            while not stop.is_set():
                pub.publish_verdict(verdict(i))
                i += 1
                time.sleep(0.005)

        t = threading.Thread(target=pipeline)
        t.start()
        busy = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            ev = sub.recv(0.5)
            if ev is not None:
                busy.append(ev.msg)
        stop.set()
        t.join()
    finally:
        sub.close()
        pub.close()
    assert all(m["kind"] == "heartbeat" and m["interval_s"] == interval for m in idle + busy)
    times = [m["publish_wall_ns"] / 1e9 for m in idle]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # 2.5 s at 0.2 s: about 12. Never more than the schedule allows; a loaded machine may delay some.
    assert 6 <= len(idle) <= 14
    assert 0.8 * interval <= statistics.median(gaps) <= 1.25 * interval
    assert min(gaps) > 0.5 * interval, "heartbeats must not come in bursts"
    assert len(busy) >= 3 and busy[-1]["last_frame"] is not None
    ks = [m["kind_seq"] for m in idle + busy]
    assert ks == list(range(ks[0], ks[0] + len(ks)))
    for m in idle[:2] + busy[:2]:
        assert_valid(m)


def test_uninspected_stretches_cover_exactly_the_dropped_frames():
    pub = publisher(uninspected_max_delay_s=0.02)
    sub = EventSubscriber(pub.endpoint, ["verdict/", "uninspected/"])
    n = 240
    dropped: dict[int, str] = {}
    for i in range(10, 15):
        dropped[i] = "ring_overflow"
    dropped[30], dropped[31] = "camera_lost", "camera_lost"
    for i in range(32, 36):
        dropped[i] = "ring_overflow"             # same frames in a row, other reason: a new stretch
    for i in range(60, 140):
        dropped[i] = "ring_overflow"             # long: split by the delay while it lasts
    for i in range(170, 173):
        dropped[i] = "Ring Overflow!"            # reasons are normalised to a token
    dropped[n - 1] = "shutdown"                  # last frame: flushed by close()
    try:
        col = Collector(sub)
        # This subscription takes no heartbeats: sync on probe verdicts (frames far past the test's).
        probe = 1_000_000
        deadline = time.monotonic() + TIMEOUT_S
        while not col.events and time.monotonic() < deadline:
            pub.publish_verdict(verdict(probe))
            probe += 1
            time.sleep(0.05)
        col.wait(lambda evs: len(evs) > 0)
        for i in range(n):
            if i in dropped:
                pub.publish_dropped(*given_up(i), dropped[i])
            else:
                pub.publish_verdict(verdict(i))
            if 60 <= i < 140 and i % 20 == 0:
                time.sleep(0.05)                 # longer than the 20 ms delay: the stretch is split here
        pub.close(TIMEOUT_S)
        col.wait(lambda evs: any(e.msg["kind"] == "uninspected" and e.msg["last_frame"] == n - 1 for e in evs)
                 and any(e.msg["kind"] == "verdict" and e.msg["frame"] == n - 2 for e in evs))
        events = col.stop()
    finally:
        sub.close()
        pub.close()
    msgs = [e.msg for e in events if not (e.msg["kind"] == "verdict" and e.msg["frame"] >= 1_000_000)]
    assert sub.tracker.gaps == 0
    stretches = [m for m in msgs if m["kind"] == "uninspected"]
    covered: dict[int, str] = {}
    for m in stretches:
        assert_valid(m)
        span = range(m["first_frame"], m["last_frame"] + 1)
        assert m["count"] == len(span)
        for i in span:
            assert i not in covered, f"frame {i} reported twice"
            covered[i] = m["reason"]
        assert m["strip_end_m"] > m["strip_start_m"]
        assert m["gate_until_wall_ns"] > m["gate_deadline_wall_ns"]
    expected = {i: r.lower().replace(" ", "_").rstrip("!") for i, r in dropped.items()}
    assert covered == expected
    inspected = {m["frame"] for m in msgs if m["kind"] == "verdict"}
    assert inspected == set(range(n)) - set(dropped)
    # The long run was split into several stretches, which still abut exactly.
    long_run = sorted((m["first_frame"], m["last_frame"]) for m in stretches if 60 <= m["first_frame"] < 140)
    assert len(long_run) >= 2 and long_run[0][0] == 60 and long_run[-1][1] == 139


def test_stretches_of_a_drop_newest_ring_are_exact_although_reported_out_of_frame_order():
    got: list[dict] = []
    done = threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        got.append(msg)
        if msg["kind"] == "verdict" and msg["frame"] == 8:
            done.set()

    pub = publisher(publish=None, uninspected_max_delay_s=10.0, tap=tap)
    # frames 0..3 inspected; 4..6 dropped while 2..3 still wait; then 7..8 inspected
    pub.publish_verdict(verdict(0))
    pub.publish_verdict(verdict(1))
    for i in (4, 5, 6):
        pub.publish_dropped(*given_up(i), "ring_overflow")
    pub.publish_verdict(verdict(2))
    pub.publish_verdict(verdict(3))
    pub.publish_verdict(verdict(7))      # the stretch before frame 7 goes out ahead of it, long before 10 s
    pub.publish_verdict(verdict(8))
    assert done.wait(TIMEOUT_S)
    assert pub.close(TIMEOUT_S)
    order = [(m["kind"], m.get("frame", m.get("first_frame"))) for m in got if m["kind"] != "heartbeat"]
    assert order == [("verdict", 0), ("verdict", 1), ("verdict", 2), ("verdict", 3), ("uninspected", 4),
                     ("verdict", 7), ("verdict", 8)]


def test_tap_gets_every_message_with_the_same_seq_without_a_socket():
    got: list[tuple[bytes, dict]] = []
    pub = EventPublisher(BusConfig(publish=None, heartbeat_interval_s=60.0), EventEncoder("cam0", LineConfig()),
                         tap=lambda topic, msg: got.append((topic, msg))).start()
    assert pub.endpoint is None
    pub.publish_verdict(verdict(0, n_defects=2))
    pub.publish_dropped(*given_up(1), "ring_overflow")
    pub.publish_status({"fps": 12.5})
    assert pub.close(TIMEOUT_S)
    kinds = [m["kind"] for _, m in got]
    assert kinds[0] == "heartbeat"
    assert sorted(kinds[1:]) == sorted(["verdict", "defect", "defect", "uninspected", "status"])
    assert [m["seq"] for _, m in got] == list(range(len(got)))
    topics = {m["kind"]: t for t, m in got}
    assert topics["verdict"] == b"verdict/cam0/reject" and topics["uninspected"] == b"uninspected/cam0/ring_overflow"
    v = next(m for _, m in got if m["kind"] == "verdict")
    # The --out JSON-lines contract (DESIGN.md): the same dict as on the wire.
    assert {"schema", "seq", "camera", "frame", "status", "defects"} <= v.keys()
    assert {"class", "score", "box"} <= v["defects"][0].keys()
    stats = pub.stats
    assert stats["sent"] == 0 and stats["emitted"] == len(got) and stats["uninspected_frames"] == 1
    for _, m in got:
        assert_valid(m)


def test_a_failing_tap_is_counted_and_does_not_stop_the_bus():
    def tap(topic: bytes, msg: dict) -> None:
        raise OSError("disk full")

    pub = publisher(tap=tap)
    sub = EventSubscriber(pub.endpoint, ["verdict/"])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        ev = None
        i = 0
        while ev is None and time.monotonic() < deadline:
            pub.publish_verdict(verdict(i))
            i += 1
            ev = sub.recv(0.1)
        assert ev is not None and ev.msg["kind"] == "verdict"
    finally:
        sub.close()
        pub.close()
    assert pub.stats["tap_errors"] >= 2


def test_close_sends_what_is_queued():
    pub = publisher(heartbeat_interval_s=0.05)
    sub = EventSubscriber(pub.endpoint, ["verdict/", "uninspected/"])
    col = None
    try:
        # Sync on verdicts (the only kinds this subscription takes).
        deadline = time.monotonic() + TIMEOUT_S
        first = None
        k = 0
        while first is None and time.monotonic() < deadline:
            pub.publish_verdict(verdict(k))
            k += 1
            first = sub.recv(0.05)
        assert first is not None
        col = Collector(sub)
        for i in range(k, k + 300):
            pub.publish_verdict(verdict(i))
        pub.publish_dropped(*given_up(k + 300), "shutdown")        # pending stretch: flushed by close
        assert pub.close(TIMEOUT_S)
        col.wait(lambda evs: any(e.msg["kind"] == "uninspected" for e in evs)
                 and any(e.msg["kind"] == "verdict" and e.msg["frame"] == k + 299 for e in evs))
        events = col.stop()
    finally:
        if col:
            col.stop()
        sub.close()
    frames = [e.msg["frame"] for e in events if e.msg["kind"] == "verdict"]
    assert frames[-1] == k + 299 and sub.tracker.gaps == 0
    assert pub.publish_verdict(verdict(9999)) is False and pub.stats["after_close"] == 1


def test_bad_publish_address_is_one_clear_error():
    with pytest.raises(InspectdError, match=r"bus.publish 'tcp://127.0.0.1:99999': port 99999 out of range"):
        EventPublisher(BusConfig(publish="tcp://127.0.0.1:99999"), EventEncoder("cam0", LineConfig()))
    busy = publisher()
    try:
        other = EventPublisher(BusConfig(publish=busy.endpoint), EventEncoder("cam0", LineConfig()))
        with pytest.raises(InspectdError, match=r"bus.publish 'tcp://127.0.0.1:\d+': cannot bind: Address already in use"):
            other.start()
    finally:
        busy.close()
