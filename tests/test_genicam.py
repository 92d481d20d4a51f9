"""The GenICam source against the simulated camera of the genicam package (viky.cti), through
harvesters, the acquisition thread and the ring buffer: the real acquisition path, no mock."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import genicam
import numpy as np
import pytest

from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.acquisition import AcquisitionThread
from inspectd.runtime.ringbuffer import OverflowPolicy, RingBuffer
from inspectd.runtime.sources import GenICamConfig, SourceConfig, open_source
from inspectd.runtime.sources.genicam import GenICamSource, frame_id_delta

VIKY = Path(genicam.__file__).with_name("viky.cti")
pytestmark = pytest.mark.skipif(not VIKY.exists(), reason="the genicam package ships no viky.cti here")


def viky(**kw) -> GenICamConfig:
    return GenICamConfig(cti=[str(VIKY)], **kw)


class Collect:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metas: list[FrameMeta] = []

    def __call__(self, meta: FrameMeta) -> None:
        with self.lock:
            self.metas.append(meta)


def stream(policy: OverflowPolicy, seconds: float, slow_every: int, slow_s: float, **cam):
    """Run camera -> acquisition thread -> ring -> a consumer that is sometimes slow."""
    src = open_source(SourceConfig(kind="genicam", genicam=viky(**cam)), "cam0", position=lambda i: 0.1 * i)
    dropped, lost = Collect(), Collect()
    ring = RingBuffer(4, policy, dropped, shape=src.frame_shape)
    stop = threading.Event()
    acq = AcquisitionThread(src, ring, stop, on_lost=lost)
    inspected = []
    t0 = time.monotonic()
    acq.start()
    try:
        while (f := ring.get(timeout=30)) is not None:
            assert f.image.shape == src.frame_shape and f.image.dtype == np.uint8
            assert f.strip_position_m == pytest.approx(0.1 * f.index)
            inspected.append(f)
            if len(inspected) % slow_every == 0:
                time.sleep(slow_s)       # inference falling behind now and then
            ring.release(f)
            if time.monotonic() - t0 > seconds:
                stop.set()
    finally:
        stop.set()
        acq.join(timeout=30)
    elapsed = time.monotonic() - t0
    return src, ring, acq, inspected, dropped.metas, lost.metas, elapsed


def check_every_camera_frame_accounted(inspected, dropped, lost):
    """Each camera frame id from the first to the last is inspected, dropped by the ring or
    lost by the camera: exactly one of them."""
    ids = [f.camera_frame_id for f in inspected] + [m.camera_frame_id for m in dropped] + [m.camera_frame_id for m in lost]
    assert None not in ids
    assert len(ids) == len(set(ids)), "a camera frame was accounted twice"
    assert sorted(ids) == list(range(min(ids), max(ids) + 1)), "a camera frame is unaccounted"
    idx = [f.index for f in inspected] + [m.index for m in dropped] + [m.index for m in lost]
    assert sorted(idx) == list(range(len(idx)))      # indices follow the camera's frame ids


def test_viky_mono8_streams_through_acquisition_thread_and_ring():
    src, ring, acq, inspected, dropped, lost, elapsed = stream(
        OverflowPolicy.drop_oldest, seconds=3.0, slow_every=25, slow_s=0.1,
        serial="0", pixel_format="Mono8", width=320, height=240, frame_rate=100.0,
    )
    assert acq.error is None, acq.error
    assert src.frame_shape == (240, 320) and src.nominal_fps == pytest.approx(100.0)
    assert src.pixel_format == "Mono8"
    c = ring.counters()
    assert c.captured == c.inspected + c.dropped and c.queued == 0 and c.in_flight == 0
    assert c.inspected == len(inspected) and c.dropped == len(dropped)
    assert c.captured >= 20, f"only {c.captured} frames in {elapsed:.1f} s"
    assert c.dropped > 0, "a consumer pausing 100 ms with 4 slots at 100 frames/s must overflow"
    check_every_camera_frame_accounted(inspected, dropped, lost)
    stats = acq.stats()
    assert stats["frames_read"] == c.captured
    assert stats["source"]["frames_lost"] == len(lost) == stats["frames_lost"]
    # Camera frame ids rise; a verdict's frame never goes back in time.
    assert [f.index for f in inspected] == sorted(f.index for f in inspected)
    print(f"\nviky Mono8 320x240 @100: {c.captured / elapsed:.0f} frames/s captured, "
          f"{c.dropped} dropped by the ring, {len(lost)} lost by the camera")


def test_viky_block_policy_moves_the_loss_to_the_camera():
    src, ring, acq, inspected, dropped, lost, _ = stream(
        OverflowPolicy.block, seconds=1.5, slow_every=10, slow_s=0.1,
        serial="1", width=200, height=200, frame_rate=200.0, buffers=3,
    )
    assert acq.error is None, acq.error
    c = ring.counters()
    assert c.captured == c.inspected + c.dropped
    assert c.dropped_overflow == 0 or c.dropped_overflow == 1   # at most the put cut short by stop
    assert len(lost) > 0 and src.stats()["frame_id_gaps"] > 0, "the camera should have skipped frames"
    check_every_camera_frame_accounted(inspected, dropped, lost)


def test_viky_colour_and_grey_from_rgba():
    for channels, shape in ((3, (120, 160, 3)), (1, (120, 160))):
        src = GenICamSource(viky(serial="2", pixel_format="RGBa8", width=160, height=120, frame_rate=50.0), "cam0", channels)
        try:
            assert src.frame_shape == shape
            src.start()
            frames = []
            while len(frames) < 3:
                f = src.read()
                frames.append((f.index, f.camera_frame_id, f.image.copy()))
            assert frames[0][0] == 0 and frames[0][0] < frames[1][0] < frames[2][0]
            assert all(img.shape == shape for _, _, img in frames)
            assert any(img.std() > 0 for _, _, img in frames)      # an actual picture
        finally:
            src.stop()


def test_frame_id_delta():
    assert frame_id_delta(5, 6) == 1
    assert frame_id_delta(5, 9) == 4
    assert frame_id_delta(65535, 1) == 1          # GigE Vision 16-bit block id wraps, skipping 0
    assert frame_id_delta(65534, 2) == 3
    assert frame_id_delta(9, 3) is None           # the camera restarted its counter


# -- errors: one line each, naming what and where ---------------------------------------
def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_serial_lists_what_was_found():
    with pytest.raises(InspectdError) as exc:
        GenICamSource(viky(serial="4711"), "cam0")
    msg = one_line(exc)
    assert "camera 'cam0'" in msg and "no device with serial '4711'" in msg
    assert "Viky serial 0" in msg and "Viky serial 2" in msg
    # The camera was not left claimed: another source opens it.
    GenICamSource(viky(serial="0"), "cam0").stop()


def test_several_cameras_need_a_choice():
    with pytest.raises(InspectdError) as exc:
        GenICamSource(viky(model="Viky"), "cam0")
    assert "3 devices with model 'Viky'" in one_line(exc) and "source.genicam.serial" in str(exc.value)
    src = GenICamSource(viky(index=2), "cam0")
    assert src.device.serial == "2"
    src.stop()


def test_missing_cti(tmp_path):
    with pytest.raises(InspectdError) as exc:
        GenICamSource(GenICamConfig(cti=[str(tmp_path / "vendor.cti")]), "cam0")
    assert one_line(exc) == f"GenTL producer {tmp_path / 'vendor.cti'}: not found (source.genicam.cti)"


def test_no_cti_at_all(monkeypatch):
    monkeypatch.delenv("GENICAM_GENTL64_PATH", raising=False)
    with pytest.raises(InspectdError) as exc:
        GenICamSource(GenICamConfig(), "cam0")
    assert "no GenTL producer (.cti) given" in one_line(exc)


def test_cti_found_through_the_environment(monkeypatch):
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(VIKY.parent))
    src = GenICamSource(GenICamConfig(serial="2"), "cam0")
    assert src.device.serial == "2" and src.cti == [VIKY]
    src.stop()


def test_rejected_value_names_node_and_value():
    with pytest.raises(InspectdError) as exc:
        GenICamSource(viky(serial="0", width=5000), "cam0")
    msg = one_line(exc)
    assert "the camera rejects Width = 5000" in msg and "range 100 to 800" in msg
    with pytest.raises(InspectdError) as exc:
        GenICamSource(viky(serial="0", frame_rate=1000.0), "cam0")
    assert "AcquisitionFrameRate = 1000.0" in one_line(exc)


def test_setting_a_node_the_camera_lacks_is_an_error():
    with pytest.raises(InspectdError) as exc:
        GenICamSource(viky(serial="0", exposure_us=500.0), "cam0")
    assert "exposure_us is set but the camera has no ExposureTime node" in one_line(exc)


def test_frame_step_counts_incomplete_buffers_as_corrupt():
    from inspectd.runtime.sources.genicam import frame_step

    assert frame_step(1, 0) == (1, 0, 0)            # the next frame, whole
    assert frame_step(4, 0) == (4, 3, 0)            # three lost by the camera
    assert frame_step(4, 2) == (4, 1, 2)            # of the three skipped ids, two came incomplete
    assert frame_step(1, 2) == (3, 0, 2)            # the producer numbered no incomplete buffer
    assert frame_step(None, 0) == (1, 0, 0)         # no frame ids
    assert frame_step(None, 3) == (4, 0, 3)         # no frame ids: the index still moves past them


def test_an_incomplete_buffer_that_harvesters_discards_is_counted_corrupt():
    """viky never delivers an incomplete buffer. harvesters' fetch() queues such a buffer back,
    fetches on and emits its INCOMPLETE_BUFFER event; here the real acquirer emits that event
    (as fetch does) between two real frames, through the callback the source registered."""
    src = GenICamSource(viky(serial="1", width=200, height=200), "cam0")
    try:
        src.start()
        with src.grab() as first:
            pass
        assert first.corrupt_before == 0
        ia = src._ia
        for _ in range(2):
            ia._emit_callbacks(ia.Events.INCOMPLETE_BUFFER)
        with src.grab() as second:
            pass
        assert second.corrupt_before == 2
        # viky numbered neither of them: the index moves past both, so positions stay right.
        assert second.index == first.index + 3
        stats = src.stats()
        assert stats["frames_incomplete"] == 2 and stats["frames_lost"] == 0
        with src.grab() as third:
            pass
        assert third.corrupt_before == 0 and third.index == second.index + 1
    finally:
        src.stop()
