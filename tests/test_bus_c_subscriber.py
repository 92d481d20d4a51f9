"""examples/c_subscriber: built with the system's C compiler and libzmq, run against a real publisher."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bus_helpers import TIMEOUT_S, drain, given_up, publisher, put, verdict

SRC = Path(__file__).resolve().parents[1] / "examples" / "c_subscriber"


@pytest.fixture(scope="module")
def c_subscriber(tmp_path_factory) -> Path:
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("no C compiler or make on this machine")
    build = tmp_path_factory.mktemp("c_subscriber")
    proc = subprocess.run(["make", "-C", str(SRC), f"BUILD={build}"], capture_output=True, text=True)
    if proc.returncode != 0:
        if "zmq.h" in proc.stderr or "-lzmq" in proc.stderr:
            pytest.skip("libzmq development files are missing (apt install libzmq3-dev)")
        pytest.fail(f"the C subscriber does not build:\n{proc.stderr}")
    assert "warning" not in proc.stderr, proc.stderr
    return build / "inspectd_sub"


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_c_subscriber_decodes_every_kind_and_reports_gaps(c_subscriber):
    sent: dict[int, dict] = {}
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        sent[msg["seq"]] = msg
        if msg["kind"] == "verdict" and msg["frame"] == 1000:
            entered.set()
            release.wait(TIMEOUT_S)

    pub = publisher(camera="cam.1", tap=tap, crops=True, queue_size=2)
    image = np.full((400, 600), 128, np.uint8)
    proc = subprocess.Popen([str(c_subscriber), "-n", "400", pub.endpoint], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(TIMEOUT_S * 2, proc.kill)
    timer.start()
    try:
        # wait until the C program receives (its first line), publishing meanwhile
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + TIMEOUT_S
        while not lines and time.monotonic() < deadline:
            time.sleep(0.05)
        i = 0
        while i < 30:
            drain(pub)                     # the queue is small (for the loss below): lose nothing here
            if i % 10 == 4:
                pub.publish_dropped(*given_up(i, camera="cam.1"), "ring_overflow")
            else:
                pub.publish_verdict(verdict(i, n_defects=i % 3, camera="cam.1"), image)
            pub.publish_status({"frames": i})
            i += 1
            time.sleep(0.01)
        # one loss the C program must report: the publisher thread stalls, a verdict is not queued
        put(pub, verdict(1000, camera="cam.1"))
        assert entered.wait(TIMEOUT_S)
        pub.publish_verdict(verdict(1001, camera="cam.1"))
        pub.publish_verdict(verdict(1002, camera="cam.1"))
        assert not pub.publish_verdict(verdict(1003, camera="cam.1"))
        release.set()
        deadline = time.monotonic() + TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            put(pub, verdict(2000 + i, camera="cam.1"))      # until it has its 400 messages
            i += 1
            time.sleep(0.01)
        assert proc.wait(TIMEOUT_S) == 0, proc.stderr.read()
        reader.join(TIMEOUT_S)
    finally:
        release.set()
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        pub.close()
    top = [line for line in lines if not line.startswith("  ")]
    assert not [line for line in top if line.startswith("WARN")], top
    kinds = {line.split()[0] for line in top}
    assert {"verdict", "defect", "uninspected", "heartbeat", "status", "GAP"} <= kinds
    gaps = [fields(line) for line in top if line.startswith("GAP")]
    assert [(g["camera"], g["missing"]) for g in gaps] == [("cam.1", "1")]
    checked = 0
    for n, line in enumerate(lines):
        if line.startswith(("GAP", "  ")):
            continue
        f = fields(line)
        msg = sent[int(f["seq"])]
        assert line.split()[0] == msg["kind"] and f["camera"] == msg["camera"]
        if msg["kind"] == "verdict":
            assert int(f["frame"]) == msg["frame"] and f["status"] == msg["status"]
            # 64-bit nanosecond times arrive exactly
            assert int(f["deadline_ns"]) == msg["gate_deadline_wall_ns"]
            assert int(f["until_ns"]) == msg["gate_until_wall_ns"]
            assert int(f["defects"]) == len(msg["defects"])
            for k, d in enumerate(msg["defects"]):
                df = fields(lines[n + 1 + k])
                assert df["class"] == d["class"] and float(df["score"]) == pytest.approx(d["score"], abs=1e-4)
                assert [float(x) for x in df["box"].split(",")] == pytest.approx(d["box"], abs=0.05)
            checked += 1
        elif msg["kind"] == "defect":
            assert int(f["verdict_seq"]) == msg["verdict_seq"] and f["class"] == msg["class"]
            assert int(f["crop_bytes"]) == msg["crop"]["bytes"] > 0          # the JPEG part arrived
        elif msg["kind"] == "uninspected":
            assert (int(f["first"]), int(f["last"]), f["reason"]) == (msg["first_frame"], msg["last_frame"],
                                                                       msg["reason"])
        elif msg["kind"] == "heartbeat":
            assert float(f["interval_s"]) == pytest.approx(msg["interval_s"])
    assert checked >= 20


def test_c_subscriber_with_topic_filters_follows_kind_seq(c_subscriber):
    """Run as its README says, with topic filters: the kinds it does not take make `seq` jump,
    which is no loss; a lost verdict is one gap in the verdicts' `kind_seq`, and a lost *last*
    verdict is reported from the next heartbeat's `next_kind_seq`."""
    entered, release = threading.Event(), threading.Event()

    def tap(topic: bytes, msg: dict) -> None:
        if msg["kind"] == "verdict" and msg["frame"] == 1000:
            entered.set()
            release.wait(TIMEOUT_S)

    pub = publisher(camera="cam0", tap=tap, queue_size=2)
    proc = subprocess.Popen([str(c_subscriber), pub.endpoint, "verdict/cam0/", "uninspected/cam0/", "heartbeat/cam0/"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def wait_for(pred, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not pred() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pred(), f"{what}: {lines[-5:]}"

    try:
        wait_for(lambda: any(x.startswith("heartbeat") for x in lines), "no heartbeat")
        for i in range(30):
            drain(pub)
            if i % 10 == 4:
                pub.publish_dropped(*given_up(i), "overflow")
            else:
                pub.publish_verdict(verdict(i, n_defects=i % 3))     # defects: not subscribed
            pub.publish_status({"frames": i})                          # not subscribed
            time.sleep(0.01)
        drain(pub)
        wait_for(lambda: sum(x.startswith("verdict") for x in lines) == 27, "verdicts")
        assert not [x for x in lines if x.startswith("GAP")], lines          # seq jumped; nothing was lost
        # lose the last verdict: the publisher thread stalls, the 4th verdict finds its queue full
        put(pub, verdict(1000))
        assert entered.wait(TIMEOUT_S)
        pub.publish_verdict(verdict(1001))
        pub.publish_verdict(verdict(1002))
        assert not pub.publish_verdict(verdict(1003))
        release.set()
        wait_for(lambda: any(x.startswith("GAP") for x in lines), "the lost last verdict is not reported")
        n = len(lines)
        wait_for(lambda: sum(x.startswith("heartbeat") for x in lines[n:]) >= 3, "heartbeats after the gap")
    finally:
        release.set()
        proc.kill()
        proc.wait(TIMEOUT_S)
        pub.close()
    gaps = [fields(x) for x in lines if x.startswith("GAP")]
    assert [(g["kind"], g["expected"], g["missing"]) for g in gaps] == [("verdict", "30", "1")], gaps
    assert not [x for x in lines if x.startswith("WARN")]
