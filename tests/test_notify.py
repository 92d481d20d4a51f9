"""The sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""
from __future__ import annotations

import os
import uuid

import pytest

from inspectd.runtime.notify import Notifier
from notify_listener import NotifyListener, strip_times


@pytest.fixture
def listener(tmp_path):
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_messages_arrive_in_order(listener):
    n = Notifier(listener.env())
    assert n.enabled
    assert n.ready(status="inspecting")
    assert n.status("inspected 3\nrejects 1")
    assert n.watchdog()
    assert n.stopping()
    assert listener.wait_for(lambda m: len(m) == 4, timeout=10)
    assert strip_times(listener.messages) == [
        {"READY": "1", "STATUS": "inspecting"},
        {"STATUS": "inspected 3 rejects 1"},   # one line: STATUS must not break the datagram
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
    ]
    n.close()


def test_abstract_namespace_address():
    lst = NotifyListener(abstract=f"inspectd-test-{uuid.uuid4().hex}")
    try:
        n = Notifier(lst.env())
        assert n.ready()
        assert lst.wait_for(lambda m: strip_times(m) == [{"READY": "1"}], timeout=10)
    finally:
        lst.close()


def test_no_socket_is_a_noop():
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    n = Notifier(env)
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.sent == 0


def test_disabled_by_config_ignores_socket(listener):
    n = Notifier(listener.env(), enabled=False)
    assert not n.enabled and n.ready() is False


def test_dead_socket_does_not_raise(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    assert n.status("x") is False   # logged once, never raised


def test_watchdog_interval_is_half_of_watchdog_usec(listener):
    assert Notifier(listener.env(watchdog_usec=10_000_000)).watchdog_interval_s == pytest.approx(5.0)
    assert Notifier(listener.env()).watchdog_interval_s is None
    # A watchdog meant for another process is not ours to feed.
    env = dict(listener.env(watchdog_usec=2_000_000), WATCHDOG_PID=str(os.getpid() + 1))
    assert Notifier(env).watchdog_interval_s is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(env).watchdog_interval_s == pytest.approx(1.0)


def test_pipeline_speaks_the_protocol_in_order(tmp_path, listener):
    """READY once frames flow, STATUS while running, WATCHDOG only while frames are
    inspected (none while the model is stalled), STOPPING last."""
    import threading
    import time

    from inspectd.config import default_config
    from inspectd.runtime.pipeline import Pipeline
    from inspectd.runtime.ringbuffer import OverflowPolicy
    from stand_ins import ThresholdBackend, write_video

    video = tmp_path / "r.avi"
    write_video(video, 50)
    cfg = default_config()
    cfg.source.path, cfg.source.loop = str(video), True
    cfg.ring.policy = OverflowPolicy.block
    cfg.service.status_interval_s = 0.1
    backend = ThresholdBackend(delay_s=0.01)
    backend.gate = threading.Event()
    backend.gate.set()
    notifier = Notifier(listener.env(watchdog_usec=200_000))    # ping every 0.1 s
    assert notifier.watchdog_interval_s == pytest.approx(0.1)
    pipe = Pipeline(cfg, backend=backend, notifier=notifier, handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    try:
        pings = lambda m: sum("WATCHDOG" in x for x in m)   # noqa: E731
        assert listener.wait_for(lambda m: pings(m) >= 3 and any("STATUS" in x and "READY" not in x for x in m))
        # Stall the model: frames stop being inspected, the watchdog must go quiet.
        backend.gate.clear()
        stalled_at = time.monotonic()
        time.sleep(2.5)    # absence of pings can only be observed over time
        quiet_from = stalled_at + 1.0     # a ping for progress made just before the stall may still come
        late = [m for m in listener.messages if "WATCHDOG" in m and quiet_from <= m["_t"]]
        assert late == []
        assert any("STATUS" in m and m["_t"] > quiet_from for m in listener.messages)   # still alive
        n_before = pings(listener.messages)
        backend.gate.set()
        assert listener.wait_for(lambda m: pings(m) > n_before)                   # progress: pings again
    finally:
        backend.gate.set()
        pipe.request_stop()
        runner.join(60)
    assert pipe.result.exit_code == 0
    assert listener.wait_for(lambda m: "STOPPING" in m[-1], timeout=10)
    msgs = listener.messages
    kinds = [next(k for k in ("READY", "STOPPING", "WATCHDOG", "STATUS") if k in m) for m in msgs]
    assert kinds[0] == "READY" and kinds.count("READY") == 1
    assert kinds[-1] == "STOPPING" and kinds.count("STOPPING") == 1
    assert set(kinds[1:-1]) == {"STATUS", "WATCHDOG"}
    assert msgs[0]["STATUS"].startswith("inspected ")


def test_idle_watchdog_needs_a_source_that_answers(tmp_path, listener):
    """watchdog_when_idle: pings while a silent camera's reads time out; none once the
    source itself stops answering."""
    import threading
    import time

    from inspectd.config import default_config
    from inspectd.runtime.pipeline import Pipeline
    from inspectd.runtime.sources.base import FrameTimeout
    from stand_ins import ThresholdBackend

    class SilentCamera:
        camera, nominal_fps, frame_shape, live, position = "cam0", None, (200, 200), True, None

        def __init__(self):
            self.hang = threading.Event()      # set: read() stops returning (a dead driver)
            self.release = threading.Event()

        def start(self):
            pass

        def read(self):
            if self.hang.is_set():
                self.release.wait()
            self.release.wait(0.05)            # the fetch timeout of a triggered camera
            raise FrameTimeout()

        def stop(self):
            self.release.set()

        def stats(self):
            return {}

    cfg = default_config()
    cfg.source.path = "unused"
    cfg.service.status_interval_s = 0.1
    cfg.service.ready_when = "started"
    cfg.service.watchdog_when_idle = True
    cam = SilentCamera()
    pipe = Pipeline(cfg, source=cam, backend=ThresholdBackend(),
                    notifier=Notifier(listener.env(watchdog_usec=200_000)), handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    try:
        pings = lambda m: sum("WATCHDOG" in x for x in m)   # noqa: E731
        assert listener.wait_for(lambda m: pings(m) >= 3)    # idle but answering: fed
        cam.hang.set()
        hung_at = time.monotonic()
        time.sleep(2.0)           # absence of pings can only be observed over time
        assert [m for m in listener.messages if "WATCHDOG" in m and m["_t"] > hung_at + 1.0] == []
    finally:
        cam.release.set()
        pipe.request_stop()
        runner.join(60)
    assert listener.messages[0].get("READY") == "1"


def test_a_manager_that_stops_reading_does_not_stall_the_sender(tmp_path, monkeypatch):
    # A bound datagram socket nobody reads: its queue fills, and a blocking send would wait
    # forever. Each send gives up after SEND_TIMEOUT_S, says so (False), and raises nothing.
    import socket
    import threading
    import time

    import inspectd.runtime.notify as notify_mod
    monkeypatch.setattr(notify_mod, "SEND_TIMEOUT_S", 0.05)
    path = str(tmp_path / "deaf.sock")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)
    n = Notifier({"NOTIFY_SOCKET": path})
    results: list[bool] = []
    took: list[float] = []

    def send_until_full() -> None:
        for _ in range(20_000):                 # the queue holds 10 to a few hundred messages
            t = time.monotonic()
            results.append(n.watchdog())
            took.append(time.monotonic() - t)
            if not results[-1] and results[-3:].count(False) == 3:
                return
    sender = threading.Thread(target=send_until_full, daemon=True)
    sender.start()
    sender.join(60)
    try:
        assert not sender.is_alive(), "a send blocked on a receiver that does not read"
        assert results[0] is True and results[-3:] == [False, False, False]
        assert all(0.04 <= t < 5 for t in took[-3:])       # each gave up after about SEND_TIMEOUT_S
    finally:
        n.close()
        deaf.close()
