"""A store that joins mid-coil: the daemon's heartbeats name the open coil (``open_coil``),
so the store opens the coil's row with what its ``coil_start`` said, although it never heard it.

Real parts: the pipeline (ring, publisher, threads) publishing on a real loopback socket, its
control socket driven by the ``inspectd coil`` command, and the store service subscribing
to it. The backend is the thresholding stand-in (coils do not depend on the model).
"""
from __future__ import annotations

import json

import pytest
from bus_helpers import assert_valid
from store_helpers import RawPublisher, StoreRunner, verdict_fields, wait_for
from test_coils import coil, running_daemon


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path, publish="tcp://127.0.0.1:*") as (pipeline, source, tap, _, _):
        yield pipeline, source, tap


def test_a_store_started_after_the_coil_start_records_the_coil_with_its_metadata(daemon, tmp_path):
    pipeline, source, tap = daemon
    wait_for(lambda: pipeline.control is not None and pipeline.control.endpoint is not None
             and pipeline.publisher.endpoint is not None, what="the sockets bound")
    r = coil("start", "C-77", "--width-mm", "1250", "--meta", "grade=S235JR", "--address", pipeline.control.endpoint)
    assert r.returncode == 0, r.stderr
    source.allow(2)
    tap.wait_verdicts(2)
    started = tap.kind("coil_start")[0]
    # The heartbeats sent from now on carry the open coil, with its head once a frame of it went out.
    tap.wait(lambda ms: any((m.get("open_coil") or {}).get("head_strip_position_m") is not None
                            for m in ms if m["kind"] == "heartbeat"))
    hb = [m for m in tap.kind("heartbeat") if m["open_coil"] is not None][-1]
    assert_valid(hb)
    assert hb["open_coil"] == {"coil": "C-77", "width_mm": 1250.0, "meta": {"grade": "S235JR"},
                               "start_wall_ns": started["start_wall_ns"], "start_seq": started["seq"],
                               "head_strip_position_m": 0.0}

    store = StoreRunner(str(tmp_path / "store.db"), [pipeline.publisher.endpoint])     # joins now
    try:
        wait_for(lambda: store.count("coils") == 1, what="the coil's row")
        source.allow(2)
        tap.wait_verdicts(4)
        wait_for(lambda: store.count("verdicts", "coil = 'C-77'") >= 1, what="a verdict of the coil")
        r = coil("end", "--address", pipeline.control.endpoint)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: store.count("coils", "status = 'ended'") == 1, what="the coil ended")
        (c, width, meta, start_ns, status, reason), = store.query(
            "SELECT coil, width_mm, meta, started_wall_ns, status, end_reason FROM coils")
        assert (c, width, json.loads(meta), start_ns) == ("C-77", 1250.0, {"grade": "S235JR"},
                                                          started["start_wall_ns"])
        assert (status, reason) == ("ended", "end")
        # The store did miss the start: it says so with a "joined" gap, and has no coil_start.
        assert [g[0] for g in store.query("SELECT reason FROM gaps")] == ["joined"]
        assert store.count("events", "kind = 'coil_start'") == 0
    finally:
        store.stop()
    # Once the coil ended, heartbeats name none.
    n = len(tap.kind("heartbeat"))
    tap.wait(lambda ms: sum(m["kind"] == "heartbeat" for m in ms) > n + 1)
    assert tap.kind("heartbeat")[-1]["open_coil"] is None


def test_a_coil_opened_from_a_verdict_gets_its_start_from_the_next_heartbeat(tmp_path):
    raw = RawPublisher()
    store = StoreRunner(str(tmp_path / "store.db"), [raw.endpoint])
    try:
        store.sync(raw)
        raw.send("verdict", verdict_fields(7, coil="C9"), seq=40, detail="ok")    # joined mid-coil
        wait_for(lambda: store.count("coils") == 1, what="the coil opened from the verdict")
        assert store.query("SELECT width_mm, meta FROM coils")[0] == (None, None)
        open_coil = {"coil": "C9", "width_mm": 900.0, "meta": {"order": "A-1"}, "start_wall_ns": 123_000,
                     "start_seq": 3, "head_strip_position_m": 0.0}
        raw.send("heartbeat", {"interval_s": 1.0, "next_kind_seq": {}, "last_frame": 7, "uptime_s": 1.0,
                               "open_coil": open_coil})
        wait_for(lambda: store.count("coils", "width_mm IS NOT NULL") == 1, what="the start's data")
        (coil_id, width, meta, start_ns, status), = store.query(
            "SELECT coil, width_mm, meta, started_wall_ns, status FROM coils")
        assert (coil_id, width, json.loads(meta), start_ns, status) == ("C9", 900.0, {"order": "A-1"}, 123_000, "open")
        # A heartbeat naming another coil: the store missed an end and a start.
        raw.send("heartbeat", {"interval_s": 1.0, "next_kind_seq": {}, "last_frame": 9, "uptime_s": 2.0,
                               "open_coil": {**open_coil, "coil": "C10", "meta": {}}})
        wait_for(lambda: store.count("coils") == 2, what="the next coil")
        assert store.query("SELECT coil, status, end_reason FROM coils ORDER BY id") == [
            ("C9", "closed", "superseded"), ("C10", "open", None)]
    finally:
        store.stop()
        raw.close()
