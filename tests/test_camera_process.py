"""The GenICam camera in its own process (runtime.camera_process) on the viky simulator: the
shared-memory ring's policies and books with a real child process, the service inspecting
every frame at a modest rate, and what happens when the camera falls silent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import genicam
import pytest
from notify_listener import NotifyListener
from stand_ins import ThresholdBackend

from inspectd.config import default_config
from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.camera_process import CameraProcess, acquisition_for, ring_for
from inspectd.runtime.notify import Notifier
from inspectd.runtime.pipeline import Pipeline, PipelineResult
from inspectd.runtime.ringbuffer import OverflowPolicy, RingConfig
from inspectd.runtime.sources import GenICamConfig

VIKY = Path(genicam.__file__).with_name("viky.cti")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not VIKY.exists(), reason="the genicam package ships no viky.cti here")


def viky(**kw) -> GenICamConfig:
    kw.setdefault("width", 200)
    kw.setdefault("height", 200)
    return GenICamConfig(cti=[str(VIKY)], **kw)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:     # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Collect:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metas: list[FrameMeta] = []

    def __call__(self, meta: FrameMeta) -> None:
        with self.lock:
            self.metas.append(meta)


# -- the hand-over of buffers (the ring's side, in one process) ---------------------------
def _meta_frame(i: int):
    from inspectd.runtime.camera_process import _placeholder
    from inspectd.runtime.frame import Frame
    return Frame(index=i, image=_placeholder((2, 2)), camera="c", capture_ns=i, capture_wall_ns=i)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_swap_in_hands_buffers_over_without_a_copy(policy):
    import numpy as np

    from inspectd.runtime.ringbuffer import RingBuffer

    store = np.zeros((4, 2, 2), np.uint8)            # 2 slots + 2 buffers of the producer
    dropped = Collect()
    ring = RingBuffer(2, policy, dropped, store=store)
    mine = [2, 3]
    for i in range(4):                               # 2 more frames than slots, nobody consuming
        buf = mine.pop(0)
        store[buf] = 10 + i                          # "the camera's pixels"
        mine.append(ring.swap_in(_meta_frame(i), buf))
    kept = [ring.get(timeout=0) for _ in range(2)]
    assert ring.get(timeout=0) is None
    want = [2, 3] if policy == "drop_oldest" else [0, 1]
    assert [f.index for f in kept] == want and [int(f.image[0, 0]) for f in kept] == [10 + i for i in want]
    assert [m.index for m in dropped.metas] == ([0, 1] if policy == "drop_oldest" else [2, 3])
    # Every buffer is owned by exactly one side.
    in_ring = {b for f in kept for b in range(4) if np.shares_memory(f.image, store[b])}
    assert in_ring.isdisjoint(mine) and len(in_ring | set(mine)) == 4
    for f in kept:
        ring.release(f)
    c = ring.counters()
    assert c.captured == 4 == c.inspected + c.dropped


# -- the shared-memory ring, fed by a real child process ----------------------------------
@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_shared_ring_policies_and_books(policy):
    src = CameraProcess(viky(serial="0", frame_rate=150.0, buffers=3), "cam0", position=lambda i: 0.1 * i)
    pid = src.pid
    assert pid and alive(pid)
    dropped, lost, silent = Collect(), Collect(), Collect()
    ring = ring_for(src, RingConfig(slots=4, policy=policy), dropped)
    shm = Path("/dev/shm") / src._shm.name
    assert shm.exists()
    stop = threading.Event()
    acq = acquisition_for(src, ring, stop, realtime=False, frame_period_s=0.01,
                          on_lost=lost, on_silent=silent)
    inspected = []
    acq.start()
    t0 = time.monotonic()
    try:
        while (f := ring.get(timeout=30)) is not None:
            assert f.image.shape == (200, 200) and f.strip_position_m == pytest.approx(0.1 * f.index)
            inspected.append((f.index, f.camera_frame_id, f.image.copy()))
            if len(inspected) % 10 == 0:
                time.sleep(0.1)              # inference falling behind now and then
            ring.release(f)
            if time.monotonic() - t0 > 2.0:
                stop.set()
    finally:
        stop.set()
        acq.join(30)
    assert acq.error is None, acq.error
    assert not alive(pid), "the acquisition process outlived its acquisition"
    assert not shm.exists(), "the shared memory was not unlinked"
    c = ring.counters()
    assert c.captured == c.inspected + c.dropped and c.queued == 0 and c.in_flight == 0
    assert c.inspected == len(inspected) and c.dropped == len(dropped.metas)
    assert not silent.metas
    # Every camera frame id from the first to the last: inspected, dropped by the ring or lost
    # by the camera, exactly once; our indices follow them.
    ids = [i[1] for i in inspected] + [m.camera_frame_id for m in dropped.metas + lost.metas]
    assert len(ids) == len(set(ids)) and sorted(ids) == list(range(min(ids), max(ids) + 1))
    idx = [i[0] for i in inspected] + [m.index for m in dropped.metas + lost.metas]
    assert sorted(idx) == list(range(len(idx)))
    assert [i[0] for i in inspected] == sorted(i[0] for i in inspected)
    assert any(img.std() > 0 for *_, img in inspected)        # real pictures came through
    if policy is OverflowPolicy.block:
        assert c.dropped_overflow <= 1 and lost.metas, "block keeps the child waiting: the camera skips"
    else:
        assert c.dropped_overflow > 0, "a consumer pausing 100 ms with 4 slots at 150 frames/s must overflow"
    if policy is OverflowPolicy.drop_oldest:
        # The newest frame is never the one dropped: the last frame taken in is inspected.
        assert max(i[0] for i in inspected) > max(m.index for m in dropped.metas)


def test_camera_errors_come_back_as_one_line_and_no_process_stays():
    before = set(_children())
    with pytest.raises(InspectdError) as exc:
        CameraProcess(viky(serial="4711"), "cam0")
    msg = str(exc.value)
    assert "\n" not in msg and "camera 'cam0'" in msg and "no device with serial '4711'" in msg
    with pytest.raises(InspectdError) as exc:
        CameraProcess(viky(serial="0", width=5000), "cam0")
    assert "the camera rejects Width = 5000" in str(exc.value)
    time.sleep(0.2)
    assert set(_children()) <= before


def _children() -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            out += [int(p) for p in Path(f"/proc/{os.getpid()}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return [p for p in out if alive(p)]


def test_the_acquisition_process_dies_with_its_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        "from inspectd.runtime.camera_process import CameraProcess\n"
        "from inspectd.runtime.sources import GenICamConfig\n"
        f"src = CameraProcess(GenICamConfig(cti=[{str(VIKY)!r}], serial='2'), 'cam0')\n"
        "print(src.pid, flush=True)\n"
        "sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, cwd=ROOT)
    child = int(p.stdout.readline())
    assert alive(child)
    p.kill()                                     # SIGKILL: no atexit, no cleanup in the parent
    p.wait(10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


# -- the service ------------------------------------------------------------------------------
class Tap:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict] = []

    def __call__(self, topic, msg) -> None:
        with self.lock:
            self.messages.append(msg)

    def kind(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["kind"] == kind]

    def wait(self, pred, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(0.05)
        return False


def camera_cfg(**genicam_kw):
    cfg = default_config()
    cfg.camera = "cam0"
    cfg.source.kind = "genicam"
    cfg.source.genicam = viky(**genicam_kw)
    cfg.ring.policy = OverflowPolicy.drop_oldest
    cfg.ring.slots = 8
    cfg.bus.heartbeat_interval_s = 0.2
    cfg.service.status_interval_s = 0.2
    cfg.bus.status_interval_s = 0.2
    cfg.log.verdicts = "none"
    return cfg


class Running:
    """A pipeline with the thresholding stand-in run on a thread (``running()``): its ``tap``
    collects what it publishes, ``result`` is set when ``run()`` returns."""

    def __init__(self, pipe: Pipeline, tap: Tap) -> None:
        self.pipe, self.tap = pipe, tap
        self.result: PipelineResult | None = None
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.result = self.pipe.run()

    def join(self, timeout: float = 60.0) -> PipelineResult:
        self._thread.join(timeout)
        assert self.result is not None, f"the pipeline did not end within {timeout} s"
        return self.result


@contextmanager
def running(cfg, **pipeline_kw) -> Iterator[Running]:
    """Run the service on ``cfg`` until the ``with`` block ends, then stop it as SIGTERM would
    and wait for it (``run.join()`` after the block gives the result)."""
    tap = Tap()
    run = Running(Pipeline(cfg, backend=ThresholdBackend(), tap=tap, handle_signals=False, **pipeline_kw), tap)
    run._thread.start()
    try:
        yield run
    finally:
        run.pipe.request_stop()
        run._thread.join(60)


def silent_stretches(tap: Tap) -> tuple[list[dict], list[dict], list[dict]]:
    """The ``camera_silent`` uninspected messages, and the verdicts before the first of them
    and after the last (empty lists when there is no silent stretch)."""
    silent = [m for m in tap.kind("uninspected") if m["reason"] == "camera_silent"]
    if not silent:
        return silent, [], []
    verdicts = tap.kind("verdict")
    return (silent, [v for v in verdicts if v["frame"] < silent[0]["first_frame"]],
            [v for v in verdicts if v["frame"] > silent[-1]["last_frame"]])


def test_every_frame_inspected_at_a_modest_rate():
    with running(camera_cfg(serial="0", frame_rate=25.0)) as run:
        assert run.tap.wait(lambda tp: len(tp.kind("verdict")) >= 75, 60)      # ~3 s of camera
    r, tap = run.join(), run.tap
    assert r.exit_code == 0, r.error
    c = r.counters
    verdicts = tap.kind("verdict")
    assert c["uninspected"] == 0 and not tap.kind("uninspected"), c["uninspected_by_reason"]
    assert c["captured"] == c["inspected"] == len(verdicts) >= 75
    assert [v["frame"] for v in verdicts] == list(range(len(verdicts)))
    # The camera's own frame ids: consecutive, none skipped.
    fids = [v["camera_frame_id"] for v in verdicts]
    assert fids == list(range(fids[0], fids[0] + len(fids)))


def _silent_cfg(**kw):
    # 200 rows at 0.5 mm: a frame is 0.1 m; at 2 m/s the strip passes one frame length per 50 ms.
    cfg = camera_cfg(serial="1", frame_rate=40.0, silent_after_s=0.3, **kw)
    cfg.line.speed_m_per_s = 2.0
    return cfg


def test_a_camera_stopped_from_outside_is_reported_silent_then_reconnected():
    with running(_silent_cfg(reconnect_after_s=1.0, reconnect_attempts=2)) as run:
        pipe, tap = run.pipe, run.tap
        first_pid = pipe.source.pid
        assert tap.wait(lambda tp: len(tp.kind("verdict")) >= 20)
        statuses = len(tap.kind("status"))
        pipe.source.execute("AcquisitionStop")           # the camera stops delivering
        assert tap.wait(lambda tp: any(m["counters"].get("acquisition", {}).get("camera_silent")
                                       for m in tp.kind("status")[statuses:]), 10)
        assert "CAMERA SILENT" in pipe.status_line()
        # Reconnected: a fresh acquisition process, and frames again.
        assert tap.wait(lambda tp: pipe.source.pid not in (None, first_pid), 15)
        n = len(tap.kind("verdict"))
        assert tap.wait(lambda tp: len(tp.kind("verdict")) >= n + 10, 30)
    r = run.join()
    assert r.exit_code == 0, r.error
    assert not alive(first_pid)
    silent, before, after = silent_stretches(tap)
    assert silent, [m["reason"] for m in tap.kind("uninspected")]
    assert before and after
    # The silent stretches start right after the last frame seen and run on without a hole
    # (positions from the line speed: one frame length, 0.1 m, per silent frame).
    assert silent[0]["first_frame"] == before[-1]["frame"] + 1
    assert silent[0]["strip_start_m"] == pytest.approx(before[-1]["strip_position_m"] + 0.1)
    for a, b in zip(silent, silent[1:]):
        assert b["first_frame"] == a["last_frame"] + 1
        assert b["strip_start_m"] == pytest.approx(a["strip_end_m"])
    # About the strip that passed: from the last frame to the first after reconnection.
    passed_s = (after[0]["capture_wall_ns"] - before[-1]["capture_wall_ns"]) / 1e9
    covered_m = silent[-1]["strip_end_m"] - silent[0]["strip_start_m"]
    assert covered_m == pytest.approx(passed_s * 2.0, abs=0.3)
    # Each frame index is a verdict or uninspected, once; the books balance.
    c = r.counters
    assert c["uninspected_by_reason"]["camera_silent"] == sum(m["count"] for m in silent)
    assert c["captured"] == c["inspected"] + c["uninspected"]     # silent frames count as captured


def test_silence_without_reconnection_stops_the_watchdog(tmp_path):
    cfg = _silent_cfg(reconnect_after_s=None)
    cfg.service.watchdog_when_idle = True
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    env = lst.env(watchdog_usec=400_000)
    env["WATCHDOG_PID"] = str(os.getpid())
    try:
        with running(cfg, notifier=Notifier(environ=env)) as run:
            pipe, tap = run.pipe, run.tap
            assert tap.wait(lambda tp: len(tp.kind("verdict")) >= 10)
            assert lst.wait_for(lambda ms: any("WATCHDOG" in m for m in ms), 5)     # fed while frames flow
            pipe.source.execute("AcquisitionStop")
            assert tap.wait(lambda tp: pipe.acquisition.stats()["camera_silent"], 10)
            time.sleep(0.5)
            pings = sum("WATCHDOG" in m for m in lst.messages)
            time.sleep(1.5)                                  # several watchdog intervals, silent
            assert sum("WATCHDOG" in m for m in lst.messages) == pings
            assert any(m["reason"] == "camera_silent" for m in tap.kind("uninspected"))
    finally:
        lst.close()
    assert run.join().exit_code == 0


def test_a_dead_acquisition_process_ends_the_service_and_the_strip_after_it_is_reported(capfd):
    with running(_silent_cfg(reconnect_after_s=0.5, reconnect_attempts=0)) as run:
        assert run.tap.wait(lambda tp: len(tp.kind("verdict")) >= 10)
        os.kill(run.pipe.source.pid, signal.SIGKILL)            # a crash: no goodbye from the child
        r = run.join()                                      # ends by itself, unasked
    assert r.exit_code == 1 and r.reason == "error"
    assert "\n" not in str(r.error) and "camera 'cam0'" in str(r.error)
    silent, before, after = silent_stretches(run.tap)
    assert silent and silent[0]["first_frame"] == run.tap.kind("verdict")[-1]["frame"] + 1 and not after
    assert r.counters["uninspected_by_reason"]["camera_silent"] == sum(m["count"] for m in silent) >= 1
    err = capfd.readouterr().err
    assert "Traceback" not in err


def test_sigterm_to_the_whole_group_stops_cleanly(tmp_path):
    """As systemd stops a unit (KillMode=control-group): SIGTERM to the service and its camera
    process at once. The camera is released, the queued frames inspected, exit status 0."""
    cfg = tmp_path / "cam.yaml"
    cfg.write_text(
        "camera: sim\n"
        f"source: {{kind: genicam, genicam: {{cti: ['{VIKY}'], serial: '2', width: 200, height: 200, "
        "frame_rate: 30}}\n"
        "ring: {policy: drop_oldest, slots: 8}\n"
        "log: {format: json, level: info, verdicts: all}\n")
    p = subprocess.Popen([sys.executable, "-m", "inspectd.cli", "run", "--config", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         start_new_session=True)
    try:
        lines = []
        while sum('"verdict"' in ln for ln in lines) < 10:
            line = p.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        os.killpg(p.pid, signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    err = "".join(lines) + err
    assert p.returncode == 0, err
    import json
    events = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert len(events) == len(err.splitlines())          # one JSON object per line, no traceback
    names = [e["event"] for e in events]
    assert "camera_down" not in names and "pipeline_failed" not in names
    stopped = next(e for e in events if e["event"] == "pipeline_stopped")
    assert stopped["reason"] == "signal" and stopped["frames_accounted"] is True


def test_harvesters_tracebacks_reach_the_log_as_one_line():
    import io
    import json
    import logging

    import harvesters.core  # noqa: F401 - installs its own stderr handler

    from inspectd.logging_setup import LogConfig, configure_logging
    from inspectd.runtime.sources.genicam import quiet_harvesters_logging

    buf = io.StringIO()
    configure_logging(LogConfig(format="json", level="info"), stream=buf)
    quiet_harvesters_logging()
    try:
        raise RuntimeError("GenTL error: -1011\nGC_ERR_INVALID_HANDLE")
    except RuntimeError as exc:
        logging.getLogger("harvesters.core").error(exc, exc_info=True)
    configure_logging(LogConfig())                  # back to stderr for the tests after this one
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1, lines
    rec = json.loads(lines[0])
    assert rec["level"] == "error" and "GC_ERR_INVALID_HANDLE" in rec["event"] and "Traceback" not in lines[0]
    assert not logging.getLogger("harvesters.core").handlers


def test_reconnecting_a_silent_camera_feeds_the_watchdog(tmp_path):
    """Reconnecting is work, not a hang: with the default watchdog_when_idle (false) the pings
    go on while a silent camera is being reconnected, so systemd does not kill the service
    half-way through."""
    cfg = _silent_cfg(reconnect_after_s=2.0, reconnect_attempts=1)
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    env = lst.env(watchdog_usec=400_000)
    env["WATCHDOG_PID"] = str(os.getpid())
    try:
        with running(cfg, notifier=Notifier(environ=env)) as run:
            pipe, tap = run.pipe, run.tap
            assert tap.wait(lambda tp: len(tp.kind("verdict")) >= 10)
            pipe.source.execute("AcquisitionStop")
            assert tap.wait(lambda tp: pipe.acquisition.stats()["camera_silent"], 10)
            inspected = len(tap.kind("verdict"))
            pings = sum("WATCHDOG" in m for m in lst.messages)
            time.sleep(1.0)                                  # silent, reconnection pending
            assert pipe.acquisition.stats()["reconnecting"] and len(tap.kind("verdict")) == inspected
            assert sum("WATCHDOG" in m for m in lst.messages) >= pings + 2
    finally:
        lst.close()
    assert run.join().exit_code == 0


def test_incomplete_buffers_reported_by_the_child_are_published_corrupt():
    """The child's frame message says how many frames before it came as incomplete buffers
    (``Grab.corrupt_before``, tests/test_genicam.py): the parent reports those as ``corrupt``
    and the rest of a frame-id gap as ``camera_lost``. The message is handed to the parent's
    side as the child sends it (viky never delivers an incomplete buffer)."""
    src = CameraProcess(viky(serial="1"), "cam0", position=lambda i: 0.1 * i)
    try:
        dropped, lost, silent, corrupt = Collect(), Collect(), Collect(), Collect()
        ring = ring_for(src, RingConfig(slots=4, policy=OverflowPolicy.drop_oldest), dropped)
        acq = acquisition_for(src, ring, threading.Event(), realtime=False, frame_period_s=0.01,
                              on_lost=lost, on_silent=silent, on_corrupt=corrupt)
        child = src.child
        buffers = sorted(src.producer_buffers)
        t = time.monotonic_ns()
        acq._handle(child, ("frame", buffers[0], 0, 10, None, t, time.time_ns(), 0))
        # ids 11..14 skipped; the last two of them were incomplete buffers
        acq._handle(child, ("frame", buffers[1], 5, 15, None, t + 50_000_000, time.time_ns(), 2))
        assert [m.index for m in lost.metas] == [1, 2]
        assert [(m.index, m.camera_frame_id) for m in corrupt.metas] == [(3, 13), (4, 14)]
        assert corrupt.metas[0].strip_position_m == pytest.approx(0.3)
        stats = acq.stats()
        assert stats["frames_corrupt"] == 2 and stats["frames_lost"] == 2
        assert [f.index for f in iter(lambda: ring.get(timeout=0.1), None)] == [0, 5]
    finally:
        src.stop()


def test_a_ring_larger_than_memory_is_refused_before_anything_is_allocated():
    src = CameraProcess(viky(serial="2"), "cam0")
    try:
        with pytest.raises(InspectdError) as exc:
            ring_for(src, RingConfig(slots=10**9, policy=OverflowPolicy.drop_oldest), Collect())
        msg = str(exc.value)
        assert exc.value.exit_code == 78 and "\n" not in msg
        assert "ring.slots" in msg and "of memory available" in msg and "camera 'cam0'" in msg
        assert src._shm is None                         # no shared memory was made
    finally:
        src.stop()


_BREAK_STREAM = '''
import os

from inspectd.runtime.sources import genicam as _g

_grab = _g.GenICamSource.grab
_marker = os.environ["INSPECTD_TEST_BREAK_MARKER"]


def grab(self):
    g = _grab(self)
    if self._frames == 15 and not os.path.exists(_marker):
        open(_marker, "w").close()            # only the first acquisition process breaks
        # The stream's new-buffer event goes away under harvesters: the producer's next fetch
        # fails with a real GenTL error (-1006), as with a device whose stream was torn down.
        for monitor in self._ia._new_buffer_event_monitor_dict.values():
            monitor.unregister_event()
    return g


_g.GenICamSource.grab = grab
'''


def test_a_stream_that_fails_with_an_exception_is_reported_and_reconnected(tmp_path, monkeypatch, capfd):
    """In the acquisition process, the real producer's fetch raises (a GenTL error) after 15
    frames: the child reports it as one line, the strip after the last frame is published as
    uninspected, and a fresh process takes over."""
    (tmp_path / "sitecustomize.py").write_text(_BREAK_STREAM)
    marker = tmp_path / "broken"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("INSPECTD_TEST_BREAK_MARKER", str(marker))
    with running(_silent_cfg(reconnect_after_s=0.5, reconnect_attempts=2)) as run:
        pipe, tap = run.pipe, run.tap
        first_pid = pipe.source.pid
        assert tap.wait(lambda tp: marker.exists() and pipe.source.pid not in (None, first_pid), 30)
        n = len(tap.kind("verdict"))
        assert tap.wait(lambda tp: len(tp.kind("verdict")) >= n + 10, 30)   # frames again
    r = run.join()
    assert r.exit_code == 0, r.error
    assert not alive(first_pid)
    silent, before, after = silent_stretches(tap)
    assert silent, [m["reason"] for m in tap.kind("uninspected")]
    assert len(before) >= 14 and silent[0]["first_frame"] == before[-1]["frame"] + 1
    assert after
    c = r.counters
    assert c["captured"] == c["inspected"] + c["uninspected"]
    assert tap.kind("status")[-1]["counters"]["acquisition"]["reconnects"] >= 1
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    # The child's error, as the parent logs it: one line, with the producer's own message.
    failed = [ln for ln in out.splitlines() + err.splitlines() if "camera_failed" in ln]
    assert len(failed) == 1 and "acquisition failed" in failed[0] and "GenTL exception" in failed[0]
