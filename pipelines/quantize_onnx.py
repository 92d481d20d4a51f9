#!/usr/bin/env python3
"""Make the int8 model for the onnxruntime backend: static QDQ quantisation of a checkpoint's
exported graph, calibrated on NEU training images.

    python pipelines/quantize_onnx.py --model inspectd/models/inspectd-n-neu.safetensors \\
        --data ../shared/data/neu --out models/inspectd-n-neu.int8.onnx

The output is a model file of its own (model config, class names and precision in its ONNX
metadata): set ``inference.model`` to it with ``inference.backend: onnxruntime``. Its accuracy
cost against fp32 on val is measured by pipelines/backend_accuracy.py (see BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspectd.backends.onnx_model import prepare  # noqa: E402
from inspectd.backends.quantize import calibration_tiles, quantize_int8  # noqa: E402
from inspectd.data.neu import read_stems  # noqa: E402
from inspectd.errors import InspectdError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint (.safetensors)")
    p.add_argument("--data", required=True, help="NEU-style folder with images/ and the split list")
    p.add_argument("--split", default="train.txt", help="stems to calibrate on (default: train.txt in --data)")
    p.add_argument("--images", type=int, default=64, help="calibration images, spread over the split (default: 64)")
    p.add_argument("--out", required=True, help="int8 .onnx to write")
    args = p.parse_args(argv)
    try:
        data = Path(args.data)
        split = Path(args.split) if Path(args.split).is_file() else data / args.split
        fp32 = prepare(args.model)
        tiles = calibration_tiles(data, read_stems(split), fp32, args.images)
        q = quantize_int8(fp32, args.out, tiles, f"{len(tiles)} images of {split}")
    except InspectdError as exc:
        print(f"quantize_onnx: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {q.path}: {q.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
