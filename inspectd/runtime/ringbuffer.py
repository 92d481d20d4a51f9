"""The fixed-size frame buffer between the acquisition thread and the inference stage.

The buffer never grows: it owns ``slots`` preallocated image arrays. ``put`` copies a
frame into a free slot (the one copy the pipeline needs: a camera buffer must go back to
the driver at once, and a decoder reuses its output array); ``get`` hands out the oldest
unread frame as a *view* of its slot, and the slot stays reserved for the consumer until
``release``. When every slot is taken, the overflow policy decides which frame is lost,
and every lost frame is counted and reported through ``on_drop`` so that downstream can
announce that stretch of strip as uninspected. Nothing is dropped silently.

Accounting, true in every ``counters()`` snapshot::

    captured == inspected + dropped + queued + in_flight

``captured`` counts every frame offered to ``put`` (kept or not); ``dropped`` counts the
overflow victims, the frames released with ``inspected=False`` and the frames discarded
by ``close(drop_queued=True)``.

The slots may live in memory another process writes (``store=``, a shared-memory array:
``runtime.camera_process``). That store may hold more buffers than ``slots``: the extra ones
belong to the producer, which fills one and hands it over with ``swap_in``; the overflow
policy decides exactly as in ``put``, and the producer gets back a free (or evicted) buffer
in exchange, or its own if the frame was dropped. No copy in the ring, and the producer never
waits for the consumer's side unless the policy is ``block``. ``reserve``/``commit``/``abort``
are ``put`` in three steps (a copy into ``slot_view(slot)`` in between).
"""
from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from inspectd.configtools import doc, fail
from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame

# Bookkeeping per slot besides the frame itself (free list entries, ints): about this much.
_SLOT_OVERHEAD = 64

# How often a waiting put() looks at its cancel event: short enough for a prompt stop,
# long enough not to spin.
_CANCEL_POLL_S = 0.05


class OverflowPolicy(str, enum.Enum):
    """What happens to a new frame when every slot is taken.

    - ``drop_oldest``: the oldest frame still waiting (not yet taken by inference) is
      dropped and its slot reused. Latency stays bounded and the newest strip is always
      looked at: right for a live line, where a verdict must reach the reject gate in
      time and a stale frame's verdict may come too late to act on. Costs: the lost
      frames are scattered wherever the backlog was. If every slot is held by the
      consumer, the new frame is dropped instead (a slot in use is never overwritten).
    - ``drop_newest``: the new frame is dropped, the queue is kept. The frames that are
      inspected form long contiguous runs, but the queue ages: at steady overload every
      inspected frame is ``slots`` frames old, so verdicts come later.
    - ``block``: the source waits for a free slot (up to ``block_timeout_s``, then the
      frame is dropped after all). No frame is lost in the buffer: right for replaying a
      file. On a live camera it moves the loss upstream: the camera's own buffers fill
      and it skips frames, which then show up as camera frame-id gaps.
    """

    drop_oldest = "drop_oldest"
    drop_newest = "drop_newest"
    block = "block"


@dataclass
class RingConfig:
    """Config section ``ring``: the frame buffer between acquisition and inference."""

    slots: int = doc(
        "Number of preallocated frame slots (memory: slots x frame bytes). A slot held "
        "by inference counts, so with batching or pipelining use at least the frames "
        "in flight plus 2.",
        default=8,
    )
    policy: OverflowPolicy = doc(
        "What to lose when inference falls behind: 'drop_oldest' (live line: newest "
        "strip first, bounded latency), 'drop_newest' (keep the queue; verdicts age), "
        "'block' (make the source wait: lossless file replay; on a camera the camera "
        "then skips frames). Every lost frame is reported as an uninspected stretch.",
        default=OverflowPolicy.drop_oldest,
    )
    block_timeout_s: float | None = doc(
        "With policy 'block': longest wait for a free slot before the frame is dropped "
        "after all; null waits as long as it takes (until stop).",
        default=None,
    )

    def validate(self, where: str, prefix: str = "ring") -> None:
        if self.slots < 1:
            fail(where, f"{prefix}.slots", f"must be at least 1, got {self.slots}")
        if self.block_timeout_s is not None and self.block_timeout_s <= 0:
            fail(where, f"{prefix}.block_timeout_s", f"must be positive or null, got {self.block_timeout_s}")


@dataclass(frozen=True)
class RingCounters:
    """A consistent snapshot of the buffer's counters."""

    captured: int       # frames offered to put()
    inspected: int      # frames released with inspected=True
    dropped: int        # frames lost for any reason (sum of the three below)
    queued: int         # frames waiting to be taken by get()
    in_flight: int      # frames taken by get() and not yet released
    dropped_overflow: int = 0    # lost to the overflow policy (incl. block timeouts, puts after close)
    dropped_released: int = 0    # taken but released with inspected=False
    dropped_discarded: int = 0   # thrown away by close(drop_queued=True)
    max_queued: int = 0          # high-water mark of queued frames

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class RingBuffer:
    """Fixed slots between one (or more) producers and one (or more) consumers.

    ``on_drop`` is called with the ``FrameMeta`` of every frame that will not be
    inspected, exactly once per frame, from whichever thread caused the drop (the
    producer for overflow, the consumer for ``release(..., inspected=False)``, the
    closing thread for discards) and never while the buffer's lock is held. It must be
    thread-safe; it may call back into the buffer.
    """

    def __init__(
        self,
        slots: int,
        policy: OverflowPolicy | str,
        on_drop: Callable[[FrameMeta], None] | None = None,
        *,
        shape: tuple[int, ...] | None = None,
        dtype: np.dtype | type = np.uint8,
        block_timeout_s: float | None = None,
        store: np.ndarray | None = None,
    ) -> None:
        if slots < 1:
            raise InspectdError(f"ring buffer: slots must be at least 1, got {slots}")
        self.slots = int(slots)
        # Before the slot lists are built: a billion slots must be an error, not the OOM killer.
        check_ring_memory(self.slots, tuple(shape) if shape is not None else (0,), dtype)
        self.policy = OverflowPolicy(policy)
        self.on_drop = on_drop
        self.block_timeout_s = block_timeout_s
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._store: np.ndarray | None = None      # [slots, *shape], allocated once
        self._free: deque[int] = deque(range(self.slots))
        self._queue: deque[tuple[int, Frame]] = deque()
        self._in_flight: dict[int, tuple[int, Frame]] = {}   # id(frame) -> (slot, frame)
        self._writing = 0          # puts that hold a slot and are copying outside the lock
        self._closed = False
        self._captured = self._inspected = 0
        self._dropped_overflow = self._dropped_released = self._dropped_discarded = 0
        self._max_queued = 0
        if store is not None:
            if store.shape[0] < self.slots:
                raise InspectdError(f"ring buffer: a store of {store.shape[0]} buffers for {self.slots} slots")
            self._store = store          # preallocated by its owner (shared memory), not copied
        elif shape is not None:
            self._allocate(tuple(shape), np.dtype(dtype))

    @classmethod
    def from_config(
        cls,
        cfg: RingConfig,
        on_drop: Callable[[FrameMeta], None] | None = None,
        shape: tuple[int, ...] | None = None,
        store: np.ndarray | None = None,
    ) -> RingBuffer:
        return cls(cfg.slots, cfg.policy, on_drop, shape=shape, block_timeout_s=cfg.block_timeout_s,
                   store=store)

    # -- slots ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...] | None:
        """Frame shape of the slots, or None until the first frame arrives."""
        return None if self._store is None else tuple(self._store.shape[1:])

    def _allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
            raise InspectdError(f"ring buffer: frame shape {shape} is not H x W or H x W x 3")
        check_ring_memory(self.slots, shape, dtype)    # a one-line error, not the OOM killer
        self._store = np.empty((self.slots, *shape), dtype=dtype)
        # Touch every page now so the first frames do not pay for page faults.
        self._store.fill(0)

    def _check_shape(self, frame: Frame) -> None:
        img = frame.image
        if self._store is None:
            self._allocate(tuple(img.shape), img.dtype)
            return
        if img.shape != self._store.shape[1:] or img.dtype != self._store.dtype:
            raise InspectdError(
                f"ring buffer: frame {frame.index} from camera {frame.camera!r} is "
                f"{_describe(img.shape, img.dtype)} but the slots hold "
                f"{_describe(self._store.shape[1:], self._store.dtype)}; "
                "a source must keep one frame size and format"
            )

    # -- producer ------------------------------------------------------------------
    def put(self, frame: Frame, timeout: float | None = None,
            cancel: threading.Event | None = None) -> bool:
        """Copy ``frame`` into a free slot; False if this frame was dropped.

        ``timeout`` (policy ``block`` only) overrides the buffer's ``block_timeout_s``;
        None means that default. ``cancel``, when set while waiting, drops the frame and
        returns at once (the acquisition thread passes its stop event).
        """
        slot = self.reserve(frame, timeout, cancel)
        if slot is None:
            return False
        try:
            np.copyto(self.slot_view(slot), frame.image)     # outside the lock: the consumer keeps going
        except BaseException:
            self.abort(slot, frame)          # keep the books straight, then let it propagate
            raise
        self.commit(slot, frame)
        return True

    def reserve(self, frame: Frame, timeout: float | None = None,
                cancel: threading.Event | None = None) -> int | None:
        """Phase one of a put: a slot for ``frame`` chosen by the overflow policy, or None
        if the frame is dropped (counted and reported here). Only ``frame.image``'s shape and
        dtype are looked at. The slot is then the caller's to fill and ``commit`` or ``abort``."""
        victims: list[FrameMeta] = []
        slot: int | None = None
        with self._lock:
            if not self._closed:
                self._check_shape(frame)
                slot = self._take_slot(timeout, cancel, victims)
            if slot is None:
                # Closed, or the policy chose this frame.
                self._captured += 1
                self._dropped_overflow += 1
                victims.append(frame.meta())
            else:
                self._writing += 1
        self._report(victims)
        return slot

    def swap_in(self, frame: Frame, buffer: int, timeout: float | None = None,
                cancel: threading.Event | None = None) -> int:
        """A frame the producer wrote into ``buffer`` (one of the store's buffers it owns):
        kept or dropped by the overflow policy as in ``put``. Returns the buffer the producer
        owns from now on: a free or evicted slot if the frame was kept (``buffer`` holds it in
        the ring), ``buffer`` itself if the frame was dropped (counted and reported here)."""
        slot = self.reserve(frame, timeout, cancel)
        if slot is None:
            return buffer
        self.commit(buffer, frame)
        return slot

    def slot_view(self, slot: int) -> np.ndarray:
        """The pixels of ``slot`` (where a reserved frame is written)."""
        assert self._store is not None
        return self._store[slot]

    def commit(self, slot: int, frame: Frame) -> None:
        """Phase two: the pixels are in ``slot``; queue ``frame`` (its image becomes the slot)."""
        with self._lock:
            self._writing -= 1
            self._captured += 1
            self._queue.append((slot, dataclasses.replace(frame, image=self.slot_view(slot))))
            self._max_queued = max(self._max_queued, len(self._queue))
            self._not_empty.notify()

    def abort(self, slot: int, frame: Frame) -> None:
        """Phase two when the pixels never arrived: the frame counts as dropped (overflow)."""
        with self._lock:
            self._writing -= 1
            self._captured += 1
            self._dropped_overflow += 1
            self._free.append(slot)
            self._not_full.notify()
            self._not_empty.notify_all()
        self._report([frame.meta()])

    def _take_slot(self, timeout: float | None, cancel: threading.Event | None,
                   victims: list[FrameMeta]) -> int | None:
        """A free slot for the incoming frame, or None if it is to be dropped. Lock held."""
        if self._free:
            return self._free.popleft()
        if self.policy is OverflowPolicy.drop_newest:
            return None
        if self.policy is OverflowPolicy.drop_oldest:
            if not self._queue:
                return None          # every slot is in the consumer's hands or being written
            slot, old = self._queue.popleft()
            self._dropped_overflow += 1
            victims.append(old.meta())
            return slot
        # block
        wait = self.block_timeout_s if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while not self._free:
            if self._closed or (cancel is not None and cancel.is_set()):
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if cancel is not None:
                remaining = _CANCEL_POLL_S if remaining is None else min(remaining, _CANCEL_POLL_S)
            self._not_full.wait(remaining)
        return self._free.popleft()

    # -- consumer ------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest unread frame (image is a view of its slot), or None.

        None means the timeout passed, or the buffer is closed and fully drained. The
        slot belongs to the caller until ``release(frame)``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._queue:
                if self._closed and self._writing == 0:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._not_empty.wait(remaining)
            slot, frame = self._queue.popleft()
            self._in_flight[id(frame)] = (slot, frame)
            return frame

    def release(self, frame: Frame, inspected: bool = True) -> None:
        """Give the frame's slot back; ``inspected=False`` counts it dropped and reports it."""
        with self._lock:
            entry = self._in_flight.get(id(frame))
            if entry is None or entry[1] is not frame:
                raise ValueError(
                    f"frame {frame.index} was not handed out by this ring buffer or is already released"
                )
            del self._in_flight[id(frame)]
            self._free.append(entry[0])
            if inspected:
                self._inspected += 1
            else:
                self._dropped_released += 1
            self._not_full.notify()
        if not inspected:
            self._report([frame.meta()])

    # -- lifecycle -----------------------------------------------------------------
    def close(self, drop_queued: bool = False) -> None:
        """No more puts (later ones are dropped); get() drains what is queued, then None.

        ``drop_queued=True`` discards the waiting frames instead (each reported through
        ``on_drop``): for a shutdown that must not wait for inference. Frames in flight
        stay the consumer's to release. Idempotent.
        """
        victims: list[FrameMeta] = []
        with self._lock:
            self._closed = True
            if drop_queued:
                while self._queue:
                    slot, frame = self._queue.popleft()
                    self._free.append(slot)
                    self._dropped_discarded += 1
                    victims.append(frame.meta())
            self._not_empty.notify_all()
            self._not_full.notify_all()
        self._report(victims)

    @property
    def closed(self) -> bool:
        return self._closed

    def counters(self) -> RingCounters:
        with self._lock:
            dropped = self._dropped_overflow + self._dropped_released + self._dropped_discarded
            return RingCounters(
                captured=self._captured, inspected=self._inspected, dropped=dropped,
                queued=len(self._queue), in_flight=len(self._in_flight),
                dropped_overflow=self._dropped_overflow,
                dropped_released=self._dropped_released,
                dropped_discarded=self._dropped_discarded,
                max_queued=self._max_queued,
            )

    def _report(self, victims: list[FrameMeta]) -> None:
        if self.on_drop is not None:
            for meta in victims:
                self.on_drop(meta)


def check_ring_memory(slots: int, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8,
                      where: str = "") -> int:
    """The bytes ``slots`` frames of ``shape`` take; ConfigError (exit 78) naming ``ring.slots``
    if they cannot fit in the memory available (``inspectd.runtime.memory``)."""
    from inspectd.runtime.memory import check_fits

    frame_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    total = int(slots) * (frame_bytes + _SLOT_OVERHEAD)
    what = (f"{slots} slots x {frame_bytes} bytes ({_describe(shape, dtype)} frames)" if frame_bytes
            else f"{slots} slots (before the frame size is known)")
    check_fits(total, what, "ring.slots", where)
    return total


def _describe(shape: tuple[int, ...], dtype: np.dtype | type) -> str:
    return " x ".join(str(s) for s in shape) + f" {np.dtype(dtype).name}"
