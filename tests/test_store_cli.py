"""``inspectd store`` as a user and systemd run it: a real subprocess, SIGTERM, SIGKILL, bad input."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from store_helpers import TIMEOUT_S, RawPublisher, db_url, postgres_server, verdict_fields, wait_for  # noqa: F401
from inspectd.cli import main
from inspectd.store.database import connect

INSPECTD = [sys.executable, "-m", "inspectd.cli"]


def start_store(url: str, endpoint: str, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen(INSPECTD + ["store", endpoint, "--db", url, "--batch-ms", "20", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(TIMEOUT_S * 4, proc.kill)
    timer.daemon = True
    timer.start()
    banner = proc.stderr.readline()
    assert "inspectd store: " in banner and "schema version" in banner, banner + proc.stderr.read()
    return proc


def count(url: str, sql: str) -> int:
    db = connect(url)
    try:
        return int(db.query(sql)[0][0] or 0)
    finally:
        db.close()


def sync(url: str, pub: RawPublisher) -> None:
    camera, pub.camera = pub.camera, "sync"
    publisher, pub.publisher = pub.publisher, f"sync{os.urandom(4).hex()}"
    saved, pub.seq = pub.seq, 0
    try:
        def heard() -> bool:
            pub.heartbeat()
            return count(url, f"SELECT count(*) FROM events WHERE publisher = '{pub.publisher}'") > 0
        wait_for(heard, what="the store subscribed")
    finally:
        pub.camera, pub.publisher, pub.seq = camera, publisher, saved


def test_kill_9_keeps_what_was_committed_and_the_restart_records_the_gap(db_url):
    pub = RawPublisher()
    proc = start_store(db_url, pub.endpoint)
    stop = threading.Event()
    try:
        sync(db_url, pub)

        def flood() -> None:
            i = 0
            while not stop.is_set() and i < 200_000:
                pub.send("verdict", verdict_fields(i, n_defects=2), detail="reject")
                for k in range(2):
                    pub.send("defect", {"verdict_seq": pub.seq - 1 - k, "index": k, "count": 2, "class": "scratches",
                                        "score": 0.9, "box": [1, 2, 3, 4], "crop": None}, detail="scratches")
                i += 1
                if i % 50 == 0:
                    stop.wait(0.005)

        feeder = threading.Thread(target=flood, daemon=True)
        feeder.start()
        wait_for(lambda: count(db_url, "SELECT count(*) FROM verdicts") >= 300, what="300 verdicts committed")
        proc.send_signal(signal.SIGKILL)            # in the middle of the flood
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
        stop.set()
        feeder.join(TIMEOUT_S)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    db = connect(db_url)
    try:
        if db.dialect == "sqlite":
            assert db.query("PRAGMA integrity_check") == [("ok",)]
        # Whole batches or nothing: every stored verdict has its defects, and the publisher's
        # last seq is the highest seq stored.
        n_verdicts = db.query("SELECT count(*) FROM verdicts WHERE publisher = 'p1'")[0][0]
        assert n_verdicts >= 300
        assert db.query("SELECT count(*) FROM defects WHERE publisher = 'p1'")[0][0] == 2 * n_verdicts
        first, last = db.query("SELECT first_seq, last_seq FROM publishers WHERE publisher = 'p1'")[0]
        top = max(db.query("SELECT max(seq) FROM verdicts WHERE publisher = 'p1'")[0][0],
                  db.query("SELECT max(defect_seq) FROM defects WHERE publisher = 'p1'")[0][0])
        assert last == top
        # No hole inside what was committed: verdicts are every third seq from the first.
        assert n_verdicts == (last - first) // 3 + 1
    finally:
        db.close()

    # The restarted store continues the count and writes down what it did not get.
    proc = start_store(db_url, pub.endpoint)
    try:
        sync(db_url, pub)
        next_seq = pub.seq
        pub.send("verdict", verdict_fields(999_999), detail="ok")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM gaps WHERE reason = 'store_down'") == 1,
                 what="the gap recorded")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, err
        assert "transactions" in err and "inspectd store: gap: " in err
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.close()
    db = connect(db_url)
    try:
        (expected, received, missing), = db.query(
            "SELECT expected_seq, received_seq, missing FROM gaps WHERE reason = 'store_down'")
        assert expected == last + 1 and received == next_seq and missing == next_seq - last - 1
    finally:
        db.close()


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["store", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: inspectd store" in out and "--retain-days" in out and "postgresql://" in out


@pytest.mark.parametrize("argv, code, message", [
    (["--db", "mysql://x@y/z"], 2, "inspectd: --db 'mysql://x@y/z': unsupported database URL"),
    (["--db", "{tmp}/no/such/folder/store.db"], 2, "inspectd: --db {tmp}/no/such/folder/store.db: folder"),
    (["--db", "/proc/inspectd-store.db"], 2, "inspectd: --db /proc/inspectd-store.db: "),
    (["--db", "{tmp}/notadb"], 2, "inspectd: --db {tmp}/notadb: not a usable SQLite database"),
    (["--db", "{tmp}"], 2, "inspectd: --db {tmp}: is a folder"),
    (["--db", "{tmp}/s.db", "--max-size", "lots"], 2, "inspectd: --max-size 'lots': expected a size"),
    (["--db", "{tmp}/s.db", "--batch-max", "0"], 2, "inspectd: --batch-max 0: must be at least 1"),
    (["--db", "postgresql://nobody@127.0.0.1:1/x"], 1, "inspectd: --db postgresql://nobody@127.0.0.1:1/x: cannot connect"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, code, message):
    (tmp_path / "notadb").write_bytes(b"this is not a database file, it is text " * 100)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc = main(["store", "tcp://127.0.0.1:5556", *argv])
    out, err = capsys.readouterr()
    assert rc == code and out == ""
    assert err.startswith(message.replace("{tmp}", str(tmp_path))) and err.count("\n") == 1, err
