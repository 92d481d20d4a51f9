"""Damaged frames are published as uninspected (reason ``corrupt``), never inspected as if whole.

Real recordings damaged in the test: an MJPEG AVI with bytes of one frame overwritten, the
same file cut in the middle of a frame, a folder with a truncated JPEG. Each goes through the
real pipeline (source, acquisition thread, ring, publisher); the model is the thresholding
stand-in, so that which frames got verdicts is all that is judged.
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from stand_ins import ThresholdBackend, write_video

from inspectd.config import default_config
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.ringbuffer import OverflowPolicy
from inspectd.runtime.sources import CorruptFrames
from inspectd.runtime.sources.jpeg_check import jpeg_damage
from inspectd.runtime.sources.video import VideoSource

N = 40


def _jpeg_starts(data: bytes) -> list[int]:
    """Offsets of the frames' JPEG start markers in an MJPEG AVI (0xFFD8 occurs nowhere else)."""
    out, i = [], data.find(b"\xff\xd8\xff")
    while i >= 0:
        out.append(i)
        i = data.find(b"\xff\xd8\xff", i + 1)
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    clean = d / "clean.avi"
    write_video(clean, N, size=(320, 240), defect_every=4)
    data = clean.read_bytes()
    starts = _jpeg_starts(data)
    assert len(starts) == N
    # Frame 10: 300 bytes in the middle of its image data overwritten (seeded noise).
    hit = bytearray(data)
    mid = (starts[10] + starts[11]) // 2
    hit[mid:mid + 300] = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
    overwritten = d / "overwritten.avi"
    overwritten.write_bytes(bytes(hit))
    # The file cut in the middle of frame 30: the rest of the recording never arrives.
    cut = d / "cut.avi"
    cut.write_bytes(data[:(starts[30] + starts[31]) // 2])
    return {"clean": clean, "overwritten": overwritten, "cut": cut}


def _plain_opencv_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _read(path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    src = VideoSource(path, "cam0")
    good, bad = [], []
    src.start()
    while True:
        try:
            f = src.read()
        except CorruptFrames as e:
            bad.append((e.index, e.count))
            continue
        if f is None:
            break
        good.append(f.index)
    src.stop()
    return good, bad


def test_an_overwritten_mjpeg_frame_is_corrupt(videos):
    # OpenCV's FFmpeg path returns all 40 frames, the damaged one concealed.
    assert _plain_opencv_frames(videos["overwritten"]) == N
    good, bad = _read(videos["overwritten"])
    assert bad == [(10, 1)] and good == [i for i in range(N) if i != 10]
    assert _read(videos["clean"]) == (list(range(N)), [])


def test_a_recording_cut_mid_frame_reports_the_cut_frame_and_everything_after(videos):
    assert _plain_opencv_frames(videos["cut"]) == 31        # 0..29 whole, 30 half (grey-filled)
    good, bad = _read(videos["cut"])
    assert good == list(range(30))
    assert bad == [(30, 1), (31, N - 31)]                   # the half frame, then the frames never read


class Collect:
    def __init__(self):
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, topic, msg):
        with self.lock:
            self.messages.append(msg)


def _run(path: Path, kind: str = "video"):
    cfg = default_config()
    cfg.source.kind, cfg.source.path = kind, str(path)
    cfg.ring.policy = OverflowPolicy.block
    tap = Collect()
    result = Pipeline(cfg, backend=ThresholdBackend(), tap=tap, handle_signals=False).run()
    verdicts = [m["frame"] for m in tap.messages if m["kind"] == "verdict"]
    corrupt = [i for m in tap.messages if m["kind"] == "uninspected" and m["reason"] == "corrupt"
               for i in range(m["first_frame"], m["last_frame"] + 1)]
    return result, verdicts, corrupt


@pytest.mark.parametrize("name, damaged", [("overwritten", [10]), ("cut", list(range(30, N)))])
def test_the_pipeline_publishes_damaged_frames_as_uninspected(videos, name, damaged):
    result, verdicts, corrupt = _run(videos[name])
    assert result.exit_code == 0 and result.reason == "end-of-stream"
    assert corrupt == damaged                                   # published, in order
    assert sorted(verdicts + corrupt) == list(range(N))         # every frame: one verdict or uninspected
    assert not set(verdicts) & set(damaged)                     # never inspected as if whole
    c = result.counters
    assert c["uninspected_by_reason"] == {"corrupt": len(damaged)}
    assert c["captured"] == c["inspected"] + c["uninspected"] == N


def test_a_truncated_jpeg_in_a_folder_is_uninspected(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.clip(rng.normal(100, 10, (200, 200)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"f{i}.jpg"), img)
    data = (folder / "f3.jpg").read_bytes()
    (folder / "f3.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(folder / "f3.jpg")) is not None          # OpenCV alone: an image, grey below
    assert jpeg_damage((folder / "f3.jpg").read_bytes()).startswith("truncated")
    result, verdicts, corrupt = _run(folder, kind="folder")
    assert corrupt == [3] and verdicts == [0, 1, 2, 4, 5]
    assert result.counters["uninspected_by_reason"] == {"corrupt": 1}
