"""Video-file and image-folder sources, on real files written with OpenCV, and the acquisition
thread driving them into the ring buffer."""
from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspectd.configtools import ConfigError, from_mapping
from inspectd.errors import InspectdError
from inspectd.runtime.acquisition import AcquisitionThread
from inspectd.runtime.ringbuffer import OverflowPolicy, RingBuffer
from inspectd.runtime.sources import SourceConfig, open_source
from inspectd.runtime.sources.folder import FolderSource
from inspectd.runtime.sources.video import VideoSource

H, W, N = 48, 64, 30
ROOT = Path(__file__).resolve().parents[1]


def bgr(i: int) -> np.ndarray:
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = i * 8, 100, 200     # B encodes the frame number
    return img


def write_video(path: Path, n: int = N, fps: float = 25.0) -> Path:
    # FFV1 is lossless, so the pixels read back can be compared exactly.
    w = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), fps, (W, H),
                        [cv2.VIDEOWRITER_PROP_IS_COLOR, 1])
    assert w.isOpened()
    for i in range(n):
        w.write(bgr(i))
    w.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mkv")


def read_all(src) -> list:
    out = []
    src.start()
    try:
        while (f := src.read()) is not None:
            out.append((f.index, f.image.copy(), f.strip_position_m))
            assert len(out) < 10_000
    finally:
        src.stop()
    return out


# -- video -----------------------------------------------------------------------------
def test_video_colour_frames_in_order(video):
    src = VideoSource(video, "cam0", channels=3, position=lambda i: 0.25 * i)
    assert src.frame_shape == (H, W, 3) and src.nominal_fps == pytest.approx(25.0) and not src.live
    frames = read_all(src)
    assert [i for i, _, _ in frames] == list(range(N))
    for i, img, pos in frames:
        assert img.shape == (H, W, 3)
        np.testing.assert_array_equal(img, bgr(i))
        assert pos == pytest.approx(0.25 * i)
    assert src.stats()["frames"] == N


def test_video_mono8(video):
    src = VideoSource(video, "cam0", channels=1)
    assert src.frame_shape == (H, W)
    frames = read_all(src)
    assert len(frames) == N
    for i, img, pos in frames:
        assert img.shape == (H, W) and img.dtype == np.uint8 and pos is None
        want = cv2.cvtColor(bgr(i), cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(img, want)


def test_video_loop_keeps_counting(video):
    src = VideoSource(video, "cam0", channels=1, loop=True)
    src.start()
    got = [src.read() for _ in range(N + 5)]
    src.stop()
    assert [f.index for f in got] == list(range(N + 5))
    assert src.stats()["passes"] == 1


def test_video_loop_repeats_pixels(video):
    src = VideoSource(video, "cam0", channels=3, loop=True)
    src.start()
    imgs = [src.read().image.copy() for _ in range(N + 3)]
    src.stop()
    for k in range(3):
        np.testing.assert_array_equal(imgs[N + k], bgr(k))


def test_video_missing(tmp_path):
    with pytest.raises(InspectdError, match=r"^video file .*nope\.mkv: not found$"):
        VideoSource(tmp_path / "nope.mkv", "cam0")


def test_video_not_a_video(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InspectdError, match=r"^video file .*bad\.avi: cannot be opened"):
        VideoSource(bad, "cam0")


def test_video_truncated_is_reported_at_its_end(video, tmp_path):
    """The frames a truncated file cannot deliver are reported (CorruptFrames), not forgotten."""
    from inspectd.runtime.sources import CorruptFrames
    cut = tmp_path / "cut.mkv"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    src = VideoSource(cut, "cam0")            # opens: the header is intact
    src.start()
    n = 0
    with pytest.raises(CorruptFrames, match=rf"^frames \d+\.\.{N - 1}: video file .*cut\.mkv: ends after \d+ of "
                                            rf"the {N} frames") as bad:
        while src.read() is not None:
            n += 1
    assert 0 < n < N and bad.value.index == n and bad.value.count == N - n
    assert src.read() is None                 # and then the end
    src.stop()


def test_open_source_dispatch_and_config(video, tmp_path):
    cfg = from_mapping(SourceConfig, {"kind": "video", "path": str(video), "channels": 1, "fps": 10}, "c.yaml", "source")
    src = open_source(cfg, "camA")
    assert isinstance(src, VideoSource) and src.camera == "camA" and src.nominal_fps == 10
    src.stop()
    with pytest.raises(ConfigError, match=r"c.yaml: source.channels: must be 1 \(Mono8\) or 3"):
        from_mapping(SourceConfig, {"path": "x", "channels": 2}, "c.yaml", "source")
    with pytest.raises(ConfigError, match=r"source.path: required for kind 'folder'"):
        from_mapping(SourceConfig, {"kind": "folder"}, "c.yaml", "source")
    with pytest.raises(ConfigError, match=r"source.kind: expected one of 'video', 'folder', 'genicam'"):
        from_mapping(SourceConfig, {"kind": "usb", "path": "x"}, "c.yaml", "source")
    with pytest.raises(ConfigError, match=r"source.genicam.pixel_format: 'Bayer"):
        from_mapping(SourceConfig, {"kind": "genicam", "genicam": {"pixel_format": "BayerRG8"}}, "c.yaml", "source")


# -- folder ----------------------------------------------------------------------------
def make_folder(path: Path, n: int = 5) -> Path:
    path.mkdir()
    for i in reversed(range(n)):                      # written out of order on purpose
        cv2.imwrite(str(path / f"img_{i:03d}.png"), bgr(i))
    (path / "notes.txt").write_text("not an image")
    return path


def test_folder_sorted_mono_and_colour(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    mono = FolderSource(folder, "cam0", channels=1, fps=5.0)
    assert mono.frame_shape == (H, W) and mono.nominal_fps == 5.0
    frames = read_all(mono)
    assert [i for i, _, _ in frames] == [0, 1, 2, 3, 4]
    for i, img, _ in frames:
        # Decoded straight to grey, as the training data loader reads NEU images.
        np.testing.assert_array_equal(img, cv2.imread(str(folder / f"img_{i:03d}.png"), cv2.IMREAD_GRAYSCALE))
    colour = read_all(FolderSource(folder, "cam0", channels=3))
    np.testing.assert_array_equal(colour[3][1], bgr(3))


def test_folder_loop(tmp_path):
    src = FolderSource(make_folder(tmp_path / "imgs", 3), "cam0", loop=True)
    src.start()
    idx = [src.read().index for _ in range(7)]
    assert idx == list(range(7)) and src.stats()["passes"] == 2


def test_folder_errors_name_the_file(tmp_path):
    folder = make_folder(tmp_path / "imgs", 3)
    (folder / "img_001.png").write_bytes(b"\x89PNG broken")
    src = FolderSource(folder, "cam0")
    src.start()
    src.read()
    # A later image that cannot be read is a damaged frame (uninspected), not the end of the folder.
    from inspectd.runtime.sources import CorruptFrames
    with pytest.raises(CorruptFrames, match=r"^frame 1: image .*img_001\.png: cannot be read whole"):
        src.read()
    assert src.read().index == 2
    cv2.imwrite(str(folder / "img_001.png"), np.zeros((10, 10), np.uint8))
    src = FolderSource(folder, "cam0")
    src.read()
    with pytest.raises(InspectdError, match=r"img_001\.png: 10 x 10, but the folder's first image is 48 x 64"):
        src.read()
    with pytest.raises(InspectdError, match=r"^image folder .*missing: not found$"):
        FolderSource(tmp_path / "missing", "cam0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InspectdError, match=r"^image folder .*empty: no images"):
        FolderSource(tmp_path / "empty", "cam0")


# -- through the acquisition thread ----------------------------------------------------
def test_acquisition_thread_replays_a_file_losslessly(video):
    src = VideoSource(video, "cam0", channels=1)
    ring = RingBuffer(3, OverflowPolicy.block, shape=src.frame_shape)
    stop = threading.Event()
    acq = AcquisitionThread(src, ring, stop)
    acq.start()
    got = []
    while (f := ring.get(timeout=30)) is not None:
        got.append(f.index)
        time.sleep(0.002)                  # slower than decoding: block makes the source wait
        ring.release(f)
    acq.join(timeout=30)
    assert acq.error is None and acq.ended and got == list(range(N))
    c = ring.counters()
    assert c.captured == c.inspected == N and c.dropped == 0
    assert acq.stats()["frames_read"] == N


def test_acquisition_thread_realtime_paces_at_the_file_rate(video):
    src = VideoSource(video, "cam0", channels=1, fps=100.0)
    ring = RingBuffer(4, OverflowPolicy.block)
    acq = AcquisitionThread(src, ring, threading.Event(), realtime=True)
    t0 = time.monotonic()
    acq.start()
    stamps = []
    while (f := ring.get(timeout=30)) is not None:
        stamps.append(f.capture_ns)
        ring.release(f)
    acq.join(timeout=30)
    # 30 frames at 100 frames/s cannot be delivered in less than 29 periods.
    assert time.monotonic() - t0 >= 0.28
    assert (stamps[-1] - stamps[0]) / 1e9 >= 0.28
    assert acq.error is None


def test_acquisition_thread_stops_on_request_and_closes_the_ring(video):
    src = VideoSource(video, "cam0", loop=True)        # never ends by itself
    ring = RingBuffer(4, OverflowPolicy.drop_oldest)
    stop = threading.Event()
    acq = AcquisitionThread(src, ring, stop)
    acq.start()
    for _ in range(50):
        f = ring.get(timeout=30)
        ring.release(f)
    stop.set()
    drain = 0
    while (f := ring.get(timeout=30)) is not None:
        ring.release(f)
        drain += 1
    acq.join(timeout=30)
    assert not acq.is_alive() and acq.error is None and not acq.ended and ring.closed
    c = ring.counters()
    assert c.captured == c.inspected + c.dropped


def test_acquisition_thread_reports_what_a_truncated_file_lacks(video, tmp_path):
    cut = tmp_path / "cut.mkv"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    ring = RingBuffer(4, OverflowPolicy.block)
    corrupt: list[int] = []
    acq = AcquisitionThread(VideoSource(cut, "cam0"), ring, threading.Event(),
                            on_corrupt=lambda meta: corrupt.append(meta.index))
    acq.start()
    read = []
    while (f := ring.get(timeout=30)) is not None:
        read.append(f.index)
        ring.release(f)
    acq.join(timeout=30)
    assert acq.error is None and ring.closed
    assert read + corrupt == list(range(N)) and corrupt           # every frame: read, or reported
    assert acq.stats()["frames_corrupt"] == len(corrupt)


def test_acquisition_thread_keeps_a_fatal_error(video):
    class Failing(VideoSource):
        def read(self):
            frame = super().read()
            if frame is not None and frame.index == 3:
                raise InspectdError("video file x: the disk went away")
            return frame

    ring = RingBuffer(4, OverflowPolicy.block)
    acq = AcquisitionThread(Failing(video, "cam0"), ring, threading.Event())
    acq.start()
    while (f := ring.get(timeout=30)) is not None:
        ring.release(f)
    acq.join(timeout=30)
    assert isinstance(acq.error, InspectdError) and "the disk went away" in str(acq.error)
    assert ring.closed


def test_realtime_without_a_rate_is_refused(tmp_path):
    src = FolderSource(make_folder(tmp_path / "imgs", 2), "cam0")
    with pytest.raises(InspectdError, match="realtime pacing needs a frame rate; set source.fps"):
        AcquisitionThread(src, RingBuffer(2, "block"), threading.Event(), realtime=True)


# -- the sample-recording maker --------------------------------------------------------
def _load_maker():
    spec = importlib.util.spec_from_file_location("make_sample_recording", ROOT / "pipelines" / "make_sample_recording.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_neu(root: Path, stems: list[str]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for k, stem in enumerate(stems):
        img = rng.integers(0, 256, (200, 200), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), cv2.merge([img, img, img]))
        name = stem.rsplit("_", 1)[0]
        (root / "annotations" / f"{stem}.xml").write_text(
            f"<annotation><object><name>{name}</name><bndbox><xmin>10</xmin><ymin>{20 + k}</ymin>"
            f"<xmax>60</xmax><ymax>190</ymax></bndbox></object></annotation>"
        )
    return root


def test_make_recording_small(tmp_path):
    maker = _load_maker()
    stems = ["crazing_1", "inclusion_2", "patches_3", "scratches_4", "crazing_5", "patches_6"]
    data = _fake_neu(tmp_path / "neu", stems)
    out = tmp_path / "rec.mkv"
    truth = maker.make_recording(out, stems, data, across=3, frame_height=200, advance=100, fps=20.0)
    assert truth["frames"] == 3 and truth["frame_width"] == 600 and truth["max_abs_error"] == 0.0
    assert json.loads((tmp_path / "rec.mkv.json").read_text())["frames"] == 3
    # Frame 1 looks at strip rows 100..300: the lower half of row 0 and the upper half of row 1.
    f1 = truth["frames_truth"][1]
    assert f1["y"] == 100
    crazing_1 = [b for b in f1["boxes"] if b["stem"] == "crazing_1"][0]
    assert crazing_1["box"] == [10.0, 0.0, 60.0, 90.0] and crazing_1["truncated"]
    scratches = [b for b in f1["boxes"] if b["stem"] == "scratches_4"][0]
    assert scratches["box"] == [10.0, 123.0, 60.0, 200.0] and scratches["truncated"]
    # The video replays through the video source with the stated geometry.
    src = VideoSource(out, "cam0", channels=1)
    assert src.frame_shape == (200, 600) and src.nominal_fps == pytest.approx(20.0)
    frames = read_all(src)
    assert len(frames) == 3
    strip_row1 = cv2.imread(str(data / "images" / "scratches_4.jpg"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(frames[1][1][100:, 0:200], strip_row1[:100])   # lossless
    np.testing.assert_array_equal(frames[2][1][:, 0:200], strip_row1)


def test_bundled_sample_matches_its_truth():
    video = ROOT / "samples" / "neu_strip.mkv"
    truth = json.loads((ROOT / "samples" / "neu_strip.mkv.json").read_text())
    src = VideoSource(video, "cam0", channels=1)
    assert src.frame_shape == (truth["frame_height"], truth["frame_width"])
    assert src.frame_count == truth["frames"]
    src.stop()
    classes = {b["class"] for f in truth["frames_truth"] for b in f["boxes"]}
    assert classes == set(truth["classes"])
