"""The service's pipeline, in process: real video files, ring buffer, publisher and threads.

The backend is the thresholding stand-in from stand_ins.py (its speed is under the test's
control); everything else is the product code.
"""
from __future__ import annotations

import threading

import pytest

from inspectd.config import default_config
from inspectd.errors import InspectdError
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.ringbuffer import OverflowPolicy
from stand_ins import FailingBackend, ThresholdBackend, write_video


class Collect:
    """A publisher tap that keeps every message, by kind."""

    def __init__(self):
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, topic, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def kind(self, kind: str) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if m["kind"] == kind]

    def wait_verdicts(self, n: int, timeout: float = 60) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: sum(m["kind"] == "verdict" for m in self.messages) >= n, timeout)


def _cfg(video, policy=OverflowPolicy.block, **service):
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.ring.policy = policy
    cfg.ring.slots = 4
    cfg.bus.heartbeat_interval_s = 0.2
    for k, v in service.items():
        setattr(cfg.service, k, v)
    return cfg


def _uninspected_frames(tap: Collect) -> list[int]:
    out = []
    for m in tap.kind("uninspected"):
        out.extend(range(m["first_frame"], m["last_frame"] + 1))
    return out


def test_every_frame_one_verdict_in_order(tmp_path):
    video = tmp_path / "r.avi"
    truth = write_video(video, 40, defect_every=7)
    tap = Collect()
    result = Pipeline(_cfg(video), backend=ThresholdBackend(), tap=tap, handle_signals=False).run()
    assert result.exit_code == 0 and result.reason == "end-of-stream"
    verdicts = tap.kind("verdict")
    assert [v["frame"] for v in verdicts] == list(range(40))
    assert [v["status"] == "reject" for v in verdicts] == truth
    assert all(d["class"] == "inclusion" for v in verdicts for d in v["defects"])
    seqs = [m["seq"] for m in tap.messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    c = result.counters
    assert c["captured"] == c["inspected"] == 40 and c["uninspected"] == 0
    assert c["rejects"] == sum(truth) and c["rejects_by_class"] == {"inclusion": sum(truth)}
    assert tap.kind("status")[-1]["counters"]["inspected"] == 40     # final status on the bus


def test_stop_finishes_in_flight_and_reports_the_rest(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 200)
    tap = Collect()
    backend = ThresholdBackend(delay_s=0.02)
    pipe = Pipeline(_cfg(video, shutdown_queued="report"), backend=backend, tap=tap, handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    assert tap.wait_verdicts(10)
    pipe.request_stop()
    runner.join(60)
    assert not runner.is_alive()
    r = pipe.result
    assert r.exit_code == 0 and r.reason == "signal"
    c = r.counters
    verdict_frames = [v["frame"] for v in tap.kind("verdict")]
    lost = _uninspected_frames(tap)
    assert len(verdict_frames) == c["inspected"] >= 10
    assert verdict_frames == list(range(len(verdict_frames)))          # in order, none skipped
    assert c["captured"] == c["inspected"] + c["uninspected"] < 200     # it did stop early
    assert sorted(verdict_frames + lost) == list(range(c["captured"]))  # every frame accounted once
    assert set(c["uninspected_by_reason"]) <= {"shutdown"}
    assert backend.closed


def test_stop_inspects_queued_frames_within_grace(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 200)
    tap = Collect()
    pipe = Pipeline(_cfg(video, shutdown_queued="inspect", shutdown_grace_s=60.0),
                    backend=ThresholdBackend(delay_s=0.01), tap=tap, handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    assert tap.wait_verdicts(5)
    pipe.request_stop()
    runner.join(60)
    c = pipe.result.counters
    assert pipe.result.exit_code == 0
    # Nothing queued was given up. At most the one frame that the source was still waiting
    # to put into the full ring when stop came is reported uninspected (it never got a slot).
    assert c["inspected"] == len(tap.kind("verdict"))
    assert c["uninspected"] <= 1 and c["captured"] == c["inspected"] + c["uninspected"]
    assert [v["frame"] for v in tap.kind("verdict")] == list(range(c["inspected"]))


def test_overflow_is_reported_not_silent(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 60)
    tap = Collect()
    cfg = _cfg(video, policy=OverflowPolicy.drop_oldest)
    cfg.ring.slots = 2
    result = Pipeline(cfg, backend=ThresholdBackend(delay_s=0.03), tap=tap, handle_signals=False).run()
    c = result.counters
    assert result.exit_code == 0
    assert c["uninspected"] > 0 and c["uninspected_by_reason"].get("overflow") == c["uninspected"]
    verdict_frames = [v["frame"] for v in tap.kind("verdict")]
    assert sorted(verdict_frames + _uninspected_frames(tap)) == list(range(60))


def test_fatal_stage_error_stops_cleanly_non_zero(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 100)
    tap = Collect()
    result = Pipeline(_cfg(video), backend=FailingBackend(6), tap=tap, handle_signals=False, self_test=False).run()
    assert result.exit_code == 1 and result.reason == "error"
    assert isinstance(result.error, RuntimeError)
    c = result.counters
    assert c["inspected"] == 5 == len(tap.kind("verdict"))
    assert c["captured"] == c["inspected"] + c["uninspected"]
    assert "error" in c["uninspected_by_reason"]      # the frame it failed on, at least


def test_bad_input_fails_before_anything_starts(tmp_path):
    cfg = default_config()
    cfg.source.path = str(tmp_path / "missing.avi")
    before = threading.active_count()
    with pytest.raises(InspectdError, match="missing.avi"):
        Pipeline(cfg, backend=ThresholdBackend(), handle_signals=False)
    assert threading.active_count() == before
    video = tmp_path / "r.avi"
    write_video(video, 3)
    cfg.source.path = str(video)
    backend = ThresholdBackend()
    with pytest.raises(InspectdError, match="must end in .mp4 or .avi"):
        Pipeline(cfg, backend=backend, annotate_path=str(tmp_path / "x.gif"), handle_signals=False)
    assert threading.active_count() == before


class _StuckSource:
    """A camera whose driver never returns once the line is stopped (read() ignores stop)."""

    camera = "cam0"
    nominal_fps = None
    frame_shape = (200, 200)
    live = True
    position = None

    def __init__(self, frames: int):
        self.frames = frames
        self.index = 0
        self.forever = threading.Event()

    def start(self):
        pass

    def read(self):
        import time as _t

        import numpy as np

        from inspectd.runtime.frame import Frame
        if self.index >= self.frames:
            self.forever.wait()        # never set
        self.index += 1
        return Frame(index=self.index - 1, image=np.full((200, 200), 90, np.uint8), camera="cam0",
                     capture_ns=_t.monotonic_ns(), capture_wall_ns=_t.time_ns())

    def stop(self):
        pass

    def stats(self):
        return {"frames": self.index}


def test_stuck_source_does_not_hang_shutdown(tmp_path, monkeypatch):
    import inspectd.runtime.pipeline as pipeline_mod
    monkeypatch.setattr(pipeline_mod, "_SOURCE_STOP_S", 0.5)
    cfg = default_config()
    cfg.source.path = "unused"
    cfg.service.shutdown_grace_s = 0.2
    tap = Collect()
    pipe = Pipeline(cfg, source=_StuckSource(5), backend=ThresholdBackend(), tap=tap, handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    assert tap.wait_verdicts(5)
    pipe.request_stop()
    runner.join(60)
    assert not runner.is_alive()
    c = pipe.result.counters
    assert pipe.result.exit_code == 0 and c["inspected"] == 5 and c["captured"] == 5


def test_a_model_call_that_never_returns_does_not_hang_the_stop(tmp_path, monkeypatch):
    # A wedged runtime or GPU: the model stops returning while frames are in flight and queued.
    # The stop must still end, non-zero, with every frame accounted, and the backend must not be
    # closed under the call that is still inside it.
    import inspectd.runtime.inference as inference_mod
    monkeypatch.setattr(inference_mod, "STUCK_AFTER_S", 0.5)
    video = tmp_path / "r.avi"
    write_video(video, 200)
    backend = ThresholdBackend(delay_s=0.005)
    stalled = threading.Event()

    def tap(topic, msg):
        collect(topic, msg)
        if msg["kind"] == "verdict" and msg["frame"] == 5:
            backend.gate = stalled          # every model call from now on waits, forever
    collect = Collect()
    pipe = Pipeline(_cfg(video, shutdown_queued="inspect", shutdown_grace_s=0.3), backend=backend, tap=tap,
                    handle_signals=False)
    runner = threading.Thread(target=lambda: setattr(pipe, "result", pipe.run()))
    runner.start()
    try:
        assert collect.wait_verdicts(6)
        pipe.request_stop()
        runner.join(60)
        assert not runner.is_alive()
    finally:
        stalled.set()                       # let the stuck thread go once the test has its answer
    r = pipe.result
    assert r.exit_code == 1 and r.reason == "error" and "did not return" in str(r.error)
    c = r.counters
    verdict_frames = [v["frame"] for v in collect.kind("verdict")]
    assert verdict_frames == list(range(len(verdict_frames))) and len(verdict_frames) == c["inspected"]
    assert sorted(verdict_frames + _uninspected_frames(collect)) == list(range(c["captured"]))
    assert c["uninspected"] >= 1 and c["queued"] == 0 and c["in_flight"] == 0
    assert not backend.closed


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_publisher_stops_the_service_non_zero(tmp_path, monkeypatch):
    # If the thread that owns the socket dies, verdicts no longer leave the process: the
    # service must stop with an error (systemd restarts it), not inspect into the void.
    from inspectd.bus.messages import EventEncoder

    video = tmp_path / "r.avi"
    write_video(video, 400)
    calls = {"n": 0}
    real = EventEncoder.verdict_wire

    def verdict_then_crash(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("encoder bug")
        return real(self, *a, **kw)

    monkeypatch.setattr(EventEncoder, "verdict_wire", verdict_then_crash)
    result = Pipeline(_cfg(video), backend=ThresholdBackend(delay_s=0.01), handle_signals=False).run()
    assert result.exit_code == 1 and result.reason == "error"
    assert isinstance(result.error, RuntimeError) and "encoder bug" in str(result.error)
    assert result.counters["inspected"] < 400


def test_an_error_while_shutting_down_is_the_stop_reason_in_the_log_too(tmp_path):
    """The last verdicts are written while the pipeline closes (end of stream): a failure there
    (a full disk under ``replay --out``) makes the stop an error, in the result and in the
    ``pipeline_stopped`` log line alike."""
    import structlog

    video = tmp_path / "r.avi"
    write_video(video, 12)
    holder: dict = {}

    def tap(topic, msg):
        if msg["kind"] == "verdict" and msg["frame"] == 11:
            p = holder["pipeline"]
            for _ in range(500):                 # hold the last verdict until shutdown has begun
                if p._shutting_down:
                    break
                threading.Event().wait(0.01)
            assert p._shutting_down
            p.fail("out", OSError(28, "No space left on device"))

    with structlog.testing.capture_logs() as logs:
        pipeline = holder["pipeline"] = Pipeline(_cfg(video), backend=ThresholdBackend(), tap=tap,
                                                 handle_signals=False)
        result = pipeline.run()
    assert result.exit_code == 1 and result.reason == "error"
    started = [e for e in logs if e["event"] == "shutdown_started"]
    stopped = [e for e in logs if e["event"] == "pipeline_stopped"]
    assert started and started[0]["reason"] == "end-of-stream"      # it began as a clean end...
    assert len(stopped) == 1 and stopped[0]["reason"] == "error"     # ...and ended failed
    assert [e["stage"] for e in logs if e["event"] == "pipeline_failed"] == ["out"]
