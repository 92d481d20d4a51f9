"""Coils: `inspectd coil start|end|status` against a running pipeline's control socket.

Real parts: the pipeline (ring, publisher, threads), a real video file, the control socket
on loopback, the `inspectd coil` command as a subprocess, CurveZMQ keys. The backend is the
thresholding stand-in (the coil logic does not depend on the model), and the video source
only waits between frames until the test lets it read on, so that each coil change falls
between known frames.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import zmq
from bus_helpers import assert_valid
from stand_ins import ThresholdBackend, write_video

from inspectd.bus.config import BusConfig, CurveConfig
from inspectd.bus.curve import make_key_pair
from inspectd.bus.messages import EventEncoder
from inspectd.bus.publisher import EventPublisher
from inspectd.config import default_config
from inspectd.control.config import ControlConfig
from inspectd.control.server import ControlServer
from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.line import LineConfig
from inspectd.runtime.coils import CoilDesk, CoilTracker
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.placement import place
from inspectd.runtime.sources.video import VideoSource

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG")}
TIMEOUT_S = 60.0
H, W = 240, 320                  # frames: 240 rows at 0.5 mm/px = 0.12 m of strip each
L = H * 0.5 / 1000.0


def coil(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspectd.cli", "coil", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=ROOT)


class GatedVideo(VideoSource):
    """A real video file that hands out frames only as the test allows (a line that stands)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.permits = threading.Semaphore(0)

    def allow(self, n: int) -> None:
        for _ in range(n):
            self.permits.release()

    def read(self):
        if not self.permits.acquire(timeout=TIMEOUT_S):
            raise AssertionError("the test never let the source read on")
        return super().read()


class Collect:
    def __init__(self):
        self.messages: list[dict] = []
        self.cond = threading.Condition()

    def __call__(self, topic, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def kind(self, kind: str) -> list[dict]:
        with self.cond:
            return [m for m in self.messages if m["kind"] == kind]

    def wait(self, pred, timeout: float = TIMEOUT_S) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.messages), timeout), \
                f"not reached; kinds so far: {[m['kind'] for m in self.messages]}"

    def wait_verdicts(self, n: int) -> None:
        self.wait(lambda ms: sum(m["kind"] == "verdict" for m in ms) >= n)


@contextmanager
def running_daemon(tmp_path, publish: str | None = None):
    """A pipeline with a control socket on a free loopback port (and the bus on ``publish``),
    running on a thread: (pipeline, source, tap, result, thread); stopped when the block ends."""
    video = tmp_path / "strip.avi"
    write_video(video, 10, size=(W, H), defect_every=2)
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.control.address = "tcp://127.0.0.1:*"
    if publish is not None:
        cfg.bus.publish = publish
    cfg.bus.heartbeat_interval_s = 0.2
    source = GatedVideo(video, cfg.camera)
    tap = Collect()
    pipeline = Pipeline(cfg, backend=ThresholdBackend(), source=source, tap=tap, handle_signals=False)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", pipeline.run()), daemon=True)
    thread.start()
    try:
        yield pipeline, source, tap, result, thread
    finally:
        if thread.is_alive():
            pipeline.request_stop(hurry=True)
            source.allow(100)
            thread.join(TIMEOUT_S)


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path) as parts:
        yield parts


def test_coils_through_the_command(daemon):
    pipeline, source, tap, result, thread = daemon
    address = pipeline.control.endpoint
    assert address.startswith("tcp://127.0.0.1:")

    source.allow(2)                                          # frames 0, 1: no coil yet
    tap.wait_verdicts(2)
    r = coil("start", "A-001", "--width-mm", "1250", "--meta", "grade=S235JR", "--address", address)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cam0: coil A-001 (width 1250 mm, grade=S235JR) started"
    source.allow(3)                                          # frames 2, 3, 4: coil A-001
    tap.wait_verdicts(5)
    r = coil("status", "--address", address, "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["coil"]["coil"] == "A-001" and status["coil"]["frames"] == 3

    r = coil("start", "A-001", "--address", address)        # a retry: changes nothing
    assert r.returncode == 0 and r.stdout.strip() == \
        "cam0: coil A-001 (width 1250 mm, grade=S235JR) open: 3 frames so far (a repeated request: nothing changed)"
    r = coil("start", "B-002", "--address", address)        # A-001 never ended
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cam0: coil A-001 ended (next_start; 0.36 m, 3 frames); coil B-002 started"
    source.allow(2)                                          # frames 5, 6: coil B-002
    tap.wait_verdicts(7)
    r = coil("end", "A-001", "--address", address)          # the safeguard: not the open coil
    assert r.returncode == 1 and "is not the open coil" in r.stderr and len(r.stderr.splitlines()) == 1
    r = coil("end", "--address", address)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cam0: coil B-002 ended (end; 0.24 m, 2 frames)"
    r = coil("end", "B-002", "--address", address)          # a retry of that end
    assert r.returncode == 0 and r.stdout.strip().endswith("(a repeated request: nothing changed)"), r.stderr
    source.allow(1)                                          # frame 7: between coils
    tap.wait_verdicts(8)
    r = coil("end", "--address", address)
    assert r.returncode == 1 and r.stderr.strip() == f"inspectd: {address}: no coil is open"
    r = coil("start", "C-003", "--address", address)
    assert r.returncode == 0, r.stderr
    source.allow(10)                                         # frames 8, 9, then the end of the file
    thread.join(TIMEOUT_S)
    assert result["r"].exit_code == 0

    verdicts = tap.kind("verdict")
    assert [v["frame"] for v in verdicts] == list(range(10))
    want = [(None, None)] * 2 + [("A-001", i * L) for i in range(3)] + [("B-002", i * L) for i in range(2)] \
        + [(None, None)] + [("C-003", i * L) for i in range(2)]
    got = [(v["coil"], v["coil_position_m"]) for v in verdicts]
    assert [c for c, _ in got] == [c for c, _ in want]
    assert all((p is None and q is None) or abs(p - q) < 1e-9 for (_, p), (_, q) in zip(got, want))
    # The strip position goes on counting; only the coil position restarts at each head.
    assert [round(v["strip_position_m"], 6) for v in verdicts] == [round(i * L, 6) for i in range(10)]
    for d in tap.kind("defect"):
        v = verdicts[d["frame"]]
        assert (d["coil"], d["coil_position_m"]) == (v["coil"], v["coil_position_m"])
    assert tap.kind("defect"), "the stand-in finds the bright squares of every other frame"

    starts, ends = tap.kind("coil_start"), tap.kind("coil_end")
    assert [s["coil"] for s in starts] == ["A-001", "B-002", "C-003"]
    assert starts[0]["width_mm"] == 1250.0 and starts[0]["meta"] == {"grade": "S235JR"}
    assert starts[1]["width_mm"] is None and starts[1]["meta"] == {}
    assert [(e["coil"], e["closed_by"], e["frames"], e["first_frame"], e["last_frame"]) for e in ends] == [
        ("A-001", "next_start", 3, 2, 4), ("B-002", "end", 2, 5, 6), ("C-003", "stop", 2, 8, 9)]
    assert [round(e["length_m"], 6) for e in ends] == [round(3 * L, 6), round(2 * L, 6), round(2 * L, 6)]
    # Order on the bus: the implicit end comes before the start that caused it, and each coil's
    # start before its first verdict.
    order = [(m["kind"], m.get("coil"), m.get("frame")) for m in tap.messages if m["kind"] != "heartbeat"]
    assert order.index(("coil_end", "A-001", None)) + 1 == order.index(("coil_start", "B-002", None))
    assert order.index(("coil_start", "A-001", None)) < order.index(("verdict", "A-001", 2))
    assert order.index(("coil_end", "C-003", None)) > order.index(("verdict", "C-003", 9))
    for m in tap.messages:
        assert_valid(m)


def test_bad_requests_are_answered_and_the_socket_goes_on(daemon):
    pipeline, source, tap, result, thread = daemon
    address = pipeline.control.endpoint
    ctx = zmq.Context()
    try:
        for raw, error in [(b"\xff", "not JSON"), (b"[1]", "not a JSON object"),
                           (b'{"command": "coil_start"}', "coil id is missing"),
                           (b'{"command": "coil_start", "coil": "X", "width": 5}', "unknown field(s) width"),
                           (b'{"command": "coil_start", "coil": "a b"}', "expected 1 to 64"),
                           (b'{"command": "coil_start", "coil": "X", "width_mm": -3}', "positive number"),
                           (b'{"command": "reboot"}', "unknown command")]:
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, 30_000)
            sock.connect(address)
            sock.send(raw)
            reply = json.loads(sock.recv())
            sock.close()
            assert reply["ok"] is False and error in reply["error"], (raw, reply)
    finally:
        ctx.term()
    r = coil("start", "OK-1", "--address", address)
    assert r.returncode == 0, r.stderr
    assert [m["coil"] for m in tap.kind("coil_start")] == ["OK-1"]


def test_usage_errors_are_caught_before_sending():
    for args, text in [(["start", "has space"], "coil id 'has space'"),
                       (["start", "C1", "--meta", "grade"], "--meta 'grade': expected KEY=VALUE"),
                       (["start", "C1", "--width-mm", "0"], "positive number"),
                       (["start", "C1", "--curve-server-key", "x.key"], "needs both"),
                       (["status", "--timeout", "0"], "--timeout")]:
        r = coil(*args, "--address", "tcp://127.0.0.1:9")
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, (args, r.stderr)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_answer_is_one_line_within_the_timeout():
    # Nobody there.
    r = coil("start", "C1", "--address", f"tcp://127.0.0.1:{_free_port()}", "--timeout", "0.5", timeout=30)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no answer within 0.5 s" in r.stderr, r.stderr
    # Something there that takes the request and never answers.
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        r = coil("end", "--address", f"tcp://127.0.0.1:{port}", "--timeout", "0.5", timeout=30)
        assert r.returncode == 1 and "no answer within 0.5 s" in r.stderr, r.stderr
        assert router.poll(5000), "the request did reach the socket"
    finally:
        router.close()
        ctx.term()


def _desk_server(control: ControlConfig, camera: str = "cam0"):
    tap = Collect()
    pub = EventPublisher(BusConfig(heartbeat_interval_s=0.5), EventEncoder(camera, LineConfig()), tap=tap).start()
    tracker = CoilTracker(lambda i, h: i * 0.1, lambda h: 0.1)
    server = ControlServer(control, CoilDesk(tracker, pub, camera).handle).start()
    return pub, server, tap


def test_curve_admits_only_the_allowed_key(tmp_path):
    keys = tmp_path / "keys"
    for name in ("daemon", "line", "intruder"):
        make_key_pair(keys, name)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "line.key").write_bytes((keys / "line.key").read_bytes())
    pub, server, tap = _desk_server(ControlConfig(
        address="tcp://127.0.0.1:*", curve=CurveConfig(keys / "daemon.key_secret", allowed)))
    try:
        address = server.endpoint
        r = coil("start", "K1", "--address", address, "--curve-server-key", keys / "daemon.key",
                 "--curve-client-key", keys / "line.key_secret")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "cam0: coil K1 started"
        r = coil("end", "--address", address, "--curve-server-key", keys / "daemon.key",
                 "--curve-client-key", keys / "intruder.key_secret", "--timeout", "1")
        assert r.returncode == 1 and "no answer within 1 s" in r.stderr and "CurveZMQ" in r.stderr, r.stderr
        r = coil("end", "--address", address, "--timeout", "1")          # no keys at all
        assert r.returncode == 1 and "no answer within 1 s" in r.stderr, r.stderr
        tap.wait(lambda ms: any(m["kind"] == "coil_start" for m in ms))
        assert not tap.kind("coil_end"), "only the allowed key may end a coil"
    finally:
        server.close()
        pub.close()


def test_one_command_reaches_every_camera_of_the_line():
    servers = [_desk_server(ControlConfig(address="tcp://127.0.0.1:*"), cam) for cam in ("top", "bottom")]
    try:
        addresses = [a for _, s, _ in servers for a in ("--address", s.endpoint)]
        r = coil("start", "L-7", *addresses)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["top: coil L-7 started", "bottom: coil L-7 started"]
        r = coil("end", *addresses, "--address", f"tcp://127.0.0.1:{_free_port()}", "--timeout", "0.5")
        assert r.returncode == 1 and "no answer" in r.stderr      # the third is not there...
        assert len(r.stdout.splitlines()) == 2                   # ...the two that are have ended it
    finally:
        for pub, server, _ in servers:
            server.close()
            pub.close()


def test_uninspected_stretches_do_not_cross_a_coil_head():
    tap = Collect()
    pub = EventPublisher(BusConfig(heartbeat_interval_s=0.5), EventEncoder("cam0", LineConfig()), tap=tap).start()
    a, b = CoilMark("A", 0.0), CoilMark("B", 0.6)
    try:
        for i, mark in enumerate([a, a, b, b, None]):
            m = FrameMeta(i, "cam0", 0, 1, 400, 600, strip_position_m=0.2 * (i + 1), coil=mark)
            pub.publish_dropped(m, place(LineConfig(), m), "ring_overflow")
    finally:
        pub.close()
    got = [(m["first_frame"], m["last_frame"], m["coil"], m["coil_start_m"], m["coil_end_m"])
           for m in tap.kind("uninspected")]
    assert got == [(0, 1, "A", 0.2, 0.6), (2, 3, "B", 0.0, 0.4), (4, 4, None, None, None)]
    for m in tap.kind("uninspected"):
        assert_valid(m)


def test_help():
    for args in (["--help"], ["start", "--help"], ["end", "--help"], ["status", "--help"]):
        r = coil(*args)
        assert r.returncode == 0 and "usage: inspectd coil" in r.stdout, (args, r.stderr)
    r = coil("start", "--help")
    assert "--width-mm" in r.stdout and "--meta" in r.stdout and "--address" in r.stdout
    r = coil()
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) >= 1


def test_address_from_the_daemon_config(tmp_path, daemon):
    from inspectd.commands.coil import connect_address
    assert connect_address("tcp://*:5570") == "tcp://127.0.0.1:5570"
    assert connect_address("@tcp://0.0.0.0:5571") == "tcp://127.0.0.1:5571"
    assert connect_address("tcp://10.0.0.5:5570") == "tcp://10.0.0.5:5570"
    assert connect_address("ipc:///run/inspectd/top.control") == "ipc:///run/inspectd/top.control"
    pipeline, source, tap, result, thread = daemon
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(f"control:\n  address: \"{pipeline.control.endpoint}\"\n")
    r = coil("status", "--config", cfg)
    assert r.returncode == 0 and r.stdout.strip() == "cam0: no coil open", r.stderr
    cfg.write_text("camera: top\n")
    r = coil("status", "--config", cfg)
    assert r.returncode == 78 and "control.address: not set" in r.stderr


def test_replay_coil_and_control(tmp_path):
    import signal
    import time

    from stand_ins import tiny_checkpoint
    model = tiny_checkpoint(tmp_path / "tiny.safetensors")
    video = tmp_path / "v.avi"
    write_video(video, 4, size=(200, 120))
    out = tmp_path / "v.jsonl"
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "inspectd.cli", "replay", str(video), "--model", str(model),
                          "--coil", "R-1", "--control", f"tcp://127.0.0.1:{port}", "--realtime", "--loop",
                          "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=ENV, cwd=ROOT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:          # the replay is up once its control socket answers
            r = coil("status", "--address", f"tcp://127.0.0.1:{port}", "--timeout", "1")
            if r.returncode == 0:
                break
        assert r.returncode == 0 and r.stdout.startswith("cam0: coil R-1 open"), r.stderr
        r = coil("start", "R-2", "--address", f"tcp://127.0.0.1:{port}")
        assert r.returncode == 0 and "coil R-1 ended (next_start;" in r.stdout, r.stderr
        partial = out.with_name(out.name + ".partial")          # --out may be written there until the end
        written = lambda: next((f.read_text() for f in (partial, out) if f.exists()), "")  # noqa: E731
        while time.monotonic() < deadline and '"coil":"R-2","coil_position_m":0.06' not in written():
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT_S)
    assert p.returncode == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    coils = [v["coil"] for v in rows]
    assert coils[0] == "R-1" and coils[-1] == "R-2" and coils == sorted(coils)   # R-1 then R-2, no gap
    first_r2 = rows[coils.index("R-2")]
    assert first_r2["coil_position_m"] == 0.0 and first_r2["strip_position_m"] > 0
    r = coil("start", "X", "--address", "nope")
    assert r.returncode == 2
    bad = subprocess.run([sys.executable, "-m", "inspectd.cli", "replay", str(video), "--control", "udp://x"],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=TIMEOUT_S)
    assert bad.returncode == 2 and bad.stderr.startswith("inspectd: --control 'udp://x'"), bad.stderr
