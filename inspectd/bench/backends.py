"""The backends the bench compares, by name: whether each can run here, and each built as the
service builds it (``create_backend``), the int8 variants from a model quantised once."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspectd.errors import InspectdError

if TYPE_CHECKING:
    from inspectd.backends.base import Backend
    from inspectd.backends.config import InferenceConfig

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8", "torch-cuda")

Progress = Callable[[str], None]


def availability(name: str) -> tuple[bool, str]:
    """Whether backend ``name`` can run here, and if not why."""
    if name not in BACKENDS:
        raise InspectdError(f"--backends: unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    if name == "torch":
        return True, ""
    if name == "torch-cuda":
        import torch
        if not torch.cuda.is_available():
            return False, "no CUDA device (torch.cuda.is_available() is False)"
        return True, ""
    if name.startswith("onnxruntime"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed (pip install 'inspectd[onnx]')"
        return True, ""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, "openvino is not installed (pip install 'inspectd[openvino]')"
    if name == "openvino-int8" and importlib.util.find_spec("nncf") is None:
        return False, "nncf is not installed (pip install 'inspectd[int8]')"
    if name == "openvino-bf16":
        from inspectd.backends.openvino_backend import cpu_has_bf16
        if not cpu_has_bf16():
            return False, "this CPU has no native bf16 (AVX512_BF16 or AMX)"
    return True, ""


class BackendFactory:
    """Builds the named backends for one checkpoint (the int8 model is made once, on demand)."""

    def __init__(self, checkpoint: Path, threads: int, calib_data: Path | None, frames: list,
                 progress: Progress, streams: int = 1):
        self.checkpoint = checkpoint
        self.threads = threads
        self.streams = streams
        self.calib_data = calib_data
        self.frames = frames
        self.progress = progress
        self._int8 = None
        self.notes: dict[str, str] = {}

    def int8_model(self):
        if self._int8 is not None:
            return self._int8
        from inspectd.backends.onnx_model import (
            cache_dir,
            file_sha256,
            prepare,
            read_metadata,
        )
        from inspectd.backends.quantize import calibration_tiles, quantize_int8

        shipped = self.checkpoint.with_name(self.checkpoint.stem + ".int8.onnx")
        if shipped.is_file():
            self._int8 = read_metadata(shipped)
            self.notes["onnxruntime-int8"] = f"{shipped.name}: {self._int8.note}"
            return self._int8
        fp32 = prepare(self.checkpoint)
        if self.calib_data is not None:
            from inspectd.data.neu import read_stems
            split = self.calib_data / "train.txt"
            tiles = calibration_tiles(self.calib_data, read_stems(split), fp32, 64)
            what, tag = f"{len(tiles)} images of {split}", "neu"
        else:
            from inspectd.runtime.tiling import TileCutter, TileGrid
            th, tw = fp32.config.input_size
            img = self.frames[0].image
            grid = TileGrid.build(img.shape[0], img.shape[1], th, tw, 32)
            cutter = TileCutter(grid, img.shape, fp32.config.in_channels)
            tiles = np.concatenate([cutter.cut(f.image).copy() for f in self.frames[:64]])[:64]
            what, tag = f"{len(tiles)} tiles of the bench frames", "bench"
        out = cache_dir() / "onnx" / f"{self.checkpoint.stem}-{file_sha256(self.checkpoint)[:16]}-int8-{tag}.onnx"
        if out.is_file():
            self._int8 = read_metadata(out)
        else:
            self.progress(f"quantising to int8 (calibration: {what})")
            self._int8 = quantize_int8(fp32, out, tiles, what)
        self.notes["onnxruntime-int8"] = self._int8.note
        return self._int8

    def openvino_int8(self) -> Path:
        """The NNCF int8 IR: from the model cache (inspectd export --int8), else calibrated now on
        --calib-data, else on the bench frames (a speed figure only; said in the notes)."""
        from inspectd.backends.openvino_int8 import build_int8, int8_ir_path, quantize_openvino

        ir = int8_ir_path(self.checkpoint)
        if ir.is_file():
            self.notes["openvino-int8"] = f"NNCF int8 IR from the model cache ({ir.name})"
            return ir
        if self.calib_data is not None:
            self.notes["openvino-int8"] = f"NNCF int8 calibrated on 300 images of {self.calib_data}"
            return build_int8(self.checkpoint, self.calib_data, 300, self.progress)
        from inspectd.backends.onnx_model import prepare
        fp32 = prepare(self.checkpoint)
        tiles = np.concatenate([b for b in self._bench_tiles(fp32)])[:64]
        self.progress(f"quantising to int8 with NNCF on {len(tiles)} bench tiles")
        self.notes["openvino-int8"] = f"NNCF int8 calibrated on {len(tiles)} bench tiles (speed only)"
        return quantize_openvino(fp32, tiles, ir.with_name(ir.stem + "-bench.xml"))

    def _bench_tiles(self, fp32):
        from inspectd.runtime.tiling import TileCutter, TileGrid
        th, tw = fp32.config.input_size
        img = self.frames[0].image
        grid = TileGrid.build(img.shape[0], img.shape[1], th, tw, 32)
        cutter = TileCutter(grid, img.shape, fp32.config.in_channels)
        return [cutter.cut(f.image).copy() for f in self.frames[:64]]

    def make(self, name: str) -> Backend:
        """Backend ``name``, built as the service builds it (``create_backend``) from the config
        it stands for; the int8 variants take the model this factory quantised."""
        if name == "onnxruntime-int8":
            from inspectd.backends.onnx_backend import OnnxRuntimeBackend
            return OnnxRuntimeBackend(self.int8_model(), threads=self.threads)
        if name == "openvino-int8":
            from inspectd.backends.onnx_model import prepare
            from inspectd.backends.openvino_backend import OpenVinoBackend
            return OpenVinoBackend(prepare(self.checkpoint), threads=self.threads, streams=self.streams,
                                   precision="int8", int8_ir=self.openvino_int8())
        from inspectd.backends import create_backend
        return create_backend(self.config(name))

    def config(self, name: str) -> InferenceConfig:
        """The ``inference`` section that backend ``name`` stands for."""
        from inspectd.backends.config import InferenceConfig

        configs: dict[str, dict[str, Any]] = {
            "torch": {"backend": "torch", "device": "cpu"},
            "torch-cuda": {"backend": "torch", "device": "cuda", "half": True},
            "onnxruntime": {"backend": "onnxruntime", "device": "cpu"},
            "openvino": {"backend": "openvino", "device": "cpu", "precision": "fp32"},
            "openvino-bf16": {"backend": "openvino", "device": "cpu", "precision": "bf16"},
        }
        return InferenceConfig(model=self.checkpoint, threads=self.threads, streams=self.streams, **configs[name])
