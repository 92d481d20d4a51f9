"""inspectd store against real sockets and real databases (a SQLite file, a PostgreSQL server).

Each behaviour runs on both dialects (``db_url``); the PostgreSQL server is started by the
tests themselves (store_helpers.PostgresServer).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bus_helpers import given_up, publisher, verdict
from store_helpers import RawPublisher, StoreRunner, db_url, postgres_server, verdict_fields, wait_for  # noqa: F401
from inspectd.errors import InspectdError
from inspectd.store.database import connect
from inspectd.store.migrations import LATEST, MIGRATIONS, Migration, current_version, migrate
from inspectd.store.retention import Retention, RetentionPolicy
from inspectd.store.writer import StoreWriter


@pytest.fixture
def raw():
    pub = RawPublisher()
    yield pub
    pub.close()


def test_every_kind_is_stored_with_crops_from_the_real_publisher(db_url):
    pub = publisher(crops=True, heartbeat_interval_s=0.05)
    store = StoreRunner(db_url, [pub.endpoint])
    try:
        wait_for(lambda: store.count("events", "kind = 'heartbeat'") > 0, what="first heartbeat stored")
        image = np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)
        for i in range(30):
            assert pub.publish_verdict(verdict(i, n_defects=i % 3), image)
            if i % 10 == 4:
                pub.publish_dropped(*given_up(i + 1000), "ring_overflow")
            time.sleep(0.002)
        wait_for(lambda: store.count("verdicts") == 30 and store.count("crops") == 30, what="30 verdicts and crops")
        wait_for(lambda: store.count("uninspected") == 3, what="3 uninspected stretches")
        assert store.count("defects") == 30                        # 0 + 1 + 2 per three frames
        assert store.count("defects", "defect_seq IS NULL OR crop IS NULL OR payload IS NULL") == 0
        # The crop is the JPEG that was sent, with the bytes the message announced.
        (jpeg, announced), = store.query(
            "SELECT c.jpeg, d.crop FROM crops c JOIN defects d ON d.publisher = c.publisher "
            "AND d.verdict_seq = c.verdict_seq AND d.idx = c.idx ORDER BY c.verdict_seq LIMIT 1")
        assert bytes(jpeg)[:3] == b"\xff\xd8\xff" and len(bytes(jpeg)) == json.loads(announced)["bytes"]
        # Each verdict's payload is kept exactly as received.
        stored = store.query("SELECT payload FROM verdicts WHERE frame = 5")[0][0]
        assert json.loads(stored)["frame"] == 5 and json.loads(stored)["status"] == "reject"
        pub.publish_status({"frames_in": 30})
        wait_for(lambda: store.count("events", "kind = 'status'") == 1, what="the status message stored")
        assert store.count("gaps", "reason <> 'joined'") == 0
        # Nothing skipped: the publisher's last seq in the table is the highest seq stored.
        # (One statement: one snapshot, while heartbeats keep coming.)
        (last_seq, messages, rows), = store.query(
            "SELECT last_seq, messages, (SELECT count(*) FROM verdicts) + (SELECT count(*) FROM defects) + "
            "(SELECT count(*) FROM uninspected) + (SELECT count(*) FROM events) FROM publishers")
        assert messages == rows and last_seq >= 30
    finally:
        store.stop()
        pub.close()


def test_unknown_kinds_coils_and_gaps(db_url, raw):
    store = StoreRunner(db_url, [raw.endpoint])
    try:
        store.sync(raw)
        raw.send("coil_start", {"coil": "C1", "width_mm": 1250.0, "meta": {"grade": "S235"}})
        for i in range(5):
            raw.send("verdict", verdict_fields(i, n_defects=1, coil="C1"), detail="reject")
        raw.send("alarm", {"alarm": "periodic", "coil": "C1", "pitch_m": 3.14, "class": "scratches"},
                 detail="periodic")
        raw.send("something_new", {"x": [1, 2, 3]})
        raw.seq += 4                                                        # 4 messages lost
        raw.send("coil_start", {"coil": "C2", "width_mm": 1000.0})         # C1 never ended
        raw.send("verdict", verdict_fields(5, coil="C2"), detail="ok")
        raw.send("coil_end", {"coil": "C2", "closed_by": "end", "length_m": 12.5})
        raw.send("verdict", verdict_fields(6, coil="C3"), detail="ok")     # C3's start was never seen
        wait_for(lambda: store.count("verdicts", "camera = 'cam0'") == 7, what="7 verdicts")
        kinds = {k for (k,) in store.query("SELECT kind FROM events WHERE camera = 'cam0'")}
        assert {"coil_start", "coil_end", "alarm", "something_new"} <= kinds
        assert json.loads(store.query("SELECT payload FROM events WHERE kind = 'something_new'")[0][0])["x"] == [1, 2, 3]
        coils = store.query("SELECT coil, status, end_reason, width_mm, length_m, meta FROM coils ORDER BY id")
        assert [c[:3] for c in coils] == [("C1", "closed", "next_start"), ("C2", "ended", "end"),
                                          ("C3", "open", None)]
        assert coils[0][3] == 1250.0 and json.loads(coils[0][5]) == {"grade": "S235"}
        assert coils[0][4] == pytest.approx(4 * 0.2 + 0.2)                # furthest position seen
        assert coils[1][4] == 12.5
        assert store.count("defects", "coil = 'C1'") == 5
        gaps = store.query("SELECT reason, expected_seq, received_seq, missing FROM gaps WHERE camera = 'cam0'")
        assert gaps == [("lost", 8, 12, 4)]
    finally:
        store.stop()


def test_restarts_of_the_store_and_of_the_daemon_are_recorded(db_url, raw):
    store = StoreRunner(db_url, [raw.endpoint])
    try:
        store.sync(raw)
        for i in range(10):
            raw.send("verdict", verdict_fields(i), detail="ok")
        wait_for(lambda: store.count("verdicts") == 10, what="10 verdicts")
    finally:
        store.stop()
    for i in range(10, 15):                    # published while no store listens
        raw.send("verdict", verdict_fields(i), detail="ok")
    store = StoreRunner(db_url, [raw.endpoint])
    try:
        store.sync(raw)
        raw.send("verdict", verdict_fields(15), detail="ok")
        wait_for(lambda: store.count("verdicts") == 11, what="the 11th verdict")
        assert store.query("SELECT reason, expected_seq, received_seq, missing FROM gaps WHERE camera = 'cam0'") == \
            [("store_down", 10, 15, 5)]
        raw.restart("p2")                       # the daemon restarted; its first 2 messages were missed
        raw.seq = 2
        raw.send("verdict", verdict_fields(0), detail="ok")
        wait_for(lambda: store.count("gaps", "reason = 'restart'") == 1, what="the restart recorded")
        assert store.query("SELECT publisher, previous_publisher, previous_last_seq, received_seq, missing "
                           "FROM gaps WHERE reason = 'restart'") == [("p2", "p1", 15, 2, 2)]
        assert store.count("verdicts") == 12
    finally:
        store.stop()


def test_migrations_are_versioned_applied_once_and_in_order(db_url):
    db = connect(db_url)
    try:
        assert current_version(db) == 0
        assert migrate(db) == [m.version for m in MIGRATIONS]
        assert migrate(db) == []
        assert current_version(db) == LATEST
        later = MIGRATIONS + (
            Migration(LATEST + 1, "a column", ("ALTER TABLE coils ADD COLUMN grade TEXT",)),
            Migration(LATEST + 2, "an index on it", ("CREATE INDEX coils_grade ON coils (grade)",)),
        )
        assert migrate(db, later) == [LATEST + 1, LATEST + 2]
        names = [r[0] for r in db.query("SELECT name FROM schema_version ORDER BY version")]
        assert names[-2:] == ["a column", "an index on it"]
        # A migration that fails leaves the database at the previous version.
        broken = later + (Migration(LATEST + 3, "broken", ("ALTER TABLE coils ADD COLUMN x TEXT",
                                                             "THIS IS NOT SQL")),)
        with pytest.raises(Exception):
            migrate(db, broken)
        assert current_version(db) == LATEST + 2
        assert "x" not in _columns(db, "coils")
        # This program refuses a database newer than it knows.
        with pytest.raises(InspectdError, match=r"schema version .* is newer than this inspectd knows") as exc:
            migrate(db)
        assert exc.value.exit_code == 2
    finally:
        db.close()


def _columns(db, table: str) -> set[str]:
    if db.dialect == "sqlite":
        return {r[1] for r in db.query(f"PRAGMA table_info({table})")}
    return {r[0] for r in db.query("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                                   (table,))}


def _fill(writer: StoreWriter, n: int, received_ns: int, crop_bytes: int = 0, seq0: int = 0) -> None:
    for i in range(n):
        seq = seq0 + 2 * i
        v = {"schema": 1, "kind": "verdict", "seq": seq, "publisher": "p", "camera": "cam0",
             "publish_wall_ns": received_ns, **verdict_fields(i, n_defects=1)}
        writer.add(b"verdict/cam0/reject", json.dumps(v).encode(), (), received_ns)
        d = {"schema": 1, "kind": "defect", "seq": seq + 1, "publisher": "p", "camera": "cam0",
             "verdict_seq": seq, "index": 0, "count": 1, "frame": i, "strip_position_m": i * 0.2,
             **v["defects"][0], "crop": {"format": "jpeg", "bytes": crop_bytes} if crop_bytes else None}
        writer.add(b"defect/cam0/scratches", json.dumps(d).encode(),
                   [bytes(crop_bytes)] if crop_bytes else [], received_ns)
    writer.flush()


def test_retention_by_age_keeps_recent_rows_and_crops_go_sooner(db_url):
    db = connect(db_url)
    migrate(db)
    try:
        now = time.time_ns()
        day = 86400 * 10**9
        w = StoreWriter(db)
        _fill(w, 10, now - 10 * day, crop_bytes=1000)
        _fill(w, 10, now - 2 * day, crop_bytes=1000, seq0=100)
        _fill(w, 10, now - 1000, crop_bytes=1000, seq0=200)
        deleted = Retention(db, RetentionPolicy(max_age_s=5 * 86400, crops_max_age_s=86400)).run(now)
        assert deleted["verdicts"] == 10 and deleted["defects"] == 10 and deleted["crops"] == 20
        assert db.query("SELECT count(*) FROM verdicts")[0][0] == 20
        assert db.query("SELECT count(*) FROM crops")[0][0] == 10
        assert db.query("SELECT min(received_wall_ns) FROM crops")[0][0] == now - 1000
        record = json.loads(db.query("SELECT payload FROM events WHERE kind = 'store_retention'")[0][0])
        assert record["deleted"]["crops"] == 20
    finally:
        db.close()


def test_retention_by_size_takes_crops_first_then_the_oldest_rows(db_url):
    db = connect(db_url)
    migrate(db)
    try:
        now = time.time_ns()
        w = StoreWriter(db)
        for k in range(4):                                 # 4 x 50 verdicts with 20 kB crops, oldest first
            _fill(w, 50, now - (10 - k) * 10**9, crop_bytes=20_000, seq0=1000 * k)
        size = db.size_bytes()
        crops_bytes = 200 * 20_000
        # Over the limit by less than the crops: only crops go, the oldest ones.
        limit = size - crops_bytes // 2
        deleted = Retention(db, RetentionPolicy(max_bytes=limit, margin=0.0)).run(now)
        assert set(deleted) == {"crops"} and 50 <= deleted["crops"] < 200
        kept = db.query("SELECT min(received_wall_ns) FROM crops")[0][0]
        assert kept > now - 10 * 10**9                      # the oldest ones went
        assert db.query("SELECT count(*) FROM verdicts")[0][0] == 200
        # A limit that crops alone cannot meet: all crops go, then the oldest rows.
        size = db.size_bytes()
        left = db.query("SELECT sum(bytes) FROM crops")[0][0]
        limit = size - left - (size - left) // 10
        deleted = Retention(db, RetentionPolicy(max_bytes=limit, margin=0.0)).run(now)
        assert db.query("SELECT count(*) FROM crops")[0][0] == 0
        assert 0 < deleted["verdicts"] < 200 and deleted["verdicts"] == deleted["defects"]
        assert db.query("SELECT min(received_wall_ns) FROM verdicts")[0][0] > now - 10 * 10**9
    finally:
        db.close()


def test_docs_list_every_table(tmp_path):
    """docs/store.md's table of tables is the schema's (checked against a migrated database)."""
    import re
    from pathlib import Path

    db = connect(str(tmp_path / "s.db"))
    try:
        migrate(db)
        tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")} - {"schema_version"}
    finally:
        db.close()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "store.md").read_text()
    section = doc.split("## What is stored")[1].split("\n## ")[0]
    assert set(re.findall(r"^\| `(\w+)` \|", section, re.M)) == tables


def test_a_database_that_takes_nothing_does_not_hang_the_stop(tmp_path, raw, monkeypatch):
    # Another program holds the SQLite file locked (a lock wait; on PostgreSQL a dead server
    # does the same): the store stops anyway, within STOP_WAIT_S, and says what it could not write.
    import sqlite3
    import threading

    import inspectd.store.service as service_mod
    monkeypatch.setattr(service_mod, "STOP_WAIT_S", 1.0)
    url = str(tmp_path / "store.db")
    store = StoreRunner(url, [raw.endpoint], batch_max=1)
    store.sync(raw)
    store.stop_event.set()                  # the runner's own thread: stopped, replaced below
    store.thread.join(30)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.service.run(stop)
        except BaseException as exc:  # noqa: BLE001 - the test's answer
            errors.append(exc)
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    blocker = sqlite3.connect(url, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")      # every commit of the store now waits
    try:
        for i in range(10):
            raw.send("verdict", verdict_fields(i))
        time.sleep(1.0)                     # the committer is waiting, two batches queued, more held
        stop.set()
        t0 = time.monotonic()
        runner.join(30)
        waited = time.monotonic() - t0
        assert not runner.is_alive()
        assert store.service.committing      # a transaction still waits: the connection stays open
    finally:
        blocker.execute("ROLLBACK")         # the lock goes: the stuck transaction ends, and with it the thread
        blocker.close()
    wait_for(lambda: not store.service.committing, what="the committer's transaction ended")
    store.stop()
    assert waited < 10
    assert len(errors) == 1 and isinstance(errors[0], InspectdError) and errors[0].exit_code == 1
    assert "after stop" in str(errors[0]) or "of stopping" in str(errors[0])
