"""``inspectd bench``: model, inference stage and full pipeline speed on the same frames."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

NAME = "bench"
_BACKENDS = "torch, onnxruntime, onnxruntime-int8, openvino, openvino-bf16, openvino-int8, torch-cuda"


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 200x200, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="measure model, inference stage and full pipeline speed",
        description=(
            "In one process and one run, on the same frames (a lossless recording written to a "
            "temporary folder, cut from samples/neu_strip.mkv): the model alone on each backend "
            "(one call per frame's tiles), the inference stage (tiling, decoding, merge), and the "
            "full pipeline (video source, ring buffer, inference, publisher on a tcp://127.0.0.1 "
            "socket, a subscriber process receiving every verdict), unpaced and paced at --rate. "
            "Reports frames and tiles per second, capture-to-publish latency p50/p99, peak memory "
            "and the ratio of the pipeline's rate to the model's. A markdown table on stdout, "
            "progress on stderr, every number with --json. Unavailable backends (no CUDA device, "
            "runtime not installed) are reported as such and skipped."),
    )
    p.add_argument("--json", metavar="OUT", help="also write every figure as JSON to OUT")
    p.add_argument("--model", metavar="CKPT",
                   help="checkpoint (default: the shipped model; if it is missing, the n preset with "
                        "random weights, said so in the output)")
    p.add_argument("--frames", type=int, default=300, metavar="N", help="frames per measurement (default: 300)")
    p.add_argument("--frame-size", type=_size, default=(200, 200), metavar="HxW",
                   help="frame height x width in pixels (default: 200x200, one NEU image per frame as in "
                        "the paper's frame rate)")
    p.add_argument("--backends", metavar="LIST",
                   help=f"comma-separated backends to measure alone (default: all of {_BACKENDS})")
    p.add_argument("--pipeline-backend", metavar="NAME",
                   help="backend of the stage and pipeline runs (default: the fastest model-alone one)")
    p.add_argument("--rate", type=float, default=50.0, metavar="FPS",
                   help="input rate of the paced pipeline run, the latency measurement (default: 50; 0 skips it)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads per backend (default: 0, the runtime's default: one per core)")
    p.add_argument("--in-flight", type=int, default=0, metavar="N",
                   help="frames with the model at once in the stage and pipeline runs, as "
                        "inference.in_flight (default: 0, the backend's streams + 1; 1 = strictly one "
                        "frame at a time)")
    p.add_argument("--streams", type=int, default=0, metavar="N",
                   help="OpenVINO streams, as inference.streams: frames computed at once, each on its "
                        "share of the cores (default: 0, as the daemon: 2 on a CPU of 2 or more cores)")
    p.add_argument("--calib-data", metavar="DIR",
                   help="NEU-style folder (train.txt, images/) to calibrate onnxruntime-int8 on "
                        "(default: a <model>.int8.onnx next to the checkpoint if there is one, else "
                        "the bench frames)")
    p.add_argument("--workdir", metavar="DIR", help="keep the recording here (default: a temporary folder)")
    p.add_argument("--peers", action="store_true",
                   help="peer comparison instead: the exported model against Ultralytics YOLO11n-seg and "
                        "YOLO11n (random weights, exported to ONNX at the same input size) on OpenVINO, bf16 "
                        "and fp32, interleaved in one run, reported as ratios. Needs the optional extra "
                        "inspectd[bench-peers]; without it, says so in one line and skips them")
    p.add_argument("--peer-rounds", type=int, default=8, metavar="N",
                   help="--peers: interleaved rounds, 40 calls per model and precision each (default: 8)")
    p.add_argument("--camera-fps", metavar="LIST",
                   help="camera mode instead: comma-separated frame rates of the viky GenICam simulator "
                        "('max' for its maximum, 200 at 200x200), e.g. 'max,20'. In one run: the pipeline on "
                        "a recording of --frames of the camera's own frames (the backend's rate), then on "
                        "the live camera at each rate for --camera-seconds, and the ratio. Target: a camera "
                        "faster than the model inspected at >= 0.9 x the recording rate, a slower one "
                        "completely. Backend: --pipeline-backend (default openvino-bf16 where the CPU has "
                        "bf16, else torch)")
    p.add_argument("--camera-seconds", type=float, default=10.0, metavar="S",
                   help="length of each live camera run (default: 10)")
    p.add_argument("--camera-acquisition", default="process", metavar="LIST",
                   help="camera mode: where the camera is read, comma-separated: 'process' (the service's "
                        "way, its own process) and/or 'thread' (a thread of the inspecting process, the "
                        "design before; for comparison) (default: process)")
    p.set_defaults(func=run)


def _acquisition(text: str) -> tuple[str, ...]:
    from inspectd.errors import UsageError

    ways = tuple(w.strip() for w in text.split(",") if w.strip())
    if not ways or any(w not in ("process", "thread") for w in ways):
        raise UsageError(f"--camera-acquisition {text}: expected process, thread or both")
    return ways


def run(args: argparse.Namespace) -> int:
    from inspectd.errors import InspectdError
    from inspectd.logging_setup import LogConfig, configure_logging

    json_path = Path(args.json).expanduser() if args.json else None
    if json_path is not None and not json_path.parent.is_dir():
        raise InspectdError(f"--json {args.json}: folder {json_path.parent} does not exist")
    calib = Path(args.calib_data).expanduser() if args.calib_data else None
    if calib is not None and not (calib / "train.txt").is_file():
        raise InspectdError(f"--calib-data {args.calib_data}: no train.txt there (expected the layout of shared/data/neu)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    if args.backends is not None and not backends:
        raise InspectdError("--backends: empty list")
    configure_logging(LogConfig(level="warning", verdicts="none"))

    from inspectd.bench import BenchOptions, markdown, run_bench

    if args.peers:
        from inspectd.bench import resolve_model
        from inspectd.bench.peers import markdown as peers_markdown
        from inspectd.bench.peers import run_peers

        with tempfile.TemporaryDirectory(prefix="inspectd-bench-") as tmp:
            checkpoint, _ = resolve_model(BenchOptions(model=Path(args.model).expanduser() if args.model else None),
                                          Path(tmp), lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
            result = run_peers(checkpoint, threads=args.threads, rounds=args.peer_rounds)
        sys.stdout.write(peers_markdown(result))
        sys.stdout.flush()
        if json_path is not None:
            json_path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        return 0

    if args.camera_fps:
        from inspectd.bench.camera import markdown as camera_markdown
        from inspectd.bench.camera import parse_rates, run_camera_bench

        result = run_camera_bench(BenchOptions(
            model=Path(args.model).expanduser() if args.model else None, frames=args.frames,
            frame_size=args.frame_size, backends=backends, pipeline_backend=args.pipeline_backend,
            threads=args.threads, in_flight=args.in_flight, streams=args.streams,
            workdir=Path(args.workdir).expanduser() if args.workdir else None,
        ), parse_rates(args.camera_fps), args.camera_seconds,
            progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True),
            acquisition=_acquisition(args.camera_acquisition))
        sys.stdout.write(camera_markdown(result))
        sys.stdout.flush()
        if json_path is not None:
            json_path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        return 0

    result = run_bench(BenchOptions(
        model=Path(args.model).expanduser() if args.model else None,
        frames=args.frames, frame_size=args.frame_size, backends=backends,
        pipeline_backend=args.pipeline_backend, rate=args.rate, threads=args.threads,
        in_flight=args.in_flight, streams=args.streams, calib_data=calib,
        workdir=Path(args.workdir).expanduser() if args.workdir else None,
    ))
    sys.stdout.write(markdown(result))
    sys.stdout.flush()
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return 0
