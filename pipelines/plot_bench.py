"""Pictures of `inspectd bench` runs: frames/s per run, and where each frame's CPU goes.

    python pipelines/plot_bench.py docs/benchmarks/default.json docs/benchmarks/openvino-bf16-serial.json \
        --labels "in flight 2" "serial" --out docs/benchmarks/overview.png

Left: the model alone, the inference stage and the full pipeline, frames/s, per run (the
pipeline/model ratio written on each pipeline bar). Right: CPU milliseconds per frame in the full
pipeline, stacked by thread, beside the model alone: what the pipeline spends besides the model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Threads grouped for the picture; everything else is "other".
GROUPS = [
    ("model (serial: with the post-processing)", ("runtime workers", "model")),
    ("inference thread (decode, NMS, merge)", ("inference",)),
    ("publisher", ("publisher",)),
    ("acquisition", ("acquisition",)),
    ("subscriber process", ("subscriber process",)),
]


def _group(name: str, serial: bool) -> str:
    if serial and name == "inference":
        return GROUPS[0][0]     # serial: the inference thread runs the model too (split unknown)
    for label, prefixes in GROUPS:
        if any(name.startswith(p) for p in prefixes):
            return label
    return "other (bench sampler, main, ended threads)"


def cpu_by_group(run: dict, serial: bool) -> dict[str, float]:
    n = run.get("frames") or 0
    out: dict[str, float] = {}
    for name, seconds in (run.get("cpu_s_by_thread") or {}).items():
        g = _group(name, serial)
        out[g] = out.get(g, 0.0) + 1000.0 * seconds / max(n, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("runs", nargs="+", help="bench JSON files (inspectd bench --json)")
    p.add_argument("--labels", nargs="+", help="one label per run (default: the file names)")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)
    labels = args.labels or [Path(r).stem for r in args.runs]
    if len(labels) != len(args.runs):
        print(f"plot_bench: {len(labels)} labels for {len(args.runs)} runs", file=sys.stderr)
        return 2
    runs = []
    for path in args.runs:
        try:
            r = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            print(f"plot_bench: {path}: cannot read a bench result ({exc})", file=sys.stderr)
            return 2
        if r.get("inspectd_bench") != 1:
            print(f"plot_bench: {path}: not an inspectd bench JSON", file=sys.stderr)
            return 2
        runs.append(r)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.9 * len(runs) + 2.6))
    y = np.arange(len(runs))
    h = 0.26
    model = [r["model_reference"]["frames_per_s"] for r in runs]
    stage = [r["stage"]["frames_per_s"] for r in runs]
    pipe = [r["pipeline"]["frames_per_s"] for r in runs]
    ax1.barh(y - h, model, h, label="model alone (mean of before/after)", color="#4c72b0")
    ax1.barh(y, stage, h, label="inference stage", color="#8fb0d8")
    bars = ax1.barh(y + h, pipe, h, label="full pipeline", color="#dd8452")
    for b, r in zip(bars, runs):
        ax1.text(b.get_width() + 1, b.get_y() + b.get_height() / 2,
                 f"{r['pipeline']['ratio_to_model']:.2f} of model", va="center", fontsize=8)
    ax1.axvline(85.6, color="k", ls="--", lw=1)
    ax1.text(86.5, -0.55, "paper, P100: 85.6", fontsize=8)
    ax1.set_yticks(y, labels)
    ax1.invert_yaxis()
    ax1.set_xlabel("frames/s (200 x 200 frames, one tile each)")
    ax1.set_xlim(0, max(model + pipe) * 1.3)
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
    ax1.set_title("Speed")

    names = [g for g, _ in GROUPS] + ["other (bench sampler, main, ended threads)"]
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#999999"]
    for i, r in enumerate(runs):
        serial = r.get("in_flight", 1) == 1
        pipe_cpu = cpu_by_group(r["pipeline"], serial)
        chosen = r["pipeline_backend"]
        alone = sum(1000.0 * v for v in (r["backends"][chosen].get("cpu_s_by_thread") or {}).values()) / \
            max(r["backends"][chosen]["frames"], 1)
        left = 0.0
        for g, c in zip(names, colours):
            v = pipe_cpu.get(g, 0.0)
            ax2.barh(i + 0.18, v, 0.34, left=left, color=c, label=g if i == 0 else None)
            left += v
        ax2.barh(i - 0.18, alone, 0.34, color="#4c72b0", alpha=0.45,
                 label="model alone, all threads" if i == 0 else None)
    ax2.set_yticks(y, labels)
    ax2.invert_yaxis()
    ax2.set_xlabel("CPU ms per frame (2 cores: 2 ms of CPU per ms of wall time)")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=7)
    ax2.set_title("Where a frame's CPU goes (full pipeline, unpaced)")
    fig.tight_layout()
    out = Path(args.out)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
