"""The bench's three measurements on the same frames: the model alone (``measure_model``), the
inference stage (``measure_stage``) and the service's pipeline with a subscriber process
(``measure_pipeline``)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inspectd.backends.base import Backend
from inspectd.bench.cpu import PhaseMonitor, stats_ms
from inspectd.bench.subscriber import SubscriberProcess
from inspectd.errors import InspectdError


class TimedBackend:
    """A backend whose calls are timed: where a frame's time goes inside the stage and the
    pipeline (the model itself versus everything around it). Otherwise the backend it wraps."""

    def __init__(self, inner: Backend):
        self._inner = inner
        self.times_ns: list[int] = []
        self.name, self.precision = inner.name, inner.precision
        self.input_size, self.channels = inner.input_size, inner.channels
        self.class_names, self.seg_class_names = inner.class_names, inner.seg_class_names
        self.output_generations, self.concurrent_calls = inner.output_generations, inner.concurrent_calls
        self.infer_labels = self._timed(inner.infer_labels) if inner.infer_labels is not None else None

    def _timed(self, fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
        def call(tiles: np.ndarray) -> Any:
            t = time.perf_counter_ns()
            out = fn(tiles)
            self.times_ns.append(time.perf_counter_ns() - t)
            return out
        return call

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._timed(self._inner.infer)(tiles)

    def close(self) -> None:
        self._inner.close()


def backend_call(backend: Backend) -> Callable[[np.ndarray], Any]:
    """The call the inference stage makes (``infer_labels`` where the backend has it)."""
    return backend.infer_labels or backend.infer


def warm(backend: Backend, batch: int, calls: int = 3) -> None:
    x = np.zeros((batch, backend.channels) + tuple(backend.input_size), np.uint8)
    call = backend_call(backend)
    for _ in range(calls):
        call(x)


def measure_model(backend, batches: list[np.ndarray]) -> dict[str, Any]:
    """The backend kept busy: one call after another, or, where it runs several calls at once
    (OpenVINO streams), that many calls in flight from as many threads."""
    call = backend_call(backend)
    warm(backend, len(batches[0]))
    workers = max(1, int(backend.concurrent_calls))
    times: list[int] = []

    def timed(b: np.ndarray) -> None:
        t = time.perf_counter_ns()
        call(b)
        times.append(time.perf_counter_ns() - t)

    with PhaseMonitor(per_thread=True) as mon:
        t_all = time.perf_counter_ns()
        if workers == 1:
            for b in batches:
                timed(b)
        else:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(timed, batches))
        total = time.perf_counter_ns() - t_all
    n, tiles = len(batches), sum(len(b) for b in batches)
    return {"frames": n, "tiles": tiles, "frames_per_s": round(n / (total / 1e9), 2),
            "tiles_per_s": round(tiles / (total / 1e9), 2), "ms_per_frame": stats_ms(times),
            "concurrent_calls": workers, **mon.fields(),
            "call": "infer_labels" if call != backend.infer else "infer"}


def measure_stage(backend, frames: list, icfg) -> dict[str, Any]:
    from inspectd.runtime.inference import InferenceStage
    from inspectd.runtime.merge import MergeConfig

    timed = TimedBackend(backend)
    stage = InferenceStage(timed, icfg, MergeConfig())
    for f in frames[:3]:
        stage.process(f)
    timed.times_ns.clear()
    # As the pipeline drives it: up to in_flight frames with the model, oldest finished first.
    # The time per frame is the interval between consecutive verdicts.
    times, defects, rejects = [], 0, 0
    try:
        with PhaseMonitor(per_thread=True) as mon:
            t_all = last = time.perf_counter_ns()
            for i in range(len(frames) + stage.in_flight - 1):
                if i < len(frames):
                    stage.begin(frames[i])
                if stage.pending >= stage.in_flight or i >= len(frames):
                    v = stage.finish(stage.oldest)[0]
                    now = time.perf_counter_ns()
                    times.append(now - last)
                    last = now
                    defects += len(v.defects)
                    rejects += v.status == "reject"
            total = time.perf_counter_ns() - t_all
    finally:
        stage.close_model()
    n = len(frames)
    tiles = n * stage.tiles_per_frame
    return {"frames": n, "tiles": tiles, "frames_per_s": round(n / (total / 1e9), 2),
            "tiles_per_s": round(tiles / (total / 1e9), 2), "ms_per_frame": stats_ms(times),
            "model_ms_in_stage": stats_ms(timed.times_ns), **mon.fields(), "defects": defects, "rejects": rejects,
            "in_flight": stage.in_flight}


def measure_pipeline(backend, video: Path, icfg, paced_fps: float | None, frames_expected: int) -> dict[str, Any]:
    """The service's pipeline on ``video`` with a subscriber process receiving every verdict."""
    from inspectd.config import default_config
    from inspectd.runtime.pipeline import Pipeline
    from inspectd.runtime.ringbuffer import OverflowPolicy

    cfg = default_config()
    cfg.camera = "bench"
    cfg.source.kind = "video"
    cfg.source.path = str(video)
    cfg.source.channels = 1
    cfg.inference = icfg
    cfg.ring.policy = OverflowPolicy.drop_oldest if paced_fps else OverflowPolicy.block
    if paced_fps:
        cfg.source.fps = paced_fps
    cfg.bus.publish = "tcp://127.0.0.1:*"
    cfg.bus.heartbeat_interval_s = 0.1      # the subscriber syncs on a heartbeat
    cfg.bus.send_hwm = max(1000, 4 * frames_expected)
    cfg.bus.queue_size = max(1000, 2 * frames_expected)
    cfg.service.notify = False
    cfg.log.verdicts = "none"

    timed = TimedBackend(backend)
    # No self-test: its calls (and its compile for this batch size) would count as frames' model time.
    pipeline = Pipeline(cfg, realtime=bool(paced_fps), backend=timed, handle_signals=False, self_test=False)
    sub = None
    try:
        endpoint = pipeline.publisher.endpoint
        assert endpoint is not None           # bus.publish is set above
        sub = SubscriberProcess(endpoint)
        sub.read(60)                           # ready: its subscription is live
        mon = PhaseMonitor(per_thread=True)
        mon.pids.append(sub.pid)               # the subscriber's CPU is part of the measurement
        with mon:
            result = pipeline.run()
        c = result.counters
        sub.send({"verdicts": c["inspected"], "uninspected": c["uninspected"]})
        got = sub.read(60)
    finally:
        if pipeline.publisher is not None:
            pipeline.publisher.close(0.5)
        if sub is not None:
            sub.close()
    if result.exit_code != 0:
        raise InspectdError(f"bench: the pipeline stopped with {result.reason}: {result.error}")
    cap = np.asarray(got["capture"], np.int64)
    pub = np.asarray(got["publish"], np.int64)
    rec = np.asarray(got["receipt"], np.int64)
    inf = np.asarray(got["inference_end"], np.int64) - np.asarray(got["inference_start"], np.int64)
    n = len(cap)
    span_s = float(pub.max() - cap.min()) / 1e9 if n else math.nan
    grid_tiles = pipeline.stage.tiles_per_frame
    return {
        "paced_fps": paced_fps,
        "policy": cfg.ring.policy.value,
        "frames_requested": frames_expected,
        "frames": n,
        "inspected": c["inspected"],
        "uninspected": c["uninspected"],
        "uninspected_received": got["uninspected"],
        "gaps": got["gaps"],
        "subscriber_timed_out": got["timed_out"],
        "in_order": got["frames"] == sorted(got["frames"]),
        "frames_per_s": round(n / span_s, 2) if n else 0.0,
        "tiles_per_s": round(n * grid_tiles / span_s, 2) if n else 0.0,
        "capture_to_publish_ms": stats_ms(pub - cap),
        "capture_to_receipt_ms": stats_ms(rec - cap),
        # Where a frame's time goes: the model call, the whole stage (model + tiling, decoding,
        # merge), and from capture to the start of inspection (queueing in the ring).
        "model_ms_in_pipeline": stats_ms(timed.times_ns),
        "stage_ms_in_pipeline": stats_ms(inf),
        "capture_to_inspection_ms": stats_ms(np.asarray(got["inference_start"], np.int64) - cap),
        "max_queued": c["max_queued"],
        **mon.fields(),
    }
