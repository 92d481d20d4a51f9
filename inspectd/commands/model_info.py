"""`inspectd model-info`: parameters per path and GFLOPs of a preset or checkpoint."""
from __future__ import annotations

import argparse
import json


def _size(text: str) -> list[int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 256x320, got {text!r}") from None
    return [h, w]


def register(sub) -> None:
    p = sub.add_parser("model-info", help="parameters and GFLOPs of a model preset",
                       description="Parameters (total, detection path, segmentation path) and GFLOPs "
                                   "of the inference graph at batch 1.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="n", help="model preset name or YAML path (default: n)")
    src.add_argument("--model", help="a checkpoint instead of a preset")
    p.add_argument("--input", type=_size, metavar="HxW", help="input size (multiples of 32; default: the model's)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="input channels (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from inspectd.model.config import load_preset
    from inspectd.model.info import model_info
    from inspectd.model.network import build_model

    if args.model:
        from inspectd.model.checkpoint import read_metadata
        cfg, _ = read_metadata(args.model)
    else:
        cfg = load_preset(args.preset)
    changes = {}
    if args.input:
        changes["input_size"] = args.input
    if args.channels:
        changes["in_channels"] = args.channels
    if changes:
        from inspectd.configtools import ConfigError
        from inspectd.errors import InspectdError
        try:
            cfg = cfg.from_dict({**cfg.to_dict(), **changes}, "--input/--channels")
        except ConfigError as exc:     # a bad argument, not a bad config file: usage error, 2
            raise InspectdError(str(exc)) from None
    info = model_info(build_model(cfg))
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    rows = [
        ("preset", info.preset),
        ("input", f"{info.in_channels} x {info.input_size[0]} x {info.input_size[1]}"),
        ("parameters, total (with training-only heads)", f"{info.params_total:,}"),
        ("parameters, inference graph", f"{info.params_inference:,}"),
        ("parameters, detection path (encoder + PAN + head)", f"{info.params_detection:,}"),
        ("parameters, segmentation path (encoder + decoder)", f"{info.params_segmentation:,}"),
        ("parameters, shared encoder", f"{info.params_encoder:,}"),
        ("GFLOPs, inference graph, batch 1", f"{info.gflops:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
