#!/usr/bin/env python3
"""The full pipeline against the model alone, interleaved in short rounds in one process.

    python pipelines/pipeline_interleave.py --rounds 6 --frames 400 default nice=10 [si=0.5]

This machine's speed drifts by 2x from minute to minute, so ``inspectd bench``'s one pipeline run
between two model-alone runs gives a ratio that says more about the minute than the pipeline.
Here each round runs the model alone, then each variant's pipeline (in an order that rotates
every round), then the model alone again; each variant's ratio in a round is its pipeline rate
over the mean of that round's two model-alone rates. Reported: the median and range of the
per-round ratios; the model's calls in the pipeline (mean time, and the share of the run in
which the model had no call: time it waited for the pipeline); the CPU per frame by thread.

Variants (OpenVINO, ``--precision``, the default model, the service's default pipeline):
  default   as configured
  si=MS     the interpreter's GIL switch interval set to MS milliseconds
  nice=N    every Python thread the pipeline starts at niceness N (the runtime's worker
            threads, started before, keep theirs)
  streams=N OpenVINO streams (``inference.streams``; N + 1 frames in flight); its ratio is
            taken against the model alone with the same streams, N calls at once
  options combine with ':' (si=0.5:nice=10)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Spans:
    """The backend, with the start and end of each ``infer_labels`` call recorded."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.spans: list[tuple[int, int]] = []
        for name in ("name", "precision", "input_size", "channels", "class_names", "seg_class_names",
                     "output_generations", "concurrent_calls", "infer"):
            setattr(self, name, getattr(inner, name))

    def infer_labels(self, tiles: Any) -> Any:
        t = time.perf_counter_ns()
        out = self._inner.infer_labels(tiles)
        self.spans.append((t, time.perf_counter_ns()))
        return out

    def close(self) -> None:
        self._inner.close()

    def model_figures(self) -> tuple[float, float]:
        """(mean ms per call, share of the time from the first call's start to the last's end
        in which no call ran), over the calls after the first five."""
        s = sorted(self.spans[5:])
        covered, reach = 0, s[0][0]             # calls may overlap (streams): their union
        for b, e in s:
            if e > reach:
                covered += e - max(b, reach)
                reach = e
        return sum(e - b for b, e in s) / len(s) / 1e6, 1 - covered / (reach - s[0][0])


_nice = 0
_thread_run = threading.Thread.run


def _run_niced(self: threading.Thread) -> None:
    if _nice:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _nice)
    _thread_run(self)


threading.Thread.run = _run_niced      # type: ignore[method-assign]


def _parse_variant(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for opt in text.split(":"):
        if opt == "default":
            continue
        key, _, val = opt.partition("=")
        try:
            if key not in ("si", "nice", "streams"):
                raise ValueError
            out[key] = float(val)
        except ValueError:
            raise SystemExit(f"variant {text!r}: expected default, si=MS, nice=N or streams=N, joined by ':'") from None
    return out


def main(argv: list[str] | None = None) -> int:
    global _nice
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("variants", nargs="+", help="default, si=MS, nice=N, streams=N (combined with ':')")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--frames", type=int, default=400, help="frames per model-alone and pipeline run")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--threads", type=int, default=0, help="inference.threads (0: all cores)")
    args = p.parse_args(argv)
    variants = [(v, _parse_variant(v)) for v in args.variants]

    from inspectd.backends.config import InferenceConfig
    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.openvino_backend import OpenVinoBackend
    from inspectd.bench import read_frames, write_recording
    from inspectd.bench.measure import measure_model, measure_pipeline
    from inspectd.model import default_model_path
    from inspectd.runtime.tiling import TileCutter, TileGrid

    model = default_model_path()
    prepared = prepare(model)

    def make(streams: int) -> OpenVinoBackend:
        """A fresh backend, compiled and warm: the pipeline closes the one it is given."""
        b = OpenVinoBackend(prepared, threads=args.threads, precision=args.precision, streams=streams)
        b.warmup()
        return b

    def inference_config(streams: int) -> InferenceConfig:
        return InferenceConfig(model=str(model), backend="openvino", precision=args.precision, threads=args.threads,
                               streams=streams, in_flight=2 if streams == 1 else streams + 1)

    icfg = inference_config(1)
    stream_counts = sorted({int(opts.get("streams", 1)) for _, opts in variants})
    ratios: dict[str, list[float]] = {v: [] for v, _ in variants}
    rates: dict[str, list[float]] = {v: [] for v, _ in variants}
    calls: dict[str, list[tuple[float, float]]] = {v: [] for v, _ in variants}
    alone_ms: dict[int, list[float]] = {n: [] for n in stream_counts}
    cpu: dict[str, list[dict[str, float]]] = {v: [] for v, _ in variants}
    default_si = sys.getswitchinterval()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "frames.mkv"
        write_recording(video, args.frames, (200, 200))
        frames = read_frames(video)
        mcfg = prepared.config
        grid = TileGrid.build(200, 200, int(mcfg.input_size[0]), int(mcfg.input_size[1]), icfg.tile_overlap_px)
        cutter = TileCutter(grid, frames[0].image.shape, int(mcfg.in_channels), pad=icfg.pad, pad_value=icfg.pad_value)
        batches = [cutter.cut(f.image).copy() for f in frames]     # the stage's tiles, cut once
        for r in range(args.rounds):
            backends = {n: make(n) for n in stream_counts}
            first = {n: measure_model(b, batches) for n, b in backends.items()}
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            got: dict[str, float] = {}
            for name, opts in order:
                sys.setswitchinterval(opts["si"] / 1000 if "si" in opts else default_si)
                _nice = int(opts.get("nice", 0))
                try:
                    n = int(opts.get("streams", 1))
                    spans = _Spans(make(n))
                    res = measure_pipeline(spans, video, inference_config(n), None, args.frames)
                finally:
                    sys.setswitchinterval(default_si)
                    _nice = 0
                got[name] = res["frames_per_s"]
                calls[name].append(spans.model_figures())
                cpu[name].append({k: 1000 * v / max(1, res["frames"]) for k, v in res["cpu_s_by_thread"].items()})
            ref: dict[int, float] = {}
            alone_text = []
            for n, b in backends.items():
                again = measure_model(b, batches)
                b.close()
                ref[n] = (first[n]["frames_per_s"] + again["frames_per_s"]) / 2
                alone_ms[n].append((first[n]["ms_per_frame"]["mean"] + again["ms_per_frame"]["mean"]) / 2)
                alone_text.append(f"{first[n]['frames_per_s']:.1f} / {again['frames_per_s']:.1f}"
                                  + ("" if n == 1 else f" ({n} streams)"))
            line = []
            for name, opts in variants:
                rn = ref[int(opts.get("streams", 1))]
                ratios[name].append(got[name] / rn)
                rates[name].append(got[name])
                line.append(f"{name} {got[name]:.1f} ({got[name] / rn:.3f})")
            print(f"round {r + 1}: model alone {', '.join(alone_text)}; " + ", ".join(line), flush=True)
    print("\nThe model alone: " + ", ".join(f"{statistics.fmean(v):.2f} ms per call with {n} stream(s)"
                                           for n, v in alone_ms.items()) + " (mean over rounds)\n")
    print("| variant | pipeline / model alone, median (range) | pipeline frames/s, median | model ms per call "
          "in the pipeline (mean) | model idle share (mean) | CPU ms per frame by thread (mean) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, _ in variants:
        rs = sorted(ratios[name])
        threads: dict[str, float] = {}
        for d in cpu[name]:
            for k, v in d.items():
                threads[k] = threads.get(k, 0.0) + v / len(cpu[name])
        by = ", ".join(f"{k} {v:.2f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]))
        call_ms = statistics.fmean(m for m, _ in calls[name])
        idle = statistics.fmean(i for _, i in calls[name])
        print(f"| {name} | {statistics.median(rs):.3f} ({rs[0]:.3f}-{rs[-1]:.3f}) | "
              f"{statistics.median(rates[name]):.1f} | {call_ms:.2f} | {idle:.3f} | {by} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
