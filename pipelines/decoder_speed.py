#!/usr/bin/env python3
"""Checkpoints' exported graphs against YOLO11n-seg on OpenVINO, interleaved in one run.

    python pipelines/decoder_speed.py --rounds 10 --precision bf16 \
        inspectd/models/inspectd-n-neu.safetensors inspectd/models/inspectd-n-light-neu.safetensors
    python pipelines/decoder_speed.py n n:seg_fuse=dwsep,resdwab_expand=2 n:resdwab_blocks=0,seg_width=32

A graph is a checkpoint (.safetensors) or a preset with model-config overrides
(``PRESET[:KEY=VALUE,...]``; values read as YAML), built with random weights (speed does not
depend on them) into a temporary folder.

Each checkpoint runs through the product's ``OpenVinoBackend`` (``infer_labels``, the call the
inference stage makes), YOLO11n-seg through ``inspectd bench --peers``' runner (Ultralytics
export, random weights; needs the optional extra ``inspectd[bench-peers]``). Batch 1, latency
mode, one stream, the runtime's threads. Every round runs every graph for ``--calls`` calls, in
an order that rotates from round to round; ratios are taken within a round and reported as the
median (min-max) over rounds, so that the drift of a shared machine falls on all alike.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _checkpoint(spec: str, tmp: Path) -> tuple[Path, str]:
    """A checkpoint path as given, or a random-weight one built from PRESET[:KEY=VALUE,...]."""
    if spec.endswith(".safetensors"):
        return Path(spec), Path(spec).stem
    import yaml

    from inspectd.errors import InspectdError
    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_random_calibrated

    preset, _, overrides = spec.partition(":")
    changes = {}
    for item in filter(None, overrides.split(",")):
        key, _, value = item.partition("=")
        changes[key] = yaml.safe_load(value)
    try:
        cfg = load_preset(preset).replace(**changes)
    except TypeError as exc:
        raise InspectdError(f"{spec}: {exc}") from None
    cfg.validate(spec)
    name = spec.replace(":", "_").replace(",", "_").replace("=", "-")
    return save_checkpoint(build_random_calibrated(cfg), tmp / f"{name}.safetensors"), spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("graphs", nargs="+", help="checkpoints (.safetensors) or PRESET[:KEY=VALUE,...]")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=60, help="calls per graph and round")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    args = p.parse_args(argv)

    from inspectd.backends.onnx_model import cache_dir, prepare
    from inspectd.backends.openvino_backend import OpenVinoBackend
    from inspectd.bench.peers import PeerRunner, export_peer, interleave, ultralytics_missing
    from inspectd.errors import InspectdError

    missing = ultralytics_missing()
    if missing:
        print(f"decoder_speed: {missing}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="inspectd-decoder-speed-"))
    try:
        tile = np.random.default_rng(0).integers(0, 256, (1, 1, 224, 224), dtype=np.uint8)
        calls = {}
        for g in args.graphs:
            path, label = _checkpoint(g, tmp)
            backend = OpenVinoBackend(prepare(path), precision=args.precision)
            calls[label] = (lambda b=backend: b.infer_labels(tile))
        calls["yolo11n-seg"] = PeerRunner(export_peer("yolo11n-seg", (224, 224), cache_dir()), args.precision, 0)
    except InspectdError as exc:
        print(f"decoder_speed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)     # the exports live in the model cache
    for call in calls.values():      # compile-time warm-up
        for _ in range(10):
            call()
    fps, _ = interleave(calls, args.rounds, args.calls)
    keys = list(calls)
    print(f"{args.precision}, {args.rounds} rounds of {args.calls} calls, interleaved; ratios: median of per-round "
          "ratios (min-max)\n")
    print(f"| graph | frames/s median (min-max) | / yolo11n-seg | / {keys[0]} |\n|---|---:|---:|---:|")
    for k in keys:
        rs = [a / b for a, b in zip(fps[k], fps["yolo11n-seg"])]
        r0 = [a / b for a, b in zip(fps[k], fps[keys[0]])]
        print(f"| {k} | {statistics.median(fps[k]):.1f} ({min(fps[k]):.1f}-{max(fps[k]):.1f}) | "
              f"{statistics.median(rs):.3f} ({min(rs):.2f}-{max(rs):.2f}) | {statistics.median(r0):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
