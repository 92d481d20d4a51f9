#!/usr/bin/env python3
"""Several OpenVINO graphs (or precisions of one) interleaved in one run: frames/s and ratios.

    python pipelines/ov_interleave.py --threads 1 GRAPH:PRECISION [GRAPH:PRECISION ...]
    python pipelines/ov_interleave.py --threads 1 shipped:bf16 shipped:f32 int8:bf16 /tmp/other-int8.xml:bf16

GRAPH: an ONNX or IR file with a uint8 [N, C, H, W] input and det/labels/conf outputs, or
``shipped`` (the shipped model's exported graph) or ``int8`` (its NNCF IR from the model
cache). Batch 1, latency mode, one stream; every graph runs ``--calls`` calls per round, the
order rotating from round to round; ratios are against the first graph, per round, median.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("graphs", nargs="+", metavar="GRAPH:PRECISION")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=40)
    args = p.parse_args(argv)

    import openvino as ov

    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.openvino_int8 import int8_ir_path
    from inspectd.bench.peers import interleave
    from inspectd.model import default_model_path

    core = ov.Core()
    reqs = {}
    for spec in args.graphs:
        graph, _, prec = spec.rpartition(":")
        if graph == "shipped":
            path = prepare(default_model_path()).path
        elif graph == "int8":
            path = int8_ir_path(default_model_path())
        else:
            path = Path(graph)
        model = core.read_model(str(path))
        model = ov.Model([model.output(n) for n in ("det", "labels", "conf")], model.get_parameters(), "x")
        shape = model.input(0).get_partial_shape()
        model.reshape({0: ov.PartialShape([1, *[int(d.get_length()) for d in list(shape)[1:]]])})
        props = {"INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if args.threads:
            props["INFERENCE_NUM_THREADS"] = str(args.threads)
        reqs[spec] = core.compile_model(model, "CPU", props).create_infer_request()
    x = np.random.default_rng(0).integers(0, 256, tuple(model.input(0).get_shape()), dtype=np.uint8)
    fps, _ = interleave({k: (lambda req=req: req.infer({0: x})) for k, req in reqs.items()}, args.rounds, args.calls)
    first = next(iter(reqs))
    print(f"| graph:precision | frames/s (median, min-max) | / {first} (median of per-round ratios) |\n|---|---:|---:|")
    for k, v in fps.items():
        ratio = statistics.median(a / b for a, b in zip(v, fps[first]))
        print(f"| {k} | {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f}) | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
