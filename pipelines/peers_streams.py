#!/usr/bin/env python3
"""inspectd's exported graph against Ultralytics YOLO11n-seg and YOLO11n with OpenVINO streams:
each graph kept busy with ``--streams`` infer requests at once, interleaved in rounds.

    python pipelines/peers_streams.py --streams 2 --rounds 8 --calls 120

``inspectd bench --peers`` compares the graphs one call at a time (one stream, latency mode).
The daemon's default on a CPU of 2 or more cores is two streams (``inference.streams: 0``), so
this runs every graph the way the default runs inspectd's: ``--streams`` requests in flight,
each started again as soon as its outputs are copied out. bf16, batch 1, 224 x 224, random
weights for the peers (speed does not depend on them). Needs the ``bench-peers`` extra.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _runner(compiled: Any, x: np.ndarray, streams: int):
    """``run(n)``: n calls with ``streams`` requests kept in flight."""
    reqs = [compiled.create_infer_request() for _ in range(streams)]
    n_out = len(compiled.outputs)

    def run(n: int) -> None:
        for i in range(n):
            r = reqs[i % streams]
            if i >= streams:
                r.wait()
                for k in range(n_out):
                    r.get_output_tensor(k).data.copy()     # as the backend does
            r.start_async({0: x})
        for r in reqs:
            r.wait()
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=120, help="timed calls per graph and round")
    args = p.parse_args(argv)

    import openvino as ov

    from inspectd.backends.onnx_model import LABEL_OUTPUTS, cache_dir, prepare
    from inspectd.bench.peers import export_peer, interleave, ultralytics_missing
    from inspectd.model import default_model_path

    missing = ultralytics_missing()
    if missing:
        print(f"peers_streams: {missing}", file=sys.stderr)
        return 2
    core = ov.Core()
    props = {"INFERENCE_PRECISION_HINT": "bf16", "NUM_STREAMS": str(args.streams),
             "PERFORMANCE_HINT": "THROUGHPUT" if args.streams > 1 else "LATENCY"}
    # inspectd's graph with the outputs the inference stage reads, as OpenVinoBackend compiles it
    m = core.read_model(str(prepare(default_model_path()).path))
    sub = ov.Model([m.output(n) for n in LABEL_OUTPUTS], m.get_parameters(), "inspectd")
    sub.reshape({0: ov.PartialShape([1, 1, 224, 224])})
    graphs = {"inspectd": (core.compile_model(sub, "CPU", props),
                           np.random.default_rng(0).integers(0, 255, (1, 1, 224, 224), dtype=np.uint8))}
    for name in ("yolo11n-seg", "yolo11n"):
        pm = core.read_model(str(export_peer(name, (224, 224), cache_dir())))
        shape = tuple(int(d) for d in pm.input(0).get_shape())
        graphs[name] = (core.compile_model(pm, "CPU", props), np.random.default_rng(0).random(shape, dtype=np.float32))
    runners = {k: _runner(c, x, args.streams) for k, (c, x) in graphs.items()}
    # The bench's own interleaving (rotating order, one unmeasured run first); one "call" here is
    # --calls frames with the requests kept in flight, so calls/s x --calls is frames/s.
    per_run, _ = interleave({k: (lambda run=run: run(args.calls)) for k, run in runners.items()},
                            rounds=args.rounds, per_round=1)
    fps = {k: [v * args.calls for v in vs] for k, vs in per_run.items()}
    seg = [a / b for a, b in zip(fps["inspectd"], fps["yolo11n-seg"])]
    det = [a / b for a, b in zip(fps["inspectd"], fps["yolo11n"])]
    med = {k: statistics.median(v) for k, v in fps.items()}
    print(f"{args.streams} stream(s), bf16, {args.rounds} rounds of {args.calls} calls: inspectd {med['inspectd']:.1f}, "
          f"YOLO11n-seg {med['yolo11n-seg']:.1f}, YOLO11n {med['yolo11n']:.1f} frames/s; inspectd / YOLO11n-seg "
          f"{statistics.median(seg):.3f} ({min(seg):.2f}-{max(seg):.2f}), / YOLO11n {statistics.median(det):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
