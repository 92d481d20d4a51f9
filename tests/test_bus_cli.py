"""inspectd subscribe / keys / proxy, as a user runs them (subprocesses against real publishers)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import pytest

from bus_helpers import TIMEOUT_S, assert_valid, given_up, publisher, verdict
from inspectd.bus.subscriber import EventSubscriber
from inspectd.cli import main

INSPECTD = [sys.executable, "-m", "inspectd.cli"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("command", ["subscribe", "keys", "proxy"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: inspectd " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["subscribe", "tcp//127.0.0.1:5556"], "inspectd: address 'tcp//127.0.0.1:5556': not a ZeroMQ address"),
    (["subscribe", "tcp://127.0.0.1"], "inspectd: address 'tcp://127.0.0.1': expected tcp://HOST:PORT"),
    (["subscribe", "udp://127.0.0.1:5"], "inspectd: address 'udp://127.0.0.1:5': unknown transport 'udp'"),
    (["subscribe", "tcp://127.0.0.1:5556", "--camera", "a/b"], "inspectd: --camera 'a/b': must be letters"),
    (["subscribe", "tcp://127.0.0.1:5556", "--curve-server-key", "x.key"],
     "inspectd: CurveZMQ needs both --curve-server-key and --curve-client-key"),
    (["proxy", "--in", "tcp://127.0.0.1:5556", "--out", "tcp://127.0.0.1:99999"],
     "inspectd: --out address 'tcp://127.0.0.1:99999': port 99999 out of range"),
    (["proxy", "--in", "tcp://*:5556", "--out", "tcp://127.0.0.1:*"],
     "inspectd: --in address 'tcp://*:5556': a connecting address needs a host and a port"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_keys_makes_pairs_and_refuses_to_overwrite(tmp_path, capsys):
    rc, out, _ = run_cli(["keys", str(tmp_path / "k"), "server", "actuator"], capsys)
    assert rc == 0 and "server: public" in out
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == [
        "actuator.key", "actuator.key_secret", "server.key", "server.key_secret"]
    before = (tmp_path / "k" / "server.key").read_text()
    rc, _, err = run_cli(["keys", str(tmp_path / "k"), "logger", "server"], capsys)
    assert rc == 2 and "server.key': exists already" in err
    assert not (tmp_path / "k" / "logger.key").exists(), "nothing is written when one name exists"
    assert (tmp_path / "k" / "server.key").read_text() == before
    assert run_cli(["keys", str(tmp_path / "k"), "server", "--force"], capsys)[0] == 0
    assert (tmp_path / "k" / "server.key").read_text() != before


def watchdog(proc: subprocess.Popen) -> threading.Timer:
    """Kill a subprocess that hangs, so that a failing test fails instead of hanging."""
    timer = threading.Timer(TIMEOUT_S * 2, proc.kill)
    timer.daemon = True
    timer.start()
    return timer


def feed(pub, stop: threading.Event, start: int = 0, every_s: float = 0.03) -> threading.Thread:
    """A pipeline that keeps publishing until stopped (subprocesses take a while to subscribe)."""
    def loop() -> None:
        i = start
        while not stop.is_set():
            pub.publish_verdict(verdict(i, n_defects=i % 2))
            if i % 7 == 3:
                pub.publish_dropped(*given_up(i + 100000), "ring_overflow")
            i += 1
            time.sleep(every_s)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_subscribe_json_prints_payloads_of_the_chosen_kind(tmp_path):
    pub = publisher(camera="cam.1")
    stop = threading.Event()
    t = feed(pub, stop)
    try:
        proc = subprocess.run(INSPECTD + ["subscribe", pub.endpoint, "--camera", "cam.1", "--kind", "verdict",
                                          "--json", "--count", "5"],
                              capture_output=True, text=True, timeout=TIMEOUT_S * 2)
    finally:
        stop.set()
        t.join()
        pub.close()
    assert proc.returncode == 0, proc.stderr
    msgs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(msgs) == 5 and all(m["kind"] == "verdict" and m["camera"] == "cam.1" for m in msgs)
    ks = [m["kind_seq"] for m in msgs]
    assert ks == list(range(ks[0], ks[0] + 5))
    for m in msgs:
        assert_valid(m)


def test_subscribe_reports_gaps_on_stderr():
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        if msg["kind"] == "verdict" and msg["frame"] == 1000:
            entered.set()
            release.wait(TIMEOUT_S)

    pub = publisher(tap=tap, queue_size=2)
    stop = threading.Event()
    t = feed(pub, stop)
    proc = subprocess.Popen(INSPECTD + ["subscribe", pub.endpoint, "--kind", "verdict", "--count", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = watchdog(proc)
    try:
        # Wait until the subscriber prints verdicts, then make the publisher lose three.
        line = proc.stdout.readline()
        assert "verdict" in line
        stop.set()
        t.join()
        pub.publish_verdict(verdict(1000))
        assert entered.wait(TIMEOUT_S)
        for i in range(1001, 1006):       # 2 queued, 3 lost
            pub.publish_verdict(verdict(i))
        release.set()
        deadline = time.monotonic() + TIMEOUT_S
        while pub.stats["queued"] and time.monotonic() < deadline:
            time.sleep(0.01)
        pub.publish_verdict(verdict(1006))
        # Wait until the subscriber has printed frame 1006, then stop it.
        while True:
            line = proc.stdout.readline()
            assert line, "subscriber ended early"
            if "frame 1006 " in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        release.set()
        stop.set()
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        pub.close()
    assert "gap: missed 3 verdict messages from camera cam0" in err
    assert "1 gaps (3 messages missed)" in err


def test_proxy_command_serves_a_publisher_until_sigterm(tmp_path):
    pub = publisher(heartbeat_interval_s=0.05)
    out = f"ipc://{tmp_path}/line.sock"
    proc = subprocess.Popen(INSPECTD + ["proxy", "--in", pub.endpoint, "--out", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = watchdog(proc)
    try:
        banner = proc.stderr.readline()
        assert f"-> {out}" in banner, banner
        sub = EventSubscriber(out, ["heartbeat/"])
        try:
            ev = None
            deadline = time.monotonic() + TIMEOUT_S
            while ev is None and time.monotonic() < deadline:
                ev = sub.recv(0.5)
            assert ev is not None and ev.msg["publisher"] == pub.encoder.publisher
        finally:
            sub.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT_S) == 0
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        pub.close()


def test_subscribe_timeout_exits_1(capsys):
    pub = publisher(heartbeat_interval_s=60.0)
    try:
        rc, _, err = run_cli(["subscribe", pub.endpoint, "--kind", "verdict", "--timeout", "0.5"], capsys)
    finally:
        pub.close()
    assert rc == 1 and "no event for 0.5 s" in err
