"""The store behind a real daemon: ``inspectd replay --coil`` with the shipped model publishes
into an ``inspectd store`` subprocess; what the store keeps is exactly what the daemon wrote
to its JSON-lines file, framed by the coil's start and end."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from store_helpers import TIMEOUT_S, wait_for
from inspectd.store.database import connect

ROOT = Path(__file__).resolve().parents[1]
INSPECTD = [sys.executable, "-m", "inspectd.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_store_keeps_exactly_what_the_daemon_published(tmp_path):
    # Eight frames of the bundled recording as an image folder (a short, real source).
    cap = cv2.VideoCapture(str(ROOT / "samples" / "neu_strip.mkv"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        ok, img = cap.read()
        assert ok
        cv2.imwrite(str(frames / f"f{i:03d}.png"), img)
    cap.release()
    config = tmp_path / "inspectd.yaml"
    config.write_text("bus:\n  crops: true\n")
    db_path = tmp_path / "store.db"
    port = _free_port()
    # The store binds and the daemon connects to it, so the store is listening before the
    # daemon's first message (its coil_start).
    store = subprocess.Popen(INSPECTD + ["store", f"@tcp://127.0.0.1:{port}", "--db", str(db_path), "--batch-ms", "50"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "inspectd store: " in store.stderr.readline()
        out = tmp_path / "verdicts.jsonl"
        replay = subprocess.run(INSPECTD + ["replay", str(frames), "--config", str(config), "--coil", "C-42",
                                            "--publish", f">tcp://127.0.0.1:{port}", "--out", str(out), "--quiet"],
                                capture_output=True, text=True, timeout=TIMEOUT_S * 10, cwd=tmp_path)
        assert replay.returncode == 0, replay.stderr
        published = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(published) == 8

        def count(sql: str) -> int:
            db = connect(str(db_path), read_only=True)
            try:
                return db.query(sql)[0][0]
            finally:
                db.close()

        wait_for(lambda: count("SELECT count(*) FROM coils WHERE status <> 'open'") == 1, what="the coil closed")
        store.send_signal(signal.SIGTERM)
        _, err = store.communicate(timeout=TIMEOUT_S)
        assert store.returncode == 0, err
    finally:
        if store.poll() is None:
            store.kill()
    db = connect(str(db_path), read_only=True)
    try:
        stored = {r[0]: json.loads(r[1]) for r in db.query("SELECT frame, payload FROM verdicts")}
        assert [stored[m["frame"]] for m in published] == published          # the same objects, every field
        n_defects = sum(len(m["defects"]) for m in published)
        assert n_defects > 0, "the sample's frames have defects"
        assert db.query("SELECT count(*) FROM defects WHERE defect_seq IS NOT NULL")[0][0] == n_defects
        assert db.query("SELECT count(*) FROM crops")[0][0] == n_defects
        # The daemon publishes from its first instant (a heartbeat, the coil's start): what it sent
        # before the store's subscription reached it is recorded as one "joined" gap, exactly
        # those messages; nothing after.
        gaps = db.query("SELECT reason, expected_seq, received_seq, missing FROM gaps")
        first_seq = db.query("SELECT first_seq FROM publishers")[0][0]
        assert gaps == ([] if first_seq == 0 else [("joined", 0, first_seq, first_seq)])
        (coil, status, reason, length, started, ended), = db.query(
            "SELECT coil, status, end_reason, length_m, started_wall_ns, ended_wall_ns FROM coils")
        # A replay's coil ends with the replay (closed_by: stop).
        assert (coil, status, reason) == ("C-42", "closed", "stop") and started <= ended
        assert {m["coil"] for m in published} == {"C-42"}
        assert db.query("SELECT count(*) FROM defects WHERE coil = 'C-42'")[0][0] == n_defects
        assert length == pytest.approx(max(m["coil_position_m"] + m["frame_length_m"] for m in published), abs=1e-6)
        kinds = {r[0] for r in db.query("SELECT DISTINCT kind FROM events")}
        # Heartbeats flow only while nothing else does: a short replay may send none after the join.
        assert {"coil_end", "status"} <= kinds
    finally:
        db.close()
