"""The inference stage: one frame in, one verdict out.

frame -> tiles (one reused uint8 batch) -> backend.infer (one call per frame) -> per-tile
decoding and NMS -> frame coordinates -> fusion of boxes cut by tile edges -> stitched
segmentation map -> merge by the class rules -> placed on the strip (``runtime.placement``:
positions and reject-gate deadlines, with the line's geometry) -> ``Verdict``.

Two halves, so that the model never waits for the post-processing: ``begin(frame)`` cuts
the tiles and hands them to the model thread; ``finish(job)`` waits for the model's outputs
and decodes, stitches and merges them. With ``inference.in_flight`` one more than the model
computes at once (the default) the caller begins frame *i + 1* before it finishes frame *i*,
and the model runs on *i + 1* while *i* is post-processed: where the model leaves a core free
(or runs on a GPU) the pipeline then keeps the model's own rate (BENCHMARKS.md). ``process(frame)`` is both halves at once.

The stage knows nothing about the backend beyond ``inspectd.backends.base.Backend``.
It keeps per-frame-size state (tile grid, batches, stitched maps) and reuses it while the
frame size stays the same, so the steady state allocates little per frame. It is not
thread-safe: one inference thread owns one stage (the model thread is its own).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from inspectd.backends.base import Backend
from inspectd.backends.config import InferenceConfig as InferenceConfig  # the section's home is backends/config.py
from inspectd.domain.verdicts import Verdict
from inspectd.errors import InspectdError
from inspectd.line import LineConfig
from inspectd.runtime.frame import Frame
from inspectd.runtime.merge import MergeConfig, check_rules_against_model, merge_frame
from inspectd.runtime.placement import place
from inspectd.runtime.tile_detections import decode_tiles
from inspectd.runtime.tiling import SegStitcher, TileCutter, TileGrid, boxes_to_frame, fuse_cross_tile
from inspectd.stop_signals import StopFlag

# Once inspection is told to stop in a hurry, how long a frame still waits for a model call that
# has not returned (a wedged runtime or GPU) before the call counts as stuck: the frame is then
# reported uninspected and the stop goes on, instead of never ending.
STUCK_AFTER_S = 10.0
# How often a frame waiting for the model looks at the stop.
_CANCEL_POLL_S = 0.1


def check_tile_overlap(cfg: InferenceConfig, input_size: tuple[int, int]) -> tuple[int, int]:
    """The model's tile size; an error if the configured overlap leaves no stride."""
    th, tw = (int(s) for s in input_size)
    if cfg.tile_overlap_px >= min(th, tw):
        raise InspectdError(
            f"inference.tile_overlap_px: {cfg.tile_overlap_px} must be less than the model input "
            f"size {th}x{tw}")
    return th, tw


@dataclass(slots=True)
class _SizeState:
    """Everything that depends only on the frame's shape, built once per shape."""

    shape: tuple[int, ...]
    grid: TileGrid
    cutters: list[TileCutter]      # one batch per frame in flight: the model reads it meanwhile
    stitcher: SegStitcher


@dataclass(slots=True)
class Job:
    """A frame whose tiles are with the model (``InferenceStage.begin``)."""

    frame: Frame
    state: _SizeState
    outputs: Future
    start_ns: int


class _ModelThread:
    """Runs the backend's calls on threads of their own ("model"; one per call the backend
    can run at once, ``concurrent_calls``: OpenVINO streams).

    The runtimes release the GIL while the model runs, so the inference thread can decode,
    merge and publish the previous frame meanwhile. A Future per call carries the outputs or
    the exception back. Calls are started in order; the queue holds at most ``in_flight``.
    """

    def __init__(self, call, workers: int = 1):
        self._call = call
        self._jobs: deque[tuple[Future, object]] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, name="model", daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, tiles) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("inference stage closed")
            self._jobs.append((fut, tiles))
            self._cv.notify()
        return fut

    def _serve(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if not self._jobs:
                    return
                fut, tiles = self._jobs.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(self._call(tiles))
            except BaseException as exc:  # noqa: BLE001 - re-raised by finish() on the inference thread
                fut.set_exception(exc)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Cancel the calls not started, wait for the running ones; False if one is still
        running after ``timeout_s`` (a hung runtime: its thread is a daemon)."""
        with self._cv:
            self._closed = True
            for fut, _ in self._jobs:
                fut.cancel()
            self._jobs.clear()
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


class InferenceStage:
    """Turns frames into verdicts with one backend call per frame.

    ``process(frame)`` returns the ``Verdict``. ``process_with_mask(frame)`` also returns
    the frame's segmentation label map (H x W uint8, index into
    ``backend.seg_class_names``, 0 = background), a copy the caller owns, for annotation.
    ``begin(frame)`` / ``finish(job)`` are the two halves, for a caller that keeps up to
    ``cfg.in_flight`` frames with the model; jobs must be finished in the order begun.
    ``line`` places each verdict on the strip (the service passes its own; the default line
    serves callers that only time or test the stage).
    """

    def __init__(self, backend: Backend, cfg: InferenceConfig, merge: MergeConfig,
                 line: LineConfig | None = None):
        self.backend = backend
        self.cfg = cfg
        self.merge = merge
        self.line = line if line is not None else LineConfig()
        th, tw = check_tile_overlap(cfg, backend.input_size)
        self.tile_size = (th, tw)
        self.class_names = list(backend.class_names)
        self.seg_class_names = list(backend.seg_class_names)
        check_rules_against_model(merge, self.class_names, self.seg_class_names)
        self._state: _SizeState | None = None
        # Per-pixel arg-max computed where the model ran, where the backend offers it (on a
        # GPU: 8x less to copy back, and no arg-max over every pixel on the CPU).
        self._infer_labels = backend.infer_labels
        self.in_flight = cfg.in_flight_for(int(backend.concurrent_calls))
        call: Callable[[np.ndarray], tuple[np.ndarray, ...]] = \
            self._infer_labels if self._infer_labels is not None else backend.infer
        generations = backend.output_generations
        if self.in_flight > 1 and generations is not None and generations < self.in_flight:
            # The backend would overwrite a frame's outputs with the next frame's while this
            # frame is still being read: take copies on the model thread.
            raw = call
            def call(tiles, _raw=raw):  # noqa: E306
                return tuple(np.array(a, copy=True) for a in _raw(tiles))
        workers = max(1, min(self.in_flight, int(backend.concurrent_calls)))
        self._model = _ModelThread(call, workers) if self.in_flight > 1 else None
        self._call = call
        self._jobs: deque[Job] = deque()
        self._turn = 0
        self._stuck = False          # a model call did not return (finish): closing does not wait for it

    # -- per-size state ---------------------------------------------------------------------
    def _state_for(self, image: np.ndarray) -> _SizeState:
        st = self._state
        if st is not None and st.shape == image.shape:
            return st
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) \
                or image.shape[0] < 1 or image.shape[1] < 1:
            raise InspectdError(
                f"frame: expected a uint8 H x W (Mono8) or H x W x 3 (BGR) image, got {image.dtype} {image.shape}")
        th, tw = self.tile_size
        grid = TileGrid.build(image.shape[0], image.shape[1], th, tw, self.cfg.tile_overlap_px)
        cutters = [TileCutter(grid, image.shape, int(self.backend.channels),
                              pad=self.cfg.pad, pad_value=self.cfg.pad_value) for _ in range(self.in_flight)]
        self._state = _SizeState(tuple(image.shape), grid, cutters, SegStitcher(grid))
        return self._state

    # -- the hot path -------------------------------------------------------------------------
    def begin(self, frame: Frame) -> Job:
        """Cut the frame into tiles and give them to the model; ``finish`` the job later."""
        if len(self._jobs) >= self.in_flight:
            raise RuntimeError(f"inference stage: {self.in_flight} frame(s) already in flight")
        start = time.monotonic_ns()
        st = self._state_for(frame.image)
        # The model reads this batch until the job is finished; the next in_flight - 1 jobs
        # use the other batches.
        batch = st.cutters[self._turn % len(st.cutters)].cut(frame.image)
        self._turn += 1
        if self._model is not None:
            outputs = self._model.submit(batch)
        else:
            outputs = Future()
            try:
                outputs.set_result(self._call(batch))
            except BaseException as exc:  # noqa: BLE001 - raised by finish(), like the threaded path
                outputs.set_exception(exc)
        job = Job(frame, st, outputs, start)
        self._jobs.append(job)
        return job

    def call_model(self, image: np.ndarray) -> tuple[int, tuple[np.ndarray, ...]]:
        """The backend call the stage makes for ``image``, synchronously: (number of tiles,
        outputs as the backend returns them). For the start-up self-test (``runtime.selftest``)."""
        st = self._state_for(image)
        return st.grid.n, self._call(st.cutters[self._turn % len(st.cutters)].cut(image))

    def finish(self, job: Job, cancel: StopFlag | None = None) -> tuple[Verdict, np.ndarray]:
        """Wait for the model's outputs on ``job``; decode, stitch and merge them.

        Returns the verdict and the frame's label map (valid until the next ``finish``). Once
        ``cancel`` is set, the model (on its own thread) has ``STUCK_AFTER_S`` more to return;
        then InspectdError, and the stage stops waiting for that call anywhere (``close``).
        """
        if not self._jobs or self._jobs[0] is not job:
            raise RuntimeError("inference stage: jobs must be finished in the order they were begun")
        self._jobs.popleft()
        out = self._outputs(job.outputs, cancel)
        st = job.state
        if self._infer_labels is not None:
            det, tile_labels, tile_conf = out
            boxes, scores, classes = self._detections(det, st.grid)
            labels, conf = st.stitcher.stitch_labels(tile_labels, tile_conf)
        else:
            det, seg = out
            boxes, scores, classes = self._detections(det, st.grid)
            labels, conf = st.stitcher.stitch(seg)
        defects, status = merge_frame((boxes, scores, classes), (labels, conf), self.merge,
                                      self.class_names, self.seg_class_names)
        end_ns = time.monotonic_ns()
        meta = job.frame.meta()
        verdict = Verdict(meta, status, place(self.line, meta, defects), defects, job.start_ns, end_ns)
        return verdict, labels

    def _outputs(self, fut: Future, cancel: StopFlag | None) -> tuple[np.ndarray, ...]:
        if cancel is None or fut.done():
            return fut.result()
        while not cancel.is_set():
            try:
                return fut.result(timeout=_CANCEL_POLL_S)
            except FutureTimeout:
                continue
        try:
            return fut.result(timeout=STUCK_AFTER_S)
        except FutureTimeout:
            self._stuck = True
            raise InspectdError(f"inference: the model call did not return within {STUCK_AFTER_S:g} s "
                                "of stopping (the runtime or the device is stuck)") from None

    def abandon(self) -> list[Frame]:
        """Forget the jobs in flight (after an error, or when inspection stops in a hurry);
        returns their frames, oldest first. The model finishes what it started, unread."""
        frames = [j.frame for j in self._jobs]
        for j in self._jobs:
            j.outputs.cancel()
        self._jobs.clear()
        return frames

    @property
    def oldest(self) -> Job:
        """The job to finish next."""
        return self._jobs[0]

    @property
    def tiles_per_frame(self) -> int:
        """Tiles the current frame size is cut into (0 before the first frame)."""
        return self._state.grid.n if self._state is not None else 0

    @property
    def pending(self) -> int:
        """Frames begun and not yet finished."""
        return len(self._jobs)

    def _run(self, frame: Frame) -> tuple[Verdict, np.ndarray]:
        return self.finish(self.begin(frame))

    def _detections(self, det: np.ndarray, grid: TileGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-tile decoding + NMS, then frame coordinates and cross-tile fusion."""
        cfg = self.cfg
        found = decode_tiles(det, cfg.conf_threshold, cfg.iou_threshold, cfg.max_det)
        if len(found) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        boxes = boxes_to_frame(found.boxes, found.tiles, grid)
        # Boxes that lay wholly in the padding of a small frame have nothing left after clipping.
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        fused = fuse_cross_tile(boxes[keep], found.scores[keep], found.classes[keep], found.tiles[keep],
                                grid, cfg.fuse_edge_px, cfg.fuse_duplicate_overlap)
        return fused.boxes, fused.scores, fused.classes

    def process(self, frame: Frame) -> Verdict:
        return self._run(frame)[0]

    def process_with_mask(self, frame: Frame) -> tuple[Verdict, np.ndarray]:
        verdict, labels = self._run(frame)
        return verdict, labels.copy()

    def close_model(self) -> None:
        """Stop the model thread; the backend stays open (it belongs to the caller)."""
        if self._model is not None and not self._model.close(0.0 if self._stuck else 10.0) and not self._stuck:
            raise InspectdError("inference: the model call did not return within 10 s of stopping")

    def close(self) -> None:
        self.close_model()
        if not self._stuck:          # a call still inside the runtime: closing it under the call could crash
            self.backend.close()
