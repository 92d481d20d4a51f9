"""ONNX Runtime backend: the checkpoint's exported inference graph on the CPU.

The graph is the same one PyTorch runs (``InferenceGraph``: uint8 tiles in, decoded boxes and
segmentation probabilities out), exported once per checkpoint and cached (see
``inspectd.backends.onnx_model``). ONNX Runtime fuses convolutions with their BatchNorm and
activation and runs them with its own kernels; on the 2-core test machine that is several
times faster than PyTorch's CPU path for this small network (figures in BENCHMARKS.md).

int8: give an ``.onnx`` made by ``pipelines/quantize_onnx.py`` (static QDQ quantisation,
calibrated on training images) as the model; the file records its precision.

Threads: ``inference.threads`` intra-op threads (0: one per core), one inter-op thread (the
graph is a chain). Idle worker threads do not spin: on a machine with few cores a spinning
pool takes the CPU that acquisition and the publisher need between two frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

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


class OnnxRuntimeBackend:
    """Runs a prepared ONNX graph with ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"
    output_generations = None        # fresh arrays every call
    concurrent_calls = 1

    def __init__(self, model: OnnxModel, threads: int = 0, spin: bool = False):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads > 0:
            so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3          # warnings about unused initialisers are noise here
        try:
            self._session = ort.InferenceSession(str(model.path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise InspectdError(f"model file {model.source}: ONNX Runtime cannot load it ({exc})") from None
        cfg = model.config
        self.model = model
        self.model_config = cfg
        self.precision = model.precision
        self.threads = threads
        self.input_size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.channels = int(cfg.in_channels)
        self.class_names = list(cfg.class_names)
        self.seg_class_names = list(cfg.seg_class_names)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise InspectdError(f"model file {model.source}: expected one uint8 input, got "
                                f"{[(i.name, i.type) for i in inputs]}")
        self._input = inputs[0].name
        self._closed = False

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._ready(tiles)
        det, seg = self._session.run(PROB_OUTPUTS, {self._input: np.ascontiguousarray(tiles)})
        return det, seg

    def infer_labels(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``infer`` with the per-pixel arg-max done inside the graph (see the inference stage):
        (det [N, A, 5+nc], labels uint8 [N, H, W], conf float32 [N, H, W])."""
        self._ready(tiles)
        det, labels, conf = self._session.run(LABEL_OUTPUTS, {self._input: np.ascontiguousarray(tiles)})
        return det, labels, conf

    def _ready(self, tiles: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("OnnxRuntimeBackend.infer after close()")
        check_tiles(tiles, self.channels, self.input_size)

    def warmup(self, batch: int = 1) -> None:
        """One inference on zeros: ONNX Runtime allocates its arenas on the first run."""
        self.infer_labels(np.zeros((batch, self.channels) + self.input_size, np.uint8))

    def close(self) -> None:
        self._closed = True
        self._session = None


def create(path: str | Path, cfg: InferenceConfig) -> OnnxRuntimeBackend:
    """The backend ``inspectd.backends.create_backend`` builds for ``inference.backend: onnxruntime``.

    ``path``: a checkpoint (exported and cached on first use) or an inspectd ``.onnx`` file.
    """
    if cfg.device == "cuda":
        raise InspectdError("inference.device: the onnxruntime backend runs on the CPU; "
                            "use backend 'torch' for CUDA (or device 'auto' or 'cpu')")
    return OnnxRuntimeBackend(prepare(path), threads=cfg.threads)
