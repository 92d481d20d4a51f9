"""The acquisition counters both feeding threads share (``runtime/acquisition_counters.py``):
exact under concurrent writers, and the status fields under their documented names. A real
video file drives ``AcquisitionThread``; the camera process's side is in test_camera_process."""
from __future__ import annotations

import threading

from stand_ins import write_video

from inspectd.runtime.acquisition import AcquisitionThread
from inspectd.runtime.acquisition_counters import AcquisitionCounters
from inspectd.runtime.ringbuffer import OverflowPolicy, RingBuffer
from inspectd.runtime.sources.video import VideoSource

FIELDS = ["frames_read", "frames_put", "frames_lost", "frames_corrupt", "timeouts", "last_frame_ns"]


def test_counts_are_exact_with_a_concurrent_reader():
    c = AcquisitionCounters()
    assert c.snapshot().status() == dict.fromkeys(FIELDS[:-1], 0) | {"last_frame_ns": None}
    assert c.last_frame_ns is None
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:              # a status tick, reading while the writer counts
        while not stop.is_set():
            s = c.snapshot()
            assert s.frames_put <= s.frames_read
            seen.append(s.frames_read)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20_000):
            c.frame(capture_ns=i, put=i % 4 != 0)
            if i % 10 == 0:
                c.timeout()
                c.lost(2)
            if i % 100 == 0:
                assert c.corrupt(3) == 3 * (i // 100 + 1)
    finally:
        stop.set()
        reader.join()
    assert seen == sorted(seen)
    assert c.snapshot().status() == {"frames_read": 20_000, "frames_put": 15_000, "frames_lost": 4_000,
                                     "frames_corrupt": 600, "timeouts": 2_000, "last_frame_ns": 19_999}
    assert c.last_frame_ns == 19_999


def test_the_acquisition_thread_reports_them_under_the_status_names(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 12, size=(64, 48))
    src = VideoSource(video, "cam0", channels=1)
    ring = RingBuffer(2, OverflowPolicy.drop_newest, shape=src.frame_shape)
    acq = AcquisitionThread(src, ring, threading.Event())
    acq.start()
    acq.join(timeout=30)
    assert acq.error is None and acq.ended
    stats = acq.stats()
    assert list(stats) == [*FIELDS, "source"]
    c = ring.counters()
    assert stats["frames_read"] == 12 == c.captured and stats["frames_put"] == 12 - c.dropped
    assert stats["frames_lost"] == stats["frames_corrupt"] == stats["timeouts"] == 0
    assert isinstance(stats["last_frame_ns"], int) and stats["source"]["frames_corrupt"] == 0
