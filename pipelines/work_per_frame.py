#!/usr/bin/env python3
"""The pipeline's work per frame outside the model, part by part, on recorded model outputs.

    python pipelines/work_per_frame.py --record outputs.npz --frames 100
    python pipelines/work_per_frame.py --replay outputs.npz --frames 300 --passes 5 [--parts stage,publish]
    python pipelines/work_per_frame.py --replay outputs.npz --frames 200 --parts stage --profile

``--record`` runs the default model (OpenVINO fp32) once on the bench's NEU frames and keeps the
frames and the model's outputs. ``--replay`` then needs no runtime at all: it feeds the recorded
outputs through the inference stage (decoding, NMS, stitching, merge, placement), the
publisher's encoding and sending (a real PUB socket on loopback) and the alarm detector, as the
pipeline's threads do, and prints each part's CPU time per frame (``time.thread_time``, best of
``--passes``). The model is not run, so the figure is the work the model's cores must share.

CPU time on a shared virtual machine drifts with the minute; for a figure that does not,
count instructions: run ``--replay`` under ``valgrind --tool=callgrind`` at two ``--frames``
values (e.g. 0 and 200) and divide the difference of the totals by the difference of frames.
``--profile`` adds cProfile's top functions and the Python-level calls per frame of one more
pass (it replaces ``pipelines/postprocess_cpu.py``, which timed the stage alone this way).
The script uses only interfaces that older versions have, so it can time them too
(``PYTHONPATH=<old checkout> python pipelines/work_per_frame.py --replay ...``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def record(path: Path, frames: int) -> None:
    import tempfile

    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.openvino_backend import OpenVinoBackend
    from inspectd.bench import read_frames, write_recording
    from inspectd.model import default_model_path

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "frames.mkv"
        write_recording(video, frames, (200, 200))
        images = [f.image for f in read_frames(video)]
    backend = OpenVinoBackend(prepare(default_model_path()), precision="fp32")
    stage = _stage(backend)
    outs: list[tuple[np.ndarray, ...]] = []
    call = stage._call
    stage._call = lambda tiles: outs.append(call(tiles)) or outs[-1]
    for i, image in enumerate(images):
        stage.process(_frame(image, i))
    np.savez_compressed(path, images=np.stack(images), det=np.stack([o[0] for o in outs]),
                        labels=np.stack([o[1] for o in outs]), conf=np.stack([o[2] for o in outs]),
                        class_names=np.array(backend.class_names), seg_class_names=np.array(backend.seg_class_names))
    print(f"{path}: {len(images)} frames and the model's outputs")


def _frame(image: np.ndarray, index: int) -> Any:
    from inspectd.runtime.frame import Frame
    now, wall = time.monotonic_ns(), time.time_ns()
    return Frame(index=index, image=image, camera="bench", capture_ns=now, capture_wall_ns=wall)


def _stage(backend: Any) -> Any:
    from inspectd.runtime.inference import InferenceConfig, InferenceStage
    from inspectd.runtime.merge import MergeConfig
    return InferenceStage(backend, InferenceConfig(in_flight=1), MergeConfig())


def replay(path: Path, frames: int, passes: int, parts: set[str], profile: bool = False) -> None:
    import zmq

    from inspectd.bus.config import BusConfig
    from inspectd.bus.messages import EventEncoder
    from inspectd.bus.publisher import EventPublisher, _Item
    from inspectd.line import LineConfig
    from inspectd.runtime.periodic import PeriodicConfig, PeriodicDetector

    data = dict(np.load(path))
    n_rec = len(data["det"])

    class Replay:
        """The recorded outputs, in order, as the backend's ``infer_labels``."""
        name, precision, input_size, channels = "replay", "fp32", (224, 224), 1
        class_names = [str(c) for c in data["class_names"]]
        seg_class_names = [str(c) for c in data["seg_class_names"]]
        output_generations, concurrent_calls = None, 1

        def __init__(self) -> None:
            self.i = 0

        def infer(self, tiles: np.ndarray) -> Any:
            raise NotImplementedError

        def infer_labels(self, tiles: np.ndarray) -> tuple[np.ndarray, ...]:
            i, self.i = self.i % n_rec, self.i + 1
            return data["det"][i], data["labels"][i], data["conf"][i]

        def close(self) -> None:
            pass

    stage = _stage(Replay())
    line = LineConfig()
    cfg = BusConfig()
    cfg.publish = ""
    publisher = EventPublisher(cfg, EventEncoder("bench", line))
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.bind("tcp://127.0.0.1:*")
    publisher._sock = sock             # the publisher thread's socket; its thread is not started
    detector = PeriodicDetector(PeriodicConfig(), line.mm_per_px)
    images = data["images"]
    stage.process(_frame(images[0], 0))     # per-size state built outside the count

    # What the publisher hands its watcher (the alarm detector, in the pipeline) is kept here.
    sent: list[dict] = []
    publisher._watcher = type("Tap", (), {"observe": staticmethod(sent.append)})()
    best = {"stage": float("inf"), "publish": float("inf"), "alarms": float("inf")}
    index = 1
    prof = None
    for turn in range(max(1, passes) + profile):
        if turn == passes:                  # the extra pass, profiled, not timed
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        spent = dict.fromkeys(best, 0.0)
        for _ in range(frames):
            frame = _frame(images[index % len(images)], index)
            index += 1
            t0 = time.thread_time()
            verdict = stage.process(frame)
            t1 = time.thread_time()
            sent.clear()
            if "publish" in parts:
                publisher._emit_verdict(_Item("verdict", verdict))
            t2 = time.thread_time()
            if "alarms" in parts:
                for msg in sent:
                    detector.observe(msg)
            t3 = time.thread_time()
            spent["stage"] += t1 - t0
            spent["publish"] += t2 - t1
            spent["alarms"] += t3 - t2
        if prof is not None:
            prof.disable()
            break
        for k, v in spent.items():
            best[k] = min(best[k], 1000 * v / max(1, frames))
    sock.close(0)
    total = sum(best.values())
    print(f"{frames} frames x {passes} passes, CPU ms per frame (best pass): "
          + ", ".join(f"{k} {v:.3f}" for k, v in best.items()) + f"; total {total:.3f}")
    if prof is not None:
        import pstats
        stats = pstats.Stats(prof)
        print(f"{stats.total_calls / max(1, frames):.0f} Python-level calls per frame")
        stats.sort_stats("tottime").print_stats(12)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", type=Path, metavar="NPZ", help="run the model and keep its outputs here")
    g.add_argument("--replay", type=Path, metavar="NPZ", help="time the work on outputs recorded before")
    p.add_argument("--frames", type=int, default=200, help="frames to record, or to replay per pass")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="--replay: also profile one more pass")
    p.add_argument("--parts", default="stage,publish,alarms",
                   help="what runs after the stage: publish (encoding, sending), alarms (needs publish)")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= {"stage", "publish", "alarms"} or ("alarms" in parts and "publish" not in parts):
        p.error("--parts: a comma-separated list of stage, publish, alarms (alarms read what publish sends)")
    if args.frames < 0 or args.passes < 1:
        p.error("--frames must be >= 0 and --passes >= 1")
    if args.record:
        record(args.record, max(1, args.frames))
    else:
        if not args.replay.is_file():
            print(f"work_per_frame: {args.replay}: no such file (make it with --record)", file=sys.stderr)
            return 2
        replay(args.replay, args.frames, args.passes, parts, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
