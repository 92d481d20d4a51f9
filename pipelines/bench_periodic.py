#!/usr/bin/env python3
"""What the periodic-defect detector costs per frame (its own thread, ``runtime.alarm_thread``).

    python pipelines/bench_periodic.py                               # synthetic defect densities
    python pipelines/bench_periodic.py --verdicts v.jsonl            # + real verdicts, e.g. from
        inspectd replay samples/neu_strip.mkv --config configs/inspectd.yaml --out v.jsonl

Synthetic strips: 0.2 m frames, 1 m wide, N random compact defects of one watched class per
frame (the worst case for the detector: every one of them is a mark to pair and follow),
and one real roll mark every 0.8 m. The detector must stay below the frame period
(20 ms at 50 frames/s) or it drops verdicts from detection (never from the bus). Reported:
milliseconds per frame (best and median of the repeats), alarms raised, and whether the
roll mark was raised. CPU time on the calling thread only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspectd.runtime.periodic import PeriodicConfig, PeriodicDetector  # noqa: E402


def synthetic(per_frame: int, frames: int = 60, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        pos = i * 0.2
        xs, ys = rng.uniform(0, 1000, per_frame), rng.uniform(0, 380, per_frame)
        defects = [{"class": "inclusion", "score": 0.9, "box_mm": [x, pos * 1000 + y, x + 8, pos * 1000 + y + 10]}
                   for x, y in zip(xs, ys)]
        if i % 4 == 1:       # the roll mark
            defects.append({"class": "inclusion", "score": 0.9,
                            "box_mm": [500, pos * 1000 + 100, 508, pos * 1000 + 110]})
        out.append({"frame": i, "strip_position_m": pos, "frame_length_m": 0.2, "coil": None,
                    "coil_position_m": None, "defects": defects})
    return out


def measure(frames: list[dict], repeats: int) -> dict:
    times, alarms = [], []
    for _ in range(repeats):
        det = PeriodicDetector(PeriodicConfig(), 0.5)
        t0 = time.thread_time()
        raised = []
        for v in frames:
            raised += [a for a in det.observe(v) if a["state"] == "raised"]
        times.append((time.thread_time() - t0) / len(frames) * 1000)
        alarms = raised
    return {
        "frames": len(frames), "defects_per_frame": round(sum(len(v["defects"]) for v in frames) / len(frames), 1),
        "ms_per_frame_best": round(min(times), 2), "ms_per_frame_median": round(statistics.median(times), 2),
        "alarms_raised": len(alarms),
        "roll_mark_raised_at": next((a["repeats"] for a in alarms if abs(a["cross_mm"] - 504) < 5
                                     and abs(a["pitch_m"] - 0.8) < 0.01), None),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--verdicts", type=Path, help="a JSON-lines file of verdicts (inspectd replay --out)")
    ap.add_argument("--densities", type=int, nargs="+", default=[5, 20, 100], help="defects per frame")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    rows = []
    if args.verdicts:
        try:
            frames = [json.loads(line) for line in args.verdicts.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            print(f"bench_periodic: --verdicts {args.verdicts}: {exc}", file=sys.stderr)
            return 2
        rows.append({"input": str(args.verdicts), **measure(frames, args.repeats)})
    for n in args.densities:
        rows.append({"input": f"synthetic, {n} random defects per frame", **measure(synthetic(n), args.repeats)})
    print("| input | defects/frame | ms/frame (best, median) | alarms raised | roll mark raised at |")
    print("|---|---|---|---|---|")
    for r in rows:
        mark = "" if r["input"] == str(args.verdicts) else (r["roll_mark_raised_at"] or "not raised")
        print(f"| {r['input']} | {r['defects_per_frame']} | {r['ms_per_frame_best']}, {r['ms_per_frame_median']} "
              f"| {r['alarms_raised']} | {mark} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
