"""The status counters keep the documented identity (docs/events.md, status) when the camera
skips frames: captured == inspected + uninspected + queued + in_flight, with captured counting
every frame of the source, also those the camera lost before they reached the ring."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from stand_ins import ThresholdBackend, write_video

from inspectd.config import default_config
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.ringbuffer import OverflowPolicy
from inspectd.runtime.sources.video import VideoSource


class SkippingCamera:
    """A real recording read as a camera that loses every ``every``-th frame: the frames it
    delivers keep their indices, so the acquisition thread sees the gaps, as with a camera's
    frame-id gaps."""

    live = True

    def __init__(self, path, every: int):
        self._src = VideoSource(str(path), "cam0", 1, False, None, None)
        self.every = every
        self.skipped: list[int] = []

    def __getattr__(self, name):
        return getattr(self._src, name)

    def __setattr__(self, name, value):
        if name == "position":
            setattr(self._src, name, value)
        else:
            super().__setattr__(name, value)

    def read(self):
        frame = self._src.read()
        while frame is not None and frame.index % self.every == self.every - 1:
            self.skipped.append(frame.index)
            frame = self._src.read()
        return frame


def test_identity_holds_when_the_camera_skips_frames(tmp_path):
    video = tmp_path / "r.avi"
    write_video(video, 60, size=(200, 200))
    cfg = default_config()
    cfg.ring.slots = 3
    cfg.ring.policy = OverflowPolicy.drop_newest            # the ring loses frames too
    cfg.service.status_interval_s = 0.05
    cfg.bus.publish = None
    statuses: list[dict] = []
    lock = threading.Lock()

    def tap(topic, msg):
        if msg["kind"] == "status":
            with lock:
                statuses.append(msg["counters"])

    camera = SkippingCamera(video, every=7)     # loses 6, 13, ..., 55: each gap shows at the next frame
    result = Pipeline(cfg, source=camera, backend=ThresholdBackend(delay_s=0.01), tap=tap, realtime=True,
                      handle_signals=False).run()
    assert result.exit_code == 0, result.error
    final = statuses[-1]
    assert final["inspected"] == result.counters["inspected"]
    # every frame of the source, once: inspected, or uninspected for one reason
    assert final["captured"] == 60
    assert final["uninspected_by_reason"].get("camera_lost") == len(camera.skipped) == 8
    assert final["captured"] == final["inspected"] + final["uninspected"] + final["queued"] + final["in_flight"]
    assert final["uninspected"] == sum(final["uninspected_by_reason"].values())
    # While it ran, each status was off by no more than the frames being handed over between
    # the ring and the counters at that instant (at most a ring's and a model's worth).
    for c in statuses:
        off = c["captured"] - (c["inspected"] + c["uninspected"] + c["queued"] + c["in_flight"])
        assert abs(off) <= cfg.ring.slots + cfg.inference.in_flight, c


def _viky():
    try:
        import genicam
    except ImportError:
        return None
    cti = Path(genicam.__file__).with_name("viky.cti")
    return cti if cti.is_file() else None


@pytest.mark.skipif(_viky() is None, reason="viky.cti is not installed")
def test_identity_holds_with_the_simulated_camera_skipping_frames():
    """The simulated GenICam camera at 200 frames/s, few buffers, and a model that takes 40 ms
    under the `block` policy: the camera skips frames (frame-id gaps), and the status counts them."""
    cfg = default_config()
    cfg.source.kind = "genicam"
    g = cfg.source.genicam
    g.cti, g.serial, g.width, g.height, g.frame_rate, g.buffers = [str(_viky())], "1", 200, 200, 200.0, 3
    cfg.ring.slots = 2
    cfg.ring.policy = OverflowPolicy.block
    cfg.service.status_interval_s = 0.1
    cfg.bus.publish = None
    statuses: list[dict] = []

    def tap(topic, msg):
        if msg["kind"] == "status":
            statuses.append(msg["counters"])

    pipe = Pipeline(cfg, backend=ThresholdBackend(delay_s=0.04), tap=tap, handle_signals=False, self_test=False)
    stopper = threading.Timer(2.5, pipe.request_stop)
    stopper.start()
    try:
        result = pipe.run()
    finally:
        stopper.cancel()
    assert result.exit_code == 0, result.error
    final = statuses[-1]
    assert final["uninspected_by_reason"].get("camera_lost", 0) > 0, final    # the camera did skip
    assert final["captured"] == final["inspected"] + final["uninspected"] + final["queued"] + final["in_flight"]
    assert final["queued"] == final["in_flight"] == 0
