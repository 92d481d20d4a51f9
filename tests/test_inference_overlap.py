"""Frames in flight (``inference.in_flight``): the model runs on frame i + 1 while frame i is
decoded, merged and published, without changing any verdict and without holding a frame back
to wait for its successor.

What is checked is the order of events, not their speed: how many verdicts the pipeline had
counted when each frame was handed to the model. Strictly serial inspection hands frame k over
after verdict k - 1; overlapped inspection hands it over while frame k - 1 is still being
finished. Speed itself is measured by ``inspectd bench`` (BENCHMARKS.md).
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from inspectd.config import default_config
from inspectd.runtime.frame import Frame
from inspectd.runtime.inference import InferenceConfig, InferenceStage
from inspectd.runtime.merge import MergeConfig
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.ringbuffer import OverflowPolicy
from stand_ins import FailingBackend, ThresholdBackend, write_video


class RecordingBackend(ThresholdBackend):
    """Records, at the start of each call, the verdicts the pipeline had counted."""

    def __init__(self, wait_for_frames: int = 0, **kw):
        super().__init__(**kw)
        self.pipeline: Pipeline | None = None
        self.counted_at_start: list[int] = []
        self.threads: set[str] = set()
        self.wait_for_frames = wait_for_frames

    def infer(self, tiles):
        if not self.counted_at_start and self.wait_for_frames:
            # Let the whole recording reach the ring first: every later frame then has its
            # successor queued, on however loaded a machine.
            deadline = time.monotonic() + 30
            while self.pipeline.ring.counters().captured < self.wait_for_frames and time.monotonic() < deadline:
                time.sleep(0.005)
        self.counted_at_start.append(self.pipeline.tally.verdicts)
        self.threads.add(threading.current_thread().name)
        return super().infer(tiles)


def _run(tmp_path, in_flight: int, *, fps: float | None = None, delay_s: float = 0.01, frames: int = 40,
         backlog: bool = False):
    video = tmp_path / "r.avi"
    truth = write_video(video, frames, fps=fps or 25.0, defect_every=5)
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.ring.policy = OverflowPolicy.block
    cfg.ring.slots = frames + 2 if backlog else 6
    cfg.inference.in_flight = in_flight
    cfg.bus.heartbeat_interval_s = 0.2
    backend = RecordingBackend(delay_s=delay_s, wait_for_frames=frames if backlog else 0)
    verdicts: list[dict] = []
    pipe = Pipeline(cfg, backend=backend, realtime=fps is not None, handle_signals=False, self_test=False,
                    tap=lambda topic, m: verdicts.append(m) if m["kind"] == "verdict" else None)
    backend.pipeline = pipe
    # A spy on the stage: how many verdicts were counted when each frame was handed to the model.
    counted_at_begin: list[int] = []
    real_begin = pipe.stage.begin

    def begin(frame):
        counted_at_begin.append(pipe.tally.verdicts)
        return real_begin(frame)

    pipe.stage.begin = begin
    backend.counted_at_begin = counted_at_begin
    result = pipe.run()
    assert result.exit_code == 0, result.error
    return backend, verdicts, truth, result.counters


def test_serial_inspection_starts_each_frame_after_the_previous_verdict(tmp_path):
    backend, verdicts, truth, c = _run(tmp_path, in_flight=1)
    assert backend.counted_at_start == list(range(40))
    assert backend.counted_at_begin == list(range(40))
    assert backend.threads == {"inference"}          # no model thread at all
    assert [v["frame"] for v in verdicts] == list(range(40))


def test_model_works_on_the_next_frame_while_the_previous_is_finished(tmp_path):
    # The whole recording is queued before the first call, so the next frame is always there:
    # frame k must be handed to the model before verdict k - 1 is counted (the model then never
    # waits for the post-processing), and never more than 2 frames are with it.
    backend, verdicts, truth, c = _run(tmp_path, in_flight=2, backlog=True)
    # (Frame 1 may not be queued yet when frame 0 is begun: the backlog is built during call 0.)
    assert backend.counted_at_begin[2:] == list(range(1, 39)), backend.counted_at_begin
    starts = backend.counted_at_start
    assert len(starts) == 40 and all(k - 1 <= starts[k] <= k for k in range(1, 40)), starts
    assert backend.threads == {"model"}
    # Same verdicts, same order, nothing lost.
    assert [v["frame"] for v in verdicts] == list(range(40))
    assert [v["status"] == "reject" for v in verdicts] == truth
    assert c["captured"] == c["inspected"] == 40 and c["uninspected"] == 0


def test_a_frame_never_waits_for_its_successor(tmp_path):
    # Frames arrive every 40 ms and take about 5 ms: each must be finished before the next
    # one arrives, not held until then to overlap with it.
    backend, verdicts, truth, c = _run(tmp_path, in_flight=2, fps=25.0, delay_s=0.005, frames=15)
    assert backend.counted_at_begin == list(range(15))
    assert backend.counted_at_start == list(range(15))
    assert [v["status"] == "reject" for v in verdicts] == truth


def test_model_error_with_frames_in_flight_loses_no_frame(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 60)
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.ring.policy = OverflowPolicy.block
    cfg.inference.in_flight = 2
    cfg.bus.heartbeat_interval_s = 0.2
    got: list[dict] = []
    result = Pipeline(cfg, backend=FailingBackend(8, delay_s=0.005), handle_signals=False, self_test=False,
                      tap=lambda topic, m: got.append(m)).run()
    assert result.exit_code == 1 and isinstance(result.error, RuntimeError)
    c = result.counters
    assert c["inspected"] == 7                       # the frames before the failing call
    assert c["captured"] == c["inspected"] + c["uninspected"]
    seen = [m["frame"] for m in got if m["kind"] == "verdict"]
    for m in got:
        if m["kind"] == "uninspected":
            seen.extend(range(m["first_frame"], m["last_frame"] + 1))
    assert sorted(seen) == list(range(c["captured"]))   # every captured frame: a verdict or uninspected


def _frames(n: int) -> list[Frame]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        img = rng.integers(80, 120, (200, 200), dtype=np.uint8)
        if i % 3 == 0:
            img[40 + i:70 + i, 60:90] = 250
        out.append(Frame(index=i, image=img, camera="c", capture_ns=time.monotonic_ns(),
                         capture_wall_ns=time.time_ns()))
    return out


def test_stage_halves_give_the_same_verdicts_as_one_call():
    frames = _frames(9)
    serial = InferenceStage(ThresholdBackend(), InferenceConfig(in_flight=1), MergeConfig())
    paired = InferenceStage(ThresholdBackend(), InferenceConfig(in_flight=2), MergeConfig())
    want = [serial.process(f) for f in frames]
    got = []
    jobs = [paired.begin(frames[0])]
    for f in frames[1:]:
        jobs.append(paired.begin(f))        # the model has the next batch before we finish
        got.append(paired.finish(jobs.pop(0))[0])
    got.append(paired.finish(jobs.pop(0))[0])
    assert [v.status for v in got] == [v.status for v in want]
    for a, b in zip(got, want):
        assert [(d.cls, d.box, d.area_px) for d in a.defects] == [(d.cls, d.box, d.area_px) for d in b.defects]
    serial.close()
    paired.close()


def test_stage_refuses_misuse_and_reports_model_errors_at_finish():
    stage = InferenceStage(FailingBackend(2), InferenceConfig(in_flight=2), MergeConfig())
    f = _frames(3)
    j0 = stage.begin(f[0])
    j1 = stage.begin(f[1])
    with pytest.raises(RuntimeError, match="already in flight"):
        stage.begin(f[2])
    with pytest.raises(RuntimeError, match="order"):
        stage.finish(j1)
    assert stage.finish(j0)[0].status == "reject"          # frame 0 has the bright square
    with pytest.raises(RuntimeError, match="device lost"):   # raised where the caller looks
        stage.finish(j1)
    assert stage.pending == 0
    stage.close()


class ReusedBuffersBackend(ThresholdBackend):
    """Returns views of output buffers it rotates through, as the CUDA backend does with its
    pinned host buffers: an output is overwritten ``output_generations`` calls later."""

    def __init__(self, generations: int, hold_s: float = 0.01):
        super().__init__()
        self.output_generations = generations
        self.hold_s = hold_s
        self._bufs: list = [None] * generations
        self._turn = 0

    def infer(self, tiles):
        # Write the outputs first, then take the call's time: the model thread starts the
        # next frame's call the moment this one returns, so with one buffer set the next
        # frame's outputs land while the stage is still reading these.
        det, seg = super().infer(tiles)
        k = self._turn % self.output_generations
        self._turn += 1
        if self._bufs[k] is None or self._bufs[k][0].shape != det.shape:
            self._bufs[k] = (np.empty_like(det), np.empty_like(seg))
        self._bufs[k][0][...] = det
        self._bufs[k][1][...] = seg
        time.sleep(self.hold_s)
        return self._bufs[k]


@pytest.mark.parametrize("generations", [1, 2])
def test_outputs_in_reused_buffers_are_not_overwritten_by_the_next_frame(generations):
    # Frames alternate defect / clean. With one buffer set and two frames in flight the model
    # would write frame i + 1's outputs over frame i's while frame i is read; the stage copies.
    frames = _frames(8)
    want = [InferenceStage(ThresholdBackend(), InferenceConfig(in_flight=1), MergeConfig()).process(f).status
            for f in frames]
    assert "ok" in want and "reject" in want
    backend = ReusedBuffersBackend(generations)
    stage = InferenceStage(backend, InferenceConfig(in_flight=2), MergeConfig())
    got = []
    stage.begin(frames[0])
    for f in frames[1:]:
        stage.begin(f)
        got.append(stage.finish(stage.oldest)[0].status)
    got.append(stage.finish(stage.oldest)[0].status)
    stage.close()
    assert got == want
