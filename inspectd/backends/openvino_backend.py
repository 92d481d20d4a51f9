"""OpenVINO backend: the checkpoint's exported inference graph on the CPU, fp32 or bf16.

Same graph and cache as the ONNX Runtime backend (``inspectd.backends.onnx_model``). What
OpenVINO adds on this kind of CPU is bf16: on processors with native bf16 arithmetic
(AVX512_BF16 as on AMD Zen 4, or Intel AMX) it runs the convolutions in bf16 with fp32
accumulation, much faster than fp32 (figures and the accuracy cost in BENCHMARKS.md). On a
CPU without it, bf16 is refused rather than emulated slowly.

The model is compiled for the batch size it is called with (a camera's frames all cut into
the same number of tiles) and kept; a second batch size compiles a second one. Precision is
always set explicitly: OpenVINO would otherwise pick bf16 by itself on CPUs with AMX.

Streams: with ``streams=1`` one frame at a time runs on all the threads, which wait for each
other at every layer: the lowest latency on an idle machine, but whenever the rest of the
pipeline takes a core from one thread, the other waits. With ``streams=N`` OpenVINO runs N
frames at once, each on its share of the cores, without the threads of one frame waiting for
each other: more frames per second (the daemon's default on 2 or more cores: 2 streams; 1.3x
the frames/s end to end on 2 cores, BENCHMARKS.md). Up to N calls may then run concurrently
from different threads (``concurrent_calls``); each takes an infer request of its own from a
pool.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import openvino as ov

from inspectd.backends.onnx_model import (
    LABEL_OUTPUTS,
    PROB_OUTPUTS,
    OnnxModel,
    check_tiles,
    prepare,
)
from inspectd.errors import InspectdError

if TYPE_CHECKING:
    from inspectd.backends.config import InferenceConfig

PRECISIONS = ("fp32", "bf16", "int8")
_HINT = {"fp32": "f32", "bf16": "bf16"}


def cpu_has_bf16(core: ov.Core | None = None) -> bool:
    """Native bf16 on this CPU as OpenVINO sees it."""
    core = core or ov.Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an old plugin without the property: assume not
        return False


class OpenVinoBackend:
    """Runs a prepared ONNX graph with OpenVINO's CPU plugin (one synchronous infer request)."""

    name = "openvino"
    output_generations = None        # outputs are copied out of the infer request

    def __init__(self, model: OnnxModel, threads: int = 0, precision: str = "fp32", streams: int = 1,
                 int8_ir: Path | None = None):
        if streams < 1:
            raise InspectdError(f"inference.streams: must be at least 1, got {streams}")
        if precision not in PRECISIONS:
            raise InspectdError(f"inference.precision: openvino runs {' or '.join(PRECISIONS)}, got {precision!r}")
        self._core = ov.Core()
        if precision == "bf16" and not cpu_has_bf16(self._core):
            raise InspectdError("inference.precision: bf16 requested but this CPU has no native bf16 "
                                "(AVX512_BF16 or AMX); use fp32")
        if (precision == "int8") != (int8_ir is not None):
            raise ValueError("OpenVinoBackend: int8 takes the quantised IR (int8_ir), and only int8 does")
        # int8: the layers left in float run in bf16 where the CPU has it.
        hint = ("bf16" if cpu_has_bf16(self._core) else "fp32") if precision == "int8" else precision
        try:
            self._model = self._core.read_model(str(int8_ir or model.path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with long text
            raise InspectdError(f"model file {model.source}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from None
        cfg = model.config
        self.model = model
        self.model_config = cfg
        self.precision = precision if model.precision == "fp32" else f"{model.precision}+{precision}"
        self.threads = threads
        self.input_size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.channels = int(cfg.in_channels)
        self.class_names = list(cfg.class_names)
        self.seg_class_names = list(cfg.seg_class_names)
        self.streams = streams
        self.concurrent_calls = streams      # calls that may run at once (the inference stage reads it)
        self._props = {
            "INFERENCE_PRECISION_HINT": _HINT[hint],
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": str(streams),
        }
        if threads > 0:
            self._props["INFERENCE_NUM_THREADS"] = str(threads)
        # (outputs, batch) -> a pool of `streams` infer requests on one compiled model
        self._pools: dict[tuple[tuple[str, ...], int], queue.SimpleQueue] = {}
        self._compile_lock = threading.Lock()
        self._closed = False

    def _pool(self, outputs: tuple[str, ...], batch: int) -> queue.SimpleQueue:
        key = (outputs, batch)
        pool = self._pools.get(key)
        if pool is None:
            with self._compile_lock:
                pool = self._pools.get(key)
                if pool is None:
                    # A model with only the wanted results: OpenVINO then neither computes nor
                    # copies out what is not asked for (the full probabilities, for infer_labels).
                    m = self._model.clone()
                    wanted = [m.output(name) for name in outputs]
                    sub = ov.Model(wanted, m.get_parameters(), "inspectd")
                    sub.reshape({0: ov.PartialShape([batch, self.channels, *self.input_size])})
                    compiled = self._core.compile_model(sub, "CPU", self._props)
                    pool = queue.SimpleQueue()
                    for _ in range(self.streams):
                        pool.put(compiled.create_infer_request())
                    self._pools[key] = pool
        return pool

    def _run(self, tiles: np.ndarray, outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        if self._closed:
            raise RuntimeError("OpenVinoBackend.infer after close()")
        check_tiles(tiles, self.channels, self.input_size)
        pool = self._pool(outputs, tiles.shape[0])
        try:
            req = pool.get(timeout=60)     # never waits while callers keep to concurrent_calls
        except queue.Empty:
            raise RuntimeError(f"OpenVinoBackend: more than {self.streams} concurrent calls") from None
        try:
            req.infer({0: np.ascontiguousarray(tiles)})
            # Copies: the request's buffers are overwritten by its next call.
            return tuple(req.get_output_tensor(i).data.copy() for i in range(len(outputs)))
        finally:
            pool.put(req)

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        det, seg = self._run(tiles, PROB_OUTPUTS)
        return det, seg

    def infer_labels(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(det [N, A, 5+nc], labels uint8 [N, H, W], conf float32 [N, H, W]); see the inference stage."""
        det, labels, conf = self._run(tiles, LABEL_OUTPUTS)
        return det, labels, conf

    def warmup(self, batch: int = 1) -> None:
        """Compile for ``batch`` and run once on zeros."""
        self.infer_labels(np.zeros((batch, self.channels) + self.input_size, np.uint8))

    def close(self) -> None:
        self._closed = True
        self._pools.clear()
        self._model = None


def create(path: str | Path, cfg: InferenceConfig) -> OpenVinoBackend:
    """The backend for ``inference.backend: openvino`` (``inference.precision`` fp32 or bf16)."""
    if cfg.device == "cuda":
        raise InspectdError("inference.device: the openvino backend runs on the CPU; "
                            "use backend 'torch' for CUDA (or device 'auto' or 'cpu')")
    precision = cfg.precision
    int8_ir = None
    if precision == "int8":
        # The quantised IR `inspectd export --int8` put in the model cache.
        from inspectd.backends.openvino_int8 import int8_ir_path
        if Path(path).suffix.lower() == ".onnx":
            raise InspectdError(f"inference.precision: int8 is made from a checkpoint (.safetensors), "
                                f"not from {path}; or choose bf16 or fp32")
        int8_ir = int8_ir_path(Path(path))
        if not int8_ir.is_file():
            raise InspectdError(f"inference.precision: int8 needs the quantised model of {path}, not built yet: "
                                f"run `inspectd export --int8 --model {path} --calib-data DIR` (training images) "
                                "once, or choose bf16 or fp32")
    return OpenVinoBackend(prepare(path), threads=cfg.threads, precision=precision,
                           streams=cfg.streams_for("openvino"), int8_ir=int8_ir)
