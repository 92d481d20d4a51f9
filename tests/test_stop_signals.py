"""SIGTERM handling that cannot deadlock (inspectd.stop_signals), alone and in the pipeline.

The hazard: a handler runs on the main thread between any two bytecodes, also while that
thread holds an Event's lock inside threading's code; a handler that sets an Event then waits
for itself. One signal at the wrong moment hangs the daemon for good; a flood of signals from
another process makes the wrong moment near certain. Each flood test runs its target in a
child process, so that a hang fails the test instead of hanging pytest.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from inspectd.stop_signals import StopSignals, Waker

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))


def test_waker_wakes_a_waiting_thread_and_clears():
    waker = Waker()
    assert waker.wait(0.01) is False                    # nothing set: the timeout
    threading.Timer(0.05, waker.set).start()
    t0 = time.monotonic()
    assert waker.wait(30) is True
    assert time.monotonic() - t0 < 10
    for _ in range(100_000):                            # more than a pipe holds: set never blocks
        waker.set()
    assert waker.wait(0) is True
    assert waker.wait(0) is False                       # the wait cleared every byte


def test_stop_signals_count_and_restore_the_previous_handler():
    before = signal.getsignal(signal.SIGUSR1)
    previous = []
    signal.signal(signal.SIGUSR1, lambda *a: previous.append(1))
    try:
        with StopSignals(signals=(signal.SIGUSR1,)) as caught:
            assert not caught.is_set() and caught.wait(0.01) is False
            os.kill(os.getpid(), signal.SIGUSR1)
            assert caught.wait(30) is True and caught.count == 1 and caught.is_set()
            os.kill(os.getpid(), signal.SIGUSR1)
            assert caught.wait(30) is True and caught.count == 2
        assert previous == []
        os.kill(os.getpid(), signal.SIGUSR1)             # the handler before is back
        deadline = time.monotonic() + 30
        while not previous and time.monotonic() < deadline:
            time.sleep(0.01)
        assert previous == [1]
    finally:
        signal.signal(signal.SIGUSR1, before)


def _flood(p: subprocess.Popen, sig: int, until_s: float) -> int:
    """Signal ``p`` as fast as we can until it exits (or ``until_s`` passes); how many were sent."""
    sent = 0
    deadline = time.monotonic() + until_s
    while p.poll() is None and time.monotonic() < deadline:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.0002)
    return sent


def _run_child(script: str, flood: int | None = None, timeout_s: float = 120) -> tuple[dict, int]:
    """Run ``script`` in a child process; with ``flood``, signal it with that signal from its
    "ready" line until it exits. Its last line (JSON) and how many signals were sent; a child
    that hangs is killed and fails the test."""
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    sent = 0
    try:
        if flood is not None:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.communicate(timeout=timeout_s)[1]
            sent = _flood(p, flood, timeout_s)
        out, err = p.communicate(timeout=timeout_s)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), sent


def test_a_flood_of_signals_never_deadlocks_a_thread_using_locks():
    # The main thread spends its time inside threading's locked sections (an Event's
    # wait/clear, a Condition) while another process signals it thousands of times.
    # A handler that set an Event deadlocked this loop (or overflowed the stack) every time.
    result, sent = _run_child("""
        import json, signal, threading, time
        from inspectd.stop_signals import StopSignals
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)     # before and after: the flood is harmless
        ev, cond = threading.Event(), threading.Condition()
        with StopSignals(signals=(signal.SIGUSR1,)) as caught:
            print("ready", flush=True)
            end = time.monotonic() + 3.0
            loops = 0
            while time.monotonic() < end:
                caught.waker.wait(0.0005)
                ev.wait(0.0001)
                ev.clear()
                with cond:
                    cond.notify_all()
                loops += 1
        print(json.dumps({"count": caught.count, "loops": loops}), flush=True)
    """, flood=signal.SIGUSR1)
    assert sent > 1000
    assert result["count"] > 100 and result["loops"] > 100


def test_the_pipeline_stops_on_sigterm_that_comes_while_its_supervisor_holds_a_lock():
    # The CI failure, made certain: every time the supervisor (Pipeline.run, the main thread)
    # has just taken a lock inside threading's code, it is sent SIGTERM, so the handler runs
    # while that lock is held. The first signal stops the pipeline, the later ones skip the
    # queued frames; it must end with every frame accounted. The Event-setting handler this
    # replaces hung here at the first signal, every time.
    result, _ = _run_child("""
        import json, os, signal, sys, tempfile, threading
        from pathlib import Path
        from inspectd.config import default_config
        from inspectd.logging_setup import LogConfig, configure_logging
        from inspectd.runtime.pipeline import Pipeline
        from stand_ins import ThresholdBackend, write_video
        configure_logging(LogConfig(format="json", level="info", verdicts="none"))   # to stderr
        video = Path(tempfile.mkdtemp()) / "r.avi"
        write_video(video, 400, size=(200, 200))
        cfg = default_config()
        cfg.source.path = str(video)
        cfg.ring.slots = 4
        cfg.service.status_interval_s = 0.01
        armed, sent = threading.Event(), [0]
        def tap(topic, msg):
            if msg["kind"] == "verdict" and msg["frame"] >= 5:
                armed.set()
        def signal_inside_threading_locks(frame, event, arg):
            if event == "c_return" and armed.is_set() and frame.f_code.co_filename == threading.__file__ \
                    and getattr(arg, "__name__", "") in ("__enter__", "acquire"):
                sent[0] += 1
                os.kill(os.getpid(), signal.SIGTERM)
        sys.setprofile(signal_inside_threading_locks)      # the main thread's calls only
        r = Pipeline(cfg, backend=ThresholdBackend(delay_s=0.005), tap=tap, self_test=False).run()
        sys.setprofile(None)
        c = r.counters
        print(json.dumps({"exit_code": r.exit_code, "reason": r.reason, "captured": c["captured"], "sent": sent[0],
                          "inspected": c["inspected"], "uninspected": c["uninspected"]}), flush=True)
    """)
    assert result["sent"] >= 2                          # the stop, and the hurry
    assert result["exit_code"] == 0 and result["reason"] == "signal"
    assert result["captured"] == result["inspected"] + result["uninspected"]
    assert 1 <= result["inspected"] < 400               # it stopped on the signal, not at the end


def test_waker_works_above_the_descriptors_that_select_can_take():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: cannot open 1,100 files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]   # the pipe's ends land above 1023
    try:
        waker = Waker()
        threading.Timer(0.05, waker.set).start()
        assert waker.wait(30) is True
        t0 = time.monotonic()
        assert waker.wait(0.2) is False                 # a real wait, not an error returned at once
        assert time.monotonic() - t0 >= 0.15
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
