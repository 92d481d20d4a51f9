"""The ring buffer: overflow policies with a slow consumer, accounting, slot ownership, close."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from inspectd.configtools import ConfigError, from_mapping
from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.ringbuffer import OverflowPolicy, RingBuffer, RingConfig

SHAPE = (24, 32)


def make_frame(i: int, shape: tuple[int, ...] = SHAPE) -> Frame:
    # Every pixel holds the index, so a frame read back proves which frame's pixels it has.
    return Frame(index=i, image=np.full(shape, i % 256, np.uint8), camera="t",
                 capture_ns=time.monotonic_ns(), capture_wall_ns=time.time_ns())


class Drops:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metas: list[FrameMeta] = []

    def __call__(self, meta: FrameMeta) -> None:
        with self.lock:
            self.metas.append(meta)

    @property
    def indices(self) -> list[int]:
        return [m.index for m in self.metas]


def check_books(ring: RingBuffer) -> None:
    c = ring.counters()
    assert c.captured == c.inspected + c.dropped + c.queued + c.in_flight
    assert c.dropped == c.dropped_overflow + c.dropped_released + c.dropped_discarded


def drain(ring: RingBuffer) -> list[int]:
    got = []
    while (f := ring.get(timeout=0)) is not None:
        assert np.all(f.image == f.index % 256), "slot holds another frame's pixels"
        got.append(f.index)
        ring.release(f)
    return got


# -- policies, deterministic: the consumer starts only after the producer is done ---------
def test_drop_oldest_keeps_the_newest_frames():
    drops = Drops()
    ring = RingBuffer(4, OverflowPolicy.drop_oldest, drops)
    kept = [ring.put(make_frame(i)) for i in range(20)]
    assert all(kept)                      # the new frame always gets in; old ones pay
    check_books(ring)
    assert drain(ring) == [16, 17, 18, 19]
    assert drops.indices == list(range(16))
    c = ring.counters()
    assert (c.captured, c.inspected, c.dropped, c.queued, c.in_flight) == (20, 4, 16, 0, 0)


def test_drop_newest_keeps_the_queue():
    drops = Drops()
    ring = RingBuffer(4, "drop_newest", drops)
    kept = [ring.put(make_frame(i)) for i in range(20)]
    assert kept == [True] * 4 + [False] * 16
    assert drain(ring) == [0, 1, 2, 3]
    assert drops.indices == list(range(4, 20))
    check_books(ring)


def test_block_times_out_then_drops_the_new_frame():
    drops = Drops()
    ring = RingBuffer(2, OverflowPolicy.block, drops)
    assert ring.put(make_frame(0)) and ring.put(make_frame(1))
    t0 = time.monotonic()
    assert ring.put(make_frame(2), timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert drops.indices == [2]
    assert drain(ring) == [0, 1]
    check_books(ring)


# -- policies with a deliberately slow consumer on its own thread -------------------------
@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_slow_consumer_every_frame_accounted(policy):
    n, drops = 120, Drops()
    ring = RingBuffer(4, policy, drops)
    inspected: list[int] = []

    def consumer() -> None:
        while (f := ring.get(timeout=10)) is not None:
            assert np.all(f.image == f.index % 256)
            if f.index % 3 == 0:
                time.sleep(0.01)           # slow now and then: inference falling behind
            inspected.append(f.index)
            ring.release(f)

    t = threading.Thread(target=consumer)
    t.start()
    results = []
    for i in range(n):
        results.append(ring.put(make_frame(i)))
        check_books(ring)
    ring.close()
    t.join(timeout=30)
    assert not t.is_alive()

    c = ring.counters()
    assert c.captured == n == c.inspected + c.dropped
    assert c.queued == c.in_flight == 0
    assert len(inspected) == c.inspected and len(drops.metas) == c.dropped
    # Every frame is either inspected or reported dropped, exactly once.
    assert sorted(inspected + drops.indices) == list(range(n))
    assert inspected == sorted(inspected)           # order is kept
    if policy is OverflowPolicy.block:
        assert c.dropped == 0 and all(results)
    else:
        assert c.dropped > 0, "a producer this much faster than the consumer must overflow"
    if policy is OverflowPolicy.drop_oldest:
        assert inspected[-1] == n - 1                # the newest frame is always looked at
        assert all(results)
    if policy is OverflowPolicy.drop_newest:
        assert [i for i, ok in enumerate(results) if not ok] == sorted(drops.indices)


def test_block_producer_waits_for_the_consumer():
    ring = RingBuffer(2, OverflowPolicy.block)
    ring.put(make_frame(0))
    ring.put(make_frame(1))
    done = threading.Event()

    def producer() -> None:
        ring.put(make_frame(2))            # no timeout: waits for a slot
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.1)
    f = ring.get(timeout=1)
    assert not done.is_set()               # a taken frame still holds its slot
    ring.release(f)
    assert done.wait(10)
    t.join()
    assert drain(ring) == [1, 2]


def test_block_put_is_cancelled_by_its_event():
    drops = Drops()
    ring = RingBuffer(1, OverflowPolicy.block, drops)
    ring.put(make_frame(0))
    cancel = threading.Event()
    out = []
    t = threading.Thread(target=lambda: out.append(ring.put(make_frame(1), cancel=cancel)))
    t.start()
    time.sleep(0.05)
    cancel.set()
    t.join(timeout=10)
    assert out == [False] and drops.indices == [1]
    check_books(ring)


# -- slot ownership -------------------------------------------------------------------
def test_in_flight_slot_is_never_overwritten():
    drops = Drops()
    ring = RingBuffer(3, OverflowPolicy.drop_oldest, drops)
    for i in range(3):
        ring.put(make_frame(i))
    held = ring.get()
    assert held is not None and held.index == 0
    for i in range(3, 30):
        ring.put(make_frame(i))
    assert np.all(held.image == 0)        # pixels of frame 0 survived 27 more frames
    # Hold every slot: now the incoming frame itself must be the one dropped.
    held2, held3 = ring.get(), ring.get()
    assert ring.put(make_frame(30)) is False
    assert drops.indices[-1] == 30
    for f, want in ((held, 0), (held2, 28), (held3, 29)):
        assert np.all(f.image == want)
        ring.release(f)
    check_books(ring)


def test_put_copies_and_get_returns_a_view_of_the_slot():
    ring = RingBuffer(2, OverflowPolicy.drop_oldest, shape=SHAPE)
    src = make_frame(5)
    ring.put(src)
    src.image[:] = 99                      # the source reuses its buffer
    f = ring.get()
    assert np.all(f.image == 5)
    assert np.shares_memory(f.image, ring._store)
    assert f.index == 5 and f.camera == "t" and f.capture_ns == src.capture_ns


def test_frame_of_another_shape_is_an_error_naming_both():
    ring = RingBuffer(2, OverflowPolicy.drop_oldest)
    ring.put(make_frame(0))
    with pytest.raises(InspectdError, match=r"24 x 32 x 3 uint8.*24 x 32 uint8"):
        ring.put(make_frame(1, (24, 32, 3)))
    pre = RingBuffer(2, OverflowPolicy.drop_oldest, shape=(10, 10))
    with pytest.raises(InspectdError, match="10 x 10"):
        pre.put(make_frame(0))


def test_release_uninspected_is_reported_and_double_release_refused():
    drops = Drops()
    ring = RingBuffer(2, OverflowPolicy.drop_oldest, drops)
    ring.put(make_frame(7))
    f = ring.get()
    ring.release(f, inspected=False)
    assert drops.indices == [7]
    c = ring.counters()
    assert c.dropped_released == 1 and c.inspected == 0
    with pytest.raises(ValueError):
        ring.release(f)


# -- close and drain -------------------------------------------------------------------
def test_close_drains_then_ends():
    drops = Drops()
    ring = RingBuffer(4, OverflowPolicy.drop_oldest, drops)
    for i in range(3):
        ring.put(make_frame(i))
    ring.close()
    assert ring.put(make_frame(3)) is False          # after close: counted and reported
    assert drops.indices == [3]
    assert drain(ring) == [0, 1, 2]
    assert ring.get(timeout=None) is None            # closed and empty: no wait
    check_books(ring)


def test_close_wakes_a_waiting_consumer():
    ring = RingBuffer(2, OverflowPolicy.drop_oldest)
    out = []
    t = threading.Thread(target=lambda: out.append(ring.get()))
    t.start()
    time.sleep(0.05)
    ring.close()
    t.join(timeout=10)
    assert out == [None]


def test_close_drop_queued_reports_the_waiting_frames():
    drops = Drops()
    ring = RingBuffer(4, OverflowPolicy.drop_oldest, drops)
    for i in range(4):
        ring.put(make_frame(i))
    held = ring.get()
    ring.close(drop_queued=True)
    assert drops.indices == [1, 2, 3]
    assert ring.get(timeout=0) is None
    ring.release(held)
    c = ring.counters()
    assert (c.inspected, c.dropped_discarded, c.queued, c.in_flight) == (1, 3, 0, 0)
    check_books(ring)


def test_get_times_out_with_none():
    ring = RingBuffer(2, OverflowPolicy.drop_oldest)
    assert ring.get(timeout=0.01) is None


# -- config ----------------------------------------------------------------------------
def test_ring_config_section():
    cfg = from_mapping(RingConfig, {"slots": 16, "policy": "block", "block_timeout_s": 0.5}, "x.yaml", "ring")
    assert cfg.policy is OverflowPolicy.block and cfg.slots == 16
    ring = RingBuffer.from_config(cfg)
    assert ring.slots == 16 and ring.block_timeout_s == 0.5
    assert RingConfig().policy is OverflowPolicy.drop_oldest and RingConfig().slots == 8
    with pytest.raises(ConfigError, match=r"x.yaml: ring.policy: expected one of 'drop_oldest'"):
        from_mapping(RingConfig, {"policy": "drop_random"}, "x.yaml", "ring")
    with pytest.raises(ConfigError, match=r"ring.slots: must be at least 1"):
        from_mapping(RingConfig, {"slots": 0}, "x.yaml", "ring")
