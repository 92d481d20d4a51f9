"""PyTorch backend: the model's inference graph on the CPU or on a CUDA device.

CUDA path, built for a steady stream of same-sized batches:

- the model runs on its own ``torch.cuda.Stream``, so nothing else queued on the device's
  default stream (another model, a display) delays it;
- input tiles are copied into a pinned (page-locked) host buffer that is reused while the
  batch shape stays the same, then sent with a non-blocking copy into a reused device buffer;
- with ``half`` the weights are fp16 (``model.half()``; the graph casts its uint8 input to
  the weights' dtype), outputs are cast back to fp32 on the device;
- outputs come back with non-blocking copies into reused pinned host buffers, and one
  stream synchronisation ends the call.

The arrays ``infer`` and ``infer_labels`` return on CUDA are views of those reused pinned
buffers. The backend rotates through ``output_sets`` sets of them (``output_generations``), so
an output stays valid for that many calls: the inference stage asks for one set per frame in
flight, because the model computes the next frame while the stage still reads this one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inspectd.errors import InspectdError


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` -> a torch device, or an error saying why not."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InspectdError("inference.device: cuda requested but no CUDA device is available")
        d = torch.device(device)
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise InspectdError(
                f"inference.device: {device} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return d
    if device == "cpu":
        return torch.device("cpu")
    raise InspectdError(f"inference.device: expected cpu, cuda or auto, got {device!r}")


class TorchBackend:
    """Runs ``InferenceGraph`` of a checkpoint (see ``inspectd.backends.base.Backend``)."""

    name = "torch"
    concurrent_calls = 1             # one call at a time (a CUDA stream of its own)

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", half: bool = False, threads: int = 0,
                 output_sets: int = 1):
        from inspectd.model.checkpoint import load_checkpoint
        dev = resolve_device(device)   # before the (slower) load: a bad device fails fast
        model, cfg = load_checkpoint(checkpoint_path)
        self._setup(model, cfg, dev, half, threads, output_sets)

    @classmethod
    def from_model(cls, model: torch.nn.Module, cfg, device: str = "cpu", half: bool = False,
                   threads: int = 0, output_sets: int = 1) -> TorchBackend:
        """A backend around an in-memory ``MultiTaskNet`` (benchmarks, evaluation, tests)."""
        self = cls.__new__(cls)
        self._setup(model, cfg, resolve_device(device), half, threads, output_sets)
        return self

    def _setup(self, model: torch.nn.Module, cfg, device: torch.device, half: bool, threads: int,
               output_sets: int = 1) -> None:
        from inspectd.model.inference_graph import InferenceGraph
        if threads > 0:
            # Process-wide in PyTorch: the inference thread is the only heavy torch user.
            torch.set_num_threads(threads)
        self.device = device
        self.cuda = device.type == "cuda"
        self.half = bool(half and self.cuda)       # fp16 convolutions on CPU are slow or missing
        self.precision = "fp16" if self.half else "fp32"
        self.input_size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.channels = int(cfg.in_channels)
        self.class_names = list(cfg.class_names)
        self.seg_class_names = list(cfg.seg_class_names)
        self.model_config = cfg
        graph = InferenceGraph(model).eval()
        for p in graph.parameters():
            p.requires_grad_(False)
        if self.cuda:
            graph = graph.to(device)
            if self.half:
                graph = graph.half()
            torch.backends.cudnn.benchmark = True   # batch shape is fixed per camera
            self._stream = torch.cuda.Stream(device)
        self.graph = graph
        self._in_host: torch.Tensor | None = None
        self._in_dev: torch.Tensor | None = None
        # CUDA outputs live in reused pinned buffers: how many calls one stays valid for (the
        # inference stage copies them if fewer than its frames in flight). CPU outputs are fresh.
        self.output_generations = max(1, int(output_sets)) if self.cuda else None
        self._host_out: dict[tuple[str, int], list[torch.Tensor]] = {}
        self._out_turn = 0
        self._closed = False

    def _check(self, tiles: np.ndarray) -> None:
        want = (self.channels,) + self.input_size
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != want:
            raise ValueError(f"expected uint8 tiles [N, {want[0]}, {want[1]}, {want[2]}], got {tiles.dtype} {tiles.shape}")

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._closed:
            raise RuntimeError("TorchBackend.infer after close()")
        self._check(tiles)
        if not self.cuda:
            with torch.inference_mode():
                det, seg = self.graph(torch.from_numpy(np.ascontiguousarray(tiles)))
            return det.float().numpy(), seg.float().numpy()
        return self._infer_cuda(tiles)

    def infer_labels(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``infer`` with the segmentation reduced where the model ran: (det [N, A, 5+nc],
        labels uint8 [N, H, W] = arg-max class, conf float32 [N, H, W] = its probability).

        An optional extension of the Backend protocol that the inference stage uses when a
        backend has it: on CUDA it copies back 8x less than the probabilities and spares the
        CPU an arg-max over every pixel.
        """
        if self._closed:
            raise RuntimeError("TorchBackend.infer_labels after close()")
        self._check(tiles)
        if not self.cuda:
            with torch.inference_mode():
                det, seg = self.graph(torch.from_numpy(np.ascontiguousarray(tiles)))
                conf, labels = seg.max(1)
            return det.float().numpy(), labels.to(torch.uint8).numpy(), conf.float().numpy()
        return self._infer_cuda(tiles, reduce_seg=True)

    def _outputs(self, name: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Pinned host buffers matching ``tensors``: the next of ``output_generations`` sets
        (each reused while its shapes stay)."""
        key = (name, self._out_turn % self.output_generations)
        self._out_turn += 1
        bufs = self._host_out.get(key)
        if bufs is None or any(b.shape != t.shape or b.dtype != t.dtype for b, t in zip(bufs, tensors)):
            bufs = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
            self._host_out[key] = bufs
        return bufs

    def _infer_cuda(self, tiles: np.ndarray, reduce_seg: bool = False) -> tuple[np.ndarray, ...]:
        if self._in_host is None or tuple(self._in_host.shape) != tiles.shape:
            self._in_host = torch.empty(tiles.shape, dtype=torch.uint8, pin_memory=True)
            self._in_dev = torch.empty(tiles.shape, dtype=torch.uint8, device=self.device)
        self._in_host.numpy()[...] = tiles   # the previous call synchronised, so the buffer is free
        stream = self._stream
        with torch.cuda.stream(stream), torch.inference_mode():
            x = self._in_dev.copy_(self._in_host, non_blocking=True)
            det, seg = self.graph(x)
            if reduce_seg:
                conf, labels = seg.max(1)
                outs = [det.float(), labels.to(torch.uint8), conf.float()]
            else:
                outs = [det.float(), seg.float()]
            host = self._outputs("labels" if reduce_seg else "probs", outs)
            for h, d in zip(host, outs):
                h.copy_(d, non_blocking=True)
        stream.synchronize()
        return tuple(h.numpy() for h in host)

    def warmup(self, batch: int = 1) -> None:
        """One inference on zeros: CUDA context, cuDNN algorithm choice, allocator pools."""
        self.infer(np.zeros((batch, self.channels) + self.input_size, np.uint8))

    def close(self) -> None:
        self._closed = True
        self._in_host = self._in_dev = None
        self._host_out = {}
        self.graph = None  # type: ignore[assignment]  # released; infer() checks _closed first
        if self.cuda:
            torch.cuda.empty_cache()
