#!/usr/bin/env python3
"""Where the CPU time goes, from a py-spy profile: per Python thread, the share of samples
spent in each inspectd function (the innermost inspectd frame of each sample) or, without
one, in the innermost library function.

    py-spy record --threads -r 250 -f raw -o prof.txt -- inspectd bench ...
    python pipelines/profile_summary.py prof.txt

Only threads on the CPU are sampled (no --idle), so shares are of CPU time. Threads that
the runtimes start themselves (ONNX Runtime's or OpenVINO's workers) are not Python threads
and are not seen: their work shows as the calling thread's time in the backend's ``run``.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):\d+\)$")


def summarise(lines, top: int = 12) -> str:
    by_thread: dict[str, Counter] = defaultdict(Counter)
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[1].strip() if ":" in frames[0] else frames[0]
        thread = re.sub(r"-\d+$", "", thread)
        label = None
        for f in reversed(frames[1:]):
            m = _FRAME.match(f)
            if m and "inspectd/" in m["file"]:
                label = f"{m['file'].split('inspectd/', 1)[1]}:{m['func']}"
                break
        if label is None:
            m = _FRAME.match(frames[-1]) if len(frames) > 1 else None
            label = f"(lib) {m['file'].rsplit('/', 1)[-1]}:{m['func']}" if m else "(lib) ?"
        by_thread[thread][label] += int(count)
    total = sum(sum(c.values()) for c in by_thread.values())
    out = []
    for thread, c in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(c.values())
        out.append(f"\n**{thread}**: {n} samples, {100 * n / total:.1f} % of all\n")
        out.append("| function (innermost inspectd frame) | share of thread |\n|---|---:|")
        for label, k in c.most_common(top):
            out.append(f"| `{label}` | {100 * k / n:.1f} % |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw", help="py-spy raw (collapsed stacks) output")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    with open(args.raw) as f:
        sys.stdout.write(summarise(f, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
