#!/usr/bin/env python3
"""What the periodic-defect detector costs per frame (its own thread, ``runtime.alarm_thread``).

    python pipelines/bench_periodic.py                               # synthetic defect densities
    python pipelines/bench_periodic.py --verdicts v.jsonl            # + real verdicts, e.g. from
        inspectd replay samples/neu_strip.mkv --config configs/inspectd.yaml --out v.jsonl
    python pipelines/bench_periodic.py --compare-to HEAD~1           # + another version, interleaved

Synthetic strips: 0.2 m frames, 1 m wide, N random compact defects of one watched class per
frame (the worst case for the detector: every one of them is a mark to pair and follow),
and one real roll mark every 0.8 m. The detector must stay below the frame period
(20 ms at 50 frames/s) or it drops verdicts from detection (never from the bus). Reported:
milliseconds per frame (best and median of the repeats), alarms raised, and whether the
roll mark was raised. CPU time on the calling thread only.

--compare-to REV loads the detector of another git revision (or a periodic.py file) beside
this one and runs the two in turn on each input, alternating which goes first, so both see
the same machine; it adds that version's figures, the ratio of the best times, and whether
both emitted exactly the same alarms.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

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


def load_version(rev: str) -> ModuleType:
    """``inspectd.runtime.periodic`` of git revision ``rev``, or of the file ``rev``."""
    path = Path(rev)
    if path.is_file():
        source = path.read_text()
    else:
        run = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:inspectd/runtime/periodic.py"],
                             capture_output=True, text=True)
        if run.returncode:
            raise ValueError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "git show failed")
        source = run.stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("periodic_compared", f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module              # dataclasses look their module up
    spec.loader.exec_module(module)
    Path(f.name).unlink()
    return module


def measure(frames: list[dict], repeats: int, other: ModuleType | None = None) -> dict:
    """Milliseconds of CPU per frame of this detector (and of ``other``'s, in turn with it)."""
    versions = {"this": (PeriodicDetector, PeriodicConfig)}
    if other is not None:
        versions["other"] = (other.PeriodicDetector, other.PeriodicConfig)
    times: dict[str, list[float]] = {k: [] for k in versions}
    events: dict[str, list[dict]] = {}
    for r in range(repeats):
        for name in list(versions)[::1 if r % 2 == 0 else -1]:
            detector_cls, config_cls = versions[name]
            det = detector_cls(config_cls(), 0.5)
            t0 = time.thread_time()
            out = [det.observe(v) for v in frames]
            times[name].append((time.thread_time() - t0) / len(frames) * 1000)
            events[name] = [a for alarms in out for a in alarms]
    raised = [a for a in events["this"] if a["state"] == "raised"]
    row = {
        "frames": len(frames), "defects_per_frame": round(sum(len(v["defects"]) for v in frames) / len(frames), 1),
        "ms_per_frame_best": round(min(times["this"]), 3), "ms_per_frame_median": round(statistics.median(times["this"]), 3),
        "alarms_raised": len(raised),
        "roll_mark_raised_at": next((a["repeats"] for a in raised if abs(a["cross_mm"] - 504) < 5
                                     and abs(a["pitch_m"] - 0.8) < 0.01), None),
    }
    if other is not None:
        row.update({"other_ms_per_frame_best": round(min(times["other"]), 3),
                    "other_ms_per_frame_median": round(statistics.median(times["other"]), 3),
                    "other_over_this_best": round(min(times["other"]) / min(times["this"]), 2),
                    "same_alarms": events["this"] == events["other"]})
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--verdicts", type=Path, help="a JSON-lines file of verdicts (inspectd replay --out)")
    ap.add_argument("--densities", type=int, nargs="+", default=[5, 20, 100], help="defects per frame")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compare-to", metavar="REV", help="also run the detector of this git revision "
                    "(or periodic.py file), interleaved with this one")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    other = None
    if args.compare_to:
        try:
            other = load_version(args.compare_to)
        except (OSError, ValueError, SyntaxError, ImportError) as exc:
            print(f"bench_periodic: --compare-to {args.compare_to}: {exc}", file=sys.stderr)
            return 2
    rows = []
    if args.verdicts:
        try:
            frames = [json.loads(line) for line in args.verdicts.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as exc:
            print(f"bench_periodic: --verdicts {args.verdicts}: {exc}", file=sys.stderr)
            return 2
        rows.append({"input": str(args.verdicts), **measure(frames, args.repeats, other)})
    for n in args.densities:
        rows.append({"input": f"synthetic, {n} random defects per frame", **measure(synthetic(n), args.repeats, other)})
    extra = f" {args.compare_to} ms/frame (best, median) | {args.compare_to} / this (best) | same alarms |" if other else ""
    print("| input | defects/frame | ms/frame (best, median) | alarms raised | roll mark raised at |" + extra)
    print("|---|---|---|---|---|" + ("---|---|---|" if other else ""))
    for r in rows:
        mark = "" if r["input"] == str(args.verdicts) else (r["roll_mark_raised_at"] or "not raised")
        line = (f"| {r['input']} | {r['defects_per_frame']} | {r['ms_per_frame_best']}, {r['ms_per_frame_median']} "
                f"| {r['alarms_raised']} | {mark} |")
        if other:
            line += (f" {r['other_ms_per_frame_best']}, {r['other_ms_per_frame_median']} | {r['other_over_this_best']} "
                     f"| {'yes' if r['same_alarms'] else 'NO'} |")
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
