#!/usr/bin/env python3
"""Per-layer cost of a graph on OpenVINO's CPU plugin (its performance counters, PERF_COUNT).

    python pipelines/ov_profile.py                        # the shipped model's exported graph, bf16
    python pipelines/ov_profile.py --precision f32 --top 30
    python pipelines/ov_profile.py --int8                 # its NNCF int8 IR (inspectd export --int8)
    python pipelines/ov_profile.py --graph yolo11n-seg.onnx --channels 3

Batch 1, latency mode, one stream, as the openvino backend runs it (only the det, labels and conf
outputs where the graph has them: the call the inference stage makes). Prints the time per
frame by layer type, by module (the exported node names' first levels) and the top layers.
Times are each node's wall time summed over calls, so parallel layers count once per call.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", help="ONNX or IR file (default: the shipped model's exported graph)")
    p.add_argument("--int8", action="store_true", help="the shipped model's int8 IR from the model cache")
    p.add_argument("--precision", default="bf16", choices=("bf16", "f32"), help="inference precision hint")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)

    import openvino as ov

    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.openvino_int8 import int8_ir_path
    from inspectd.model import default_model_path

    path = Path(args.graph) if args.graph else (int8_ir_path(default_model_path()) if args.int8
                                                 else prepare(default_model_path()).path)
    core = ov.Core()
    model = core.read_model(str(path))
    outs = [o for o in model.outputs if o.get_names() & {"det", "labels", "conf"}] or list(model.outputs)
    model = ov.Model(outs, model.get_parameters(), "profiled")
    model.reshape({0: ov.PartialShape([1, args.channels, args.size, args.size])})
    req = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": args.precision, "PERFORMANCE_HINT": "LATENCY",
                                            "NUM_STREAMS": "1", "PERF_COUNT": "YES"}).create_infer_request()
    dtype = model.input(0).get_element_type()
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (1, args.channels, args.size, args.size), dtype=np.uint8) if dtype == ov.Type.u8
         else rng.random((1, args.channels, args.size, args.size), dtype=np.float32))
    for _ in range(10):
        req.infer({0: x})
    layers: dict = collections.defaultdict(float)
    types: dict = collections.defaultdict(float)
    modules: dict = collections.defaultdict(float)
    total = 0.0
    for _ in range(args.calls):
        req.infer({0: x})
        for info in req.profiling_info:
            us = info.real_time.total_seconds() * 1e6
            total += us
            layers[(info.node_name, info.node_type, info.exec_type)] += us
            types[info.node_type] += us
            parts = info.node_name.split("/")
            modules["/".join(parts[1:4]) if info.node_name.startswith("/model/") else "(outside /model/: decode, tail)"] += us
    n = args.calls
    print(f"{path.name}, {args.precision}: {total / n / 1000:.2f} ms per frame (sum of layer times)\n")
    for title, table in (("layer type", types), ("module", modules)):
        print(f"| {title} | us/frame | share |\n|---|---:|---:|")
        for k, v in sorted(table.items(), key=lambda kv: -kv[1])[:10]:
            print(f"| {k} | {v / n:.0f} | {100 * v / total:.1f} % |")
        print()
    print("| layer | type | kernel | us/frame | share |\n|---|---|---|---:|---:|")
    for (name, typ, ex), v in sorted(layers.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {name} | {typ} | {ex} | {v / n:.0f} | {100 * v / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
