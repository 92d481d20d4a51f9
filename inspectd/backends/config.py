"""Config section ``inference``: the model and the runtime that runs it (read by the backends),
and the inference stage's tiling, thresholds and frames in flight (read by
``runtime.inference``, which re-exports it)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inspectd.configtools import doc, fail


@dataclass
class InferenceConfig:
    model: Path | None = doc(
        "Model checkpoint (.safetensors written by training). Empty: the default model shipped "
        "with inspectd.", default=None)
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = doc(
        "Inference runtime: `auto` (PyTorch on CUDA where a GPU is and `device` allows it, else the "
        "fastest CPU runtime installed: `openvino`, else `onnxruntime`, else `torch`; the choice and "
        "its reason are logged at start), `torch` (PyTorch, CPU or CUDA), `onnxruntime` or `openvino` "
        "(the checkpoint exported to ONNX once and cached; CPU). On a 2-core Zen 4, `openvino` with "
        "bf16 runs the model 4-5x faster than torch on the CPU at no accuracy cost (BENCHMARKS.md).",
        default="auto")
    precision: Literal["auto", "fp32", "bf16", "int8"] = doc(
        "Arithmetic of the `openvino` backend: `auto` = `bf16` where the CPU has native bf16 "
        "(avx512_bf16/AMX; mAP within 0.001 of fp32 on NEU val, models/README.md), else `fp32`. "
        "`int8`: the model quantised with NNCF (post-training, calibrated on training images; box "
        "decoding and the heads' output layers kept in float), built once into the model cache by "
        "`inspectd export --int8 --calib-data DIR`; on NEU val within 0.003 of fp32 (mAP@0.5, mIoU), but "
        "on a Zen 4 no faster than bf16 (BENCHMARKS.md, issue 13). Other backends ignore it.", default="auto")
    device: Literal["cpu", "cuda", "auto"] = doc(
        "Where the model runs: `cpu`, `cuda` (an error if no CUDA device is available), or `auto` "
        "(CUDA when available, else CPU).", default="auto")
    half: bool = doc(
        "Run the model in half precision (fp16) on CUDA: about twice as fast, same detections "
        "within rounding. Ignored on CPU.", default=True)
    threads: int = doc(
        "CPU threads the backend may use for one frame; 0 = the runtime's default (all cores). "
        "On a shared machine, leave cores for acquisition and the bus.", default=0)
    streams: int = doc(
        "`openvino` only: frames the model computes at the same time, each on its share of the "
        "cores (OpenVINO's streams). 0 = 2 where the CPU has at least 2 cores, else 1. 1 = one "
        "frame at a time on every thread (each frame soonest, but the threads wait for each other "
        "whenever the rest of the pipeline takes a core from one of them). 2 on a 2-core CPU = one "
        "frame per core, no waiting: 1.3x the frames/s end to end in BENCHMARKS.md (173 against "
        "134), and a lower capture-to-publish latency under load. Needs in_flight >= streams.",
        default=0)
    in_flight: int = doc(
        "Frames the model is given back to back. 0 = the model's streams + 1 (2 with one stream, "
        "3 with two). With one stream more than it computes at once, the model starts on the next "
        "frame while the previous one is decoded, merged and published, so it does not wait for "
        "them. A frame is never held back to wait for the next one: with an empty ring buffer each "
        "frame is finished at once, so latency does not grow. 1 = strictly one frame at a time. The "
        "ring buffer should have at least in_flight + 2 slots.", default=0)
    skip_late: bool = doc(
        "Paced runs only (a camera, or a recording replayed at its rate): a frame whose verdict "
        "cannot be published before its strip reaches the reject gate (now plus the recent time "
        "per frame is past its `gate_deadline_wall_ns`) is not inspected but published at once as "
        "uninspected (reason `deadline`), so that the gate rejects it in time and the model's time "
        "goes to frames that can still make it. false: inspect it anyway; its verdict comes late "
        "(counted as `late`), which for the line is uninspected strip too.", default=True)
    capacity_check: Literal["warn", "fail", "off"] = doc(
        "At start (run, replay --realtime, check-config), after the self-test: a few frames of the "
        "real frame size are timed through the stage and the frames/s this machine inspects is "
        "compared with what the line needs (a camera's frame_rate, else line speed / frame length; "
        "a paced recording's rate). Logged as `capacity` and sent in the status event. Below the "
        "need every verdict comes late: `warn` logs `capacity_short` (what to do: a GPU, fewer or "
        "larger tiles, a slower line) and runs on; `fail` exits 78 instead; `off` measures nothing. "
        "Skipped for a recording replayed as fast as it goes (no line rate).", default="warn")
    tile_overlap_px: int = doc(
        "Minimum overlap, in frame pixels, between neighbouring tiles. A defect narrower than the "
        "overlap is seen whole by at least one tile; wider ones are cut by tile edges and fused "
        "back into one box. Must be less than the model's input size.", default=32)
    conf_threshold: float = doc(
        "Detections scoring below this (objectness x class probability) are discarded before "
        "NMS. Kept below the merge rules' min_score so that weak boxes can still confirm a "
        "segmented region.", default=0.1)
    iou_threshold: float = doc(
        "NMS within a tile: a box overlapping a better box of its class by more than this IoU "
        "is suppressed.", default=0.45)
    max_det: int = doc("Most detections kept per tile after NMS.", default=100)
    fuse_edge_px: float = doc(
        "Cross-tile fusion: a box within this many pixels of an inner tile edge counts as cut by "
        "it, and two parts of one defect may be this far apart and still be joined.", default=8.0)
    fuse_duplicate_overlap: float = doc(
        "Cross-tile fusion: boxes of one class from two tiles are the same defect when their "
        "intersection covers at least this fraction of the smaller box.", default=0.6)
    pad: Literal["mean", "reflect", "constant"] = doc(
        "How a frame smaller than the model input is padded (the frame is centred in the tile): "
        "`mean` (the frame's mean grey, as training pads its 200 x 200 images to the input "
        "size), `reflect` (mirror the strip's own texture) or `constant` (`pad_value`).",
        default="mean")
    pad_value: int = doc("Grey level of `constant` padding.", default=114)

    def streams_for(self, backend: str) -> int:
        """The streams ``backend`` runs: ``streams``, or for 0 the default (2 for openvino on a
        CPU of 2 or more cores: one frame per core, which beats all cores on one frame here)."""
        if self.streams:
            return self.streams
        # Never more streams than frames in flight: a stream with no frame idles its cores.
        return min(2, os.cpu_count() or 1, self.in_flight or 2) if backend == "openvino" else 1

    def in_flight_for(self, concurrent_calls: int) -> int:
        """The frames in flight with a backend that runs ``concurrent_calls`` at once."""
        return self.in_flight or min(4, concurrent_calls + 1)

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if self.threads < 0:
            fail(where, p + "threads", f"must be >= 0 (0 = default), got {self.threads}")
        if self.tile_overlap_px < 0:
            fail(where, p + "tile_overlap_px", f"must be >= 0, got {self.tile_overlap_px}")
        for name in ("conf_threshold", "iou_threshold", "fuse_duplicate_overlap"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                fail(where, p + name, f"expected a value between 0 and 1, got {v!r}")
        if not 0 <= self.in_flight <= 4:
            fail(where, p + "in_flight", f"expected 1 to 4 frames (0: streams + 1), got {self.in_flight}")
        if self.streams < 0 or (self.in_flight and self.streams > self.in_flight):
            fail(where, p + "streams", f"expected 0 (auto) or 1 to in_flight ({self.in_flight or 4}), "
                                       f"got {self.streams}")
        if self.streams > 1 and self.backend not in ("openvino", "auto"):
            fail(where, p + "streams", f"only the openvino backend runs streams; {self.backend} takes 1")
        if self.capacity_check not in ("warn", "fail", "off"):
            fail(where, p + "capacity_check", f"expected warn, fail or off, got {self.capacity_check!r}")
        if self.max_det < 1:
            fail(where, p + "max_det", f"must be >= 1, got {self.max_det}")
        if self.fuse_edge_px < 0:
            fail(where, p + "fuse_edge_px", f"must be >= 0, got {self.fuse_edge_px}")
        if not 0 <= self.pad_value <= 255:
            fail(where, p + "pad_value", f"expected a grey level 0..255, got {self.pad_value}")

