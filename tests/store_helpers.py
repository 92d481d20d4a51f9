"""The store tests' real parts: a PostgreSQL server of their own, a raw PUB socket, waiting.

The PostgreSQL server is started once per test session with ``initdb`` and ``pg_ctl`` in a
temporary folder (trust authentication, loopback only, fsync off) and stopped at the end;
each test gets a database of its own. Tests that need it are skipped only where no
PostgreSQL binaries are found (``.ci/run`` installs Debian's ``postgresql``). As root (CI),
the server runs as the ``postgres`` account, since PostgreSQL refuses to run as root.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq

TIMEOUT_S = 30.0


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _pg_bin()
        if self.bin is None:
            pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) found; apt-get install postgresql")
        self.dir = Path(tempfile.mkdtemp(prefix="inspectd-pg-"))
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' account to run PostgreSQL as")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run([str(self.bin / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                   "--no-sync"])
        self._run([str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                   "-o", f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                         "-c synchronous_commit=off -c full_page_writes=off", "start"])
        self._names = itertools.count()

    def _run(self, cmd: list[str]) -> None:
        r = subprocess.run(self._as + cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {r.stderr.strip()} {log[-2000:]}")

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def new_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh database of each kind: a SQLite file, a PostgreSQL database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_server").new_database()


class RawPublisher:
    """A PUB socket that sends payloads exactly as given: any kind, any seq (gaps on demand)."""

    def __init__(self, camera: str = "cam0", publisher: str = "p1") -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.camera = camera
        self.publisher = publisher
        self.seq = 0

    def send(self, kind: str, fields: dict[str, Any] | None = None, *, seq: int | None = None,
             parts: list[bytes] | None = None, camera: str | None = None, detail: str = "") -> dict[str, Any]:
        if seq is not None:
            self.seq = seq
        msg = {"schema": 1, "kind": kind, "seq": self.seq, "kind_seq": self.seq, "publisher": self.publisher,
               "camera": camera or self.camera, "publish_wall_ns": time.time_ns()}
        msg.update(fields or {})
        self.seq += 1
        topic = f"{kind}/{msg['camera']}/{detail}".encode()
        self.sock.send_multipart([topic, json.dumps(msg).encode()] + list(parts or []))
        return msg

    def heartbeat(self, **kw: Any) -> dict[str, Any]:
        return self.send("heartbeat", {"interval_s": 1.0, "next_kind_seq": {}, "last_frame": None, "uptime_s": 1.0},
                         **kw)

    def restart(self, publisher: str) -> None:
        """What a restarted daemon looks like: a new publisher id, counting from 0."""
        self.publisher = publisher
        self.seq = 0

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def verdict_fields(frame: int, n_defects: int = 0, coil: str | None = None, position_m: float | None = None
                   ) -> dict[str, Any]:
    pos = position_m if position_m is not None else frame * 0.2
    now = time.time_ns()
    defects = [{"class": ["scratches", "inclusion", "patches"][i % 3], "score": 0.5 + 0.1 * i,
                "box": [10.0 + 50 * i, 20.0, 40.0 + 50 * i, 80.0],
                "box_mm": [5.0 + 25 * i, pos * 1000 + 10.0, 20.0 + 25 * i, pos * 1000 + 40.0],
                "area_px": 900, "area_mm2": 225.0, "branch": "both", "rejects": True} for i in range(n_defects)]
    out = {"frame": frame, "camera_frame_id": None, "camera_timestamp_ns": None, "width": 600, "height": 400,
           "capture_wall_ns": now - 5_000_000, "inference_start_wall_ns": now - 4_000_000,
           "inference_end_wall_ns": now - 1_000_000, "strip_position_m": pos, "frame_length_m": 0.2,
           "gate_deadline_wall_ns": now + 500_000_000, "gate_until_wall_ns": now + 520_000_000, "late": False,
           "status": "reject" if defects else "ok", "defects": defects}
    if coil is not None:
        out.update(coil=coil, coil_position_m=pos)
    return out


def wait_for(pred: Callable[[], bool], timeout_s: float = TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout_s} s")


class StoreRunner:
    """``StoreService`` on a thread, as ``inspectd store`` runs it, plus a reader connection."""

    def __init__(self, url: str, endpoints: list[str], **options: Any) -> None:
        import threading

        from inspectd.store.database import connect
        from inspectd.store.migrations import migrate
        from inspectd.store.service import StoreOptions, StoreService

        options.setdefault("batch_ms", 20.0)
        self.url = url
        self.db = connect(url)
        migrate(self.db)
        self.gaps: list = []
        self.service = StoreService(self.db, endpoints, StoreOptions(**options), on_gap=self.gaps.append)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event,), daemon=True)
        self.thread.start()
        self.reader = connect(url)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.reader.query(sql, params)

    def count(self, table: str, where: str = "1 = 1", params: tuple = ()) -> int:
        return int(self.query(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])

    def sync(self, pub: RawPublisher) -> None:
        """Send heartbeats of a side camera until one is stored: the subscription is then in place."""
        camera, publisher = pub.camera, pub.publisher
        pub.camera, pub.publisher = "sync", f"sync-{publisher}"
        saved_seq, pub.seq = pub.seq, 0
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                pub.heartbeat()
                time.sleep(0.05)
                if self.count("events", "camera = 'sync'"):
                    return
            raise AssertionError("the store did not receive anything")
        finally:
            pub.camera, pub.publisher, pub.seq = camera, publisher, saved_seq

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(TIMEOUT_S)
        self.service.close()
        self.reader.close()
        self.db.close()
