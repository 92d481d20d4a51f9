#!/usr/bin/env python3
"""CPU time of the inference stage's work outside the model (decode, NMS, fusion, stitching,
merge), per frame, on the bench's NEU frames with the model's outputs computed once beforehand.

    python pipelines/postprocess_cpu.py --frames 200 --passes 5 [--profile]

The model is called once per distinct frame and its outputs replayed, so the figure is the
stage's own CPU (``time.thread_time`` of the calling thread), serial (``in_flight: 1``).
``--profile`` prints cProfile's top functions and the number of Python-level calls per frame.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Replay:
    """A backend that computes each distinct batch once and replays its outputs."""

    def __init__(self, inner):
        self.inner, self.cache = inner, {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer_labels(self, tiles):
        key = tiles.tobytes()
        if key not in self.cache:
            self.cache[key] = self.inner.infer_labels(tiles)
        return self.cache[key]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)

    from inspectd.backends.onnx_model import prepare
    from inspectd.backends.openvino_backend import OpenVinoBackend
    from inspectd.bench import read_frames, write_recording
    from inspectd.model import default_model_path
    from inspectd.runtime.inference import InferenceConfig, InferenceStage
    from inspectd.runtime.merge import MergeConfig

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "frames.mkv"
        write_recording(video, args.frames, (200, 200))
        frames = read_frames(video)
    backend = Replay(OpenVinoBackend(prepare(default_model_path()), precision="fp32"))
    stage = InferenceStage(backend, InferenceConfig(model=default_model_path(), in_flight=1), MergeConfig())
    defects = sum(len(stage.process(f).defects) for f in frames)     # fills the replay cache
    per_pass = []
    for _ in range(args.passes):
        t = time.thread_time()
        for f in frames:
            stage.process(f)
        per_pass.append(1000 * (time.thread_time() - t) / len(frames))
    per_pass.sort()
    print(f"{len(frames)} frames of 200x200, {defects / len(frames):.1f} defects per frame: CPU ms per frame "
          f"outside the model, min {per_pass[0]:.3f}, median {per_pass[len(per_pass) // 2]:.3f} over {args.passes} passes")
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        for f in frames:
            stage.process(f)
        prof.disable()
        stats = pstats.Stats(prof)
        print(f"{stats.total_calls / len(frames):.0f} Python-level calls per frame")
        stats.sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
