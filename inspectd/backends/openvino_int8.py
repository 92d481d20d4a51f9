"""int8 for the OpenVINO backend: NNCF post-training quantisation of the exported graph.

Unlike the ONNX Runtime QDQ graph (``quantize.py``), which OpenVINO runs no faster than fp32,
this is the field's route for OpenVINO: the graph converted by OpenVINO first (so that its
fusions, SiLU as one Swish op, BatchNorm folded, are in place before the quantisers go in,
and every convolution keeps its activation fused), then NNCF's post-training quantisation
calibrated on training images. Kept in float (``IGNORED``): everything outside the network
(box decoding in pixel coordinates, the softmax, the label outputs) and the heads' output
convolutions, whose logits would otherwise be rounded to 256 levels per tensor. The float
parts run in bf16 where the CPU has it.

The result is an OpenVINO IR (``.xml`` + ``.bin``) in the model cache, named after the
checkpoint's SHA-256 and the calibration, built by ``inspectd export --int8 --calib-data``
and found there by ``inference.precision: int8``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from inspectd.backends.onnx_model import OnnxModel, cache_dir, file_sha256
from inspectd.errors import InspectdError

# Bump when the quantisation recipe changes: old cache entries are then not used.
RECIPE_VERSION = 1
IGNORED = [r"^(?!/model/).*", r"/model/det_head/m\.\d+/Conv.*", r"/model/seg_head/classifier/.*"]


def int8_ir_path(checkpoint: Path, digest: str | None = None, cache: Path | None = None) -> Path:
    """Where the int8 IR of ``checkpoint`` lives in the cache."""
    digest = digest or file_sha256(checkpoint)
    return (cache or cache_dir()) / "openvino" / f"{checkpoint.stem}-{digest[:16]}-int8-r{RECIPE_VERSION}.xml"


def _need_nncf():
    try:
        import nncf
    except ImportError:
        raise InspectdError("int8 for OpenVINO needs NNCF: pip install 'inspectd[int8]' "
                            "(BENCHMARKS.md says how without replacing torch)") from None
    return nncf


def quantize_openvino(model: OnnxModel, tiles: np.ndarray, out: Path) -> Path:
    """Quantise ``model`` (fp32 ONNX) with NNCF, calibrated on uint8 ``tiles`` [N, C, H, W]; write the IR to ``out``."""
    nncf = _need_nncf()
    import logging

    import openvino as ov

    nncf.set_log_level(logging.WARNING)     # else a line per node left in float

    if model.precision != "fp32":
        raise InspectdError(f"model file {model.source} is already {model.precision}; quantise the fp32 model")
    if tiles.ndim != 4 or tiles.dtype != np.uint8 or len(tiles) == 0:
        raise ValueError(f"expected uint8 calibration tiles [N, C, H, W], got {tiles.dtype} {tiles.shape}")
    graph = ov.convert_model(str(model.path))
    c, h, w = (int(s) for s in tiles.shape[1:])
    graph.reshape({0: ov.PartialShape([1, c, h, w])})
    data = nncf.Dataset([tiles[i:i + 1] for i in range(len(tiles))])
    quantized = nncf.quantize(graph, data, subset_size=len(tiles), preset=nncf.QuantizationPreset.PERFORMANCE,
                              ignored_scope=nncf.IgnoredScope(patterns=IGNORED, validate=False))
    # Dynamic batch again: the backend reshapes to the batch it is called with.
    quantized.reshape({0: ov.PartialShape([-1, c, h, w])})
    quantized.set_rt_info(f"NNCF PTQ int8 (performance preset) calibrated on {len(tiles)} tiles", ["inspectd", "note"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, .bin first: a reader never finds an .xml without its weights.
    with tempfile.TemporaryDirectory(prefix=out.name + ".", dir=out.parent) as tmp:
        tmp_xml = Path(tmp) / out.name
        ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(tmp_xml, out)
    return out


def build_int8(checkpoint: Path, data_dir: Path, count: int = 300, progress=print) -> Path:
    """The int8 IR of ``checkpoint`` calibrated on ``count`` images of ``data_dir``/train.txt (cached)."""
    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.quantize import calibration_tiles
    from inspectd.data.neu import read_stems

    _need_nncf()
    split = data_dir / "train.txt"
    if not split.is_file():
        raise InspectdError(f"--calib-data {data_dir}: no train.txt there (expected the layout of shared/data/neu)")
    out = int8_ir_path(checkpoint)
    fp32 = prepare(checkpoint)
    tiles = calibration_tiles(data_dir, read_stems(split), fp32, count)
    progress(f"quantising {checkpoint.name} to int8 with NNCF on {len(tiles)} images of {split}")
    return quantize_openvino(fp32, tiles, out)
