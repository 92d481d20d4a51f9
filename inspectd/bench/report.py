"""The bench's markdown report (what ``inspectd bench`` prints; the JSON is the result itself)."""
from __future__ import annotations

import math
from typing import Any


def fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


BUSY_CORES = 0.15     # other processes' CPU above which a phase is flagged


def _busy_phases(r: dict[str, Any]) -> list[str]:
    phases = [(f"model alone {k}", v) for k, v in r["backends"].items() if v.get("available")]
    phases += [("inference stage", r["stage"]), ("full pipeline", r["pipeline"])]
    if r.get("paced"):
        phases.append(("paced pipeline", r["paced"]))
    return [name for name, v in phases if (v.get("other_processes_cpu_cores") or 0) > BUSY_CORES]


def markdown(r: dict[str, Any]) -> str:
    m, fr, mach = r["model"], r["frames"], r["machine"]
    model = m["path"] or "preset n, random weights"
    lines = [
        f"## inspectd bench: {model} ({m['name']}, input {m['input_size'][0]}x{m['input_size'][1]})",
        "",
        f"{mach.get('cpu_model', '?')}, {mach.get('logical_cpus')} logical CPUs, load average at start "
        f"{mach.get('load_average')}; {fr['count']} frames of {fr['height']}x{fr['width']} "
        f"({fr['tiles_per_frame']} tile(s) per frame), backend threads: {r['threads'] or 'runtime default'}, "
        f"frames in flight: {r.get('in_flight', 1)}, OpenVINO streams: {r.get('openvino_streams', 1)}.",
    ]
    if m.get("note"):
        lines += ["", f"**Note:** {m['note']}."]
    busy = _busy_phases(r)
    if busy:
        lines += ["", f"**Warning:** other processes used CPU during {', '.join(busy)}: those figures "
                      "understate this machine (see the `other CPU` column, in cores)."]
    lines += ["", "| measurement | backend | precision | frames/s | tiles/s | mean ms/frame | p50 ms | p99 ms "
                  "| vs model | peak RSS MB | other CPU |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, b in r["backends"].items():
        if not b.get("available"):
            lines.append(f"| model alone | {name} | | unavailable: {b['reason']} | | | | | | | |")
            continue
        s = b["ms_per_frame"]
        lines.append(f"| model alone | {name} | {b['precision']} | {fmt(b['frames_per_s'])} | {fmt(b['tiles_per_s'])} "
                     f"| {fmt(s['mean'], 2)} | {fmt(s['p50'], 2)} | {fmt(s['p99'], 2)} | | {fmt(b['peak_rss_mb'], 0)} "
                     f"| {fmt(b.get('other_processes_cpu_cores'), 2)} |")
    chosen = r["pipeline_backend"]
    st = r["stage"]
    s = st["ms_per_frame"]
    lines.append(f"| inference stage | {chosen} | | {fmt(st['frames_per_s'])} | {fmt(st['tiles_per_s'])} | "
                 f"{fmt(s['mean'], 2)} | {fmt(s['p50'], 2)} | {fmt(s['p99'], 2)} | {fmt(st['ratio_to_model'], 3)} "
                 f"| {fmt(st['peak_rss_mb'], 0)} | {fmt(st.get('other_processes_cpu_cores'), 2)} |")
    p = r["pipeline"]
    lines.append(f"| full pipeline, unpaced | {chosen} | | {fmt(p['frames_per_s'])} | {fmt(p['tiles_per_s'])} | "
                 f"{fmt(1000 / p['frames_per_s'] if p['frames_per_s'] else None, 2)} | | | "
                 f"{fmt(p['ratio_to_model'], 3)} | {fmt(p['peak_rss_mb'], 0)} | {fmt(p.get('other_processes_cpu_cores'), 2)} |")
    conc = {k: b["concurrent_calls"] for k, b in r["backends"].items() if (b.get("concurrent_calls") or 1) > 1}
    if conc:
        lines += ["", "Model alone " + ", ".join(f"{k}: {v} calls at once" for k, v in conc.items()) +
                  "; its ms columns are per call (one frame each), its frame period is 1000 / frames/s."]
    ref = r["model_reference"]
    lines += ["", f"vs model: against the model alone on {chosen}, measured before the stage and pipeline "
                  f"runs ({fmt(ref['frames_per_s_before'])} frames/s) and again after them "
                  f"({fmt(ref['frames_per_s_after'])}); the mean, {fmt(ref['frames_per_s'])} frames/s "
                  f"({fmt(ref['mean_ms_per_frame'], 2)} ms per frame), is the reference."]
    lines += ["", "model alone and inference stage: p50/p99 of the time per frame. Full pipeline: "
                  "capture-to-publish and capture-to-receipt latency (subscriber in another process):", "",
              "| run | frames received | uninspected | capture→publish p50 / p99 / max ms "
              "| capture→receipt p50 / p99 ms | max queued | other CPU |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, run in (("unpaced (policy block)", p), (f"paced at {fmt(r['paced']['paced_fps'], 0)} frames/s "
                                                        f"(policy drop_oldest)" if r["paced"] else "", r["paced"])):
        if not run:
            continue
        a, b = run["capture_to_publish_ms"], run["capture_to_receipt_ms"]
        lines.append(f"| {label} | {run['frames']} of {run['frames_requested']} | {run['uninspected']} | "
                     f"{fmt(a['p50'], 2)} / {fmt(a['p99'], 2)} / {fmt(a['max'], 2)} | {fmt(b['p50'], 2)} / "
                     f"{fmt(b['p99'], 2)} | {run['max_queued']} | {fmt(run.get('other_processes_cpu_cores'), 2)} |")
    if r.get("in_flight", 1) == 1:
        lines += ["", "Where a frame's time goes (means, ms): the model call, the rest of the inference stage "
                      "(tiling, decoding and NMS, fusion, stitching, merge), and the rest of the frame period "
                      "(ring buffer, hand-over to the publisher, waiting):", "",
                  "| run | frame period | model call | stage without model | rest of period |",
                  "|---|---:|---:|---:|---:|"]
        b = ref["mean_ms_per_frame"]
        lines.append(f"| model alone ({chosen}) | {fmt(b, 2)} | {fmt(b, 2)} | | |")
        sm, ss = st["model_ms_in_stage"]["mean"], s["mean"]
        lines.append(f"| inference stage | {fmt(ss, 2)} | {fmt(sm, 2)} | {fmt(ss - sm, 2)} | |")
        for label, run in (("full pipeline, unpaced", p), ("full pipeline, paced", r["paced"])):
            if not run or not run["frames_per_s"]:
                continue
            period = 1000 / run["frames_per_s"]
            pm, ps = run["model_ms_in_pipeline"]["mean"], run["stage_ms_in_pipeline"]["mean"]
            lines.append(f"| {label} | {fmt(period, 2)} | {fmt(pm, 2)} | {fmt(ps - pm, 2)} | {fmt(period - ps, 2)} |")
    else:
        # With frames in flight the model call and the post-processing overlap, so wall-clock
        # spans no longer add up; the CPU each thread used does.
        lines += ["", f"Model call (means, ms): alone {fmt(ref['mean_ms_per_frame'], 2)}, in the stage "
                      f"{fmt(st['model_ms_in_stage']['mean'], 2)}, in the unpaced pipeline "
                      f"{fmt(p['model_ms_in_pipeline']['mean'], 2)}. With {r['in_flight']} frames in flight "
                      "the post-processing overlaps the model, so the time per frame is split by CPU "
                      "below rather than by wall clock."]
    cpu_rows = [(f"model alone ({chosen})", r["backends"][chosen]), ("inference stage", st),
                ("full pipeline, unpaced", p)]
    if any(run.get("cpu_s_by_thread") for _, run in cpu_rows):
        lines += ["", "CPU per frame, by thread (ms of CPU per frame; 2 cores give 2 ms per ms of wall time; "
                      "\"runtime workers\" are the threads the backend's runtime starts itself; the model "
                      "runs on those and, for a synchronous call, on the thread that calls it):", "",
                  "| run | CPU ms/frame | wall ms/frame | by thread |", "|---|---:|---:|---|"]
        for label, run in cpu_rows:
            by, n = run.get("cpu_s_by_thread") or {}, run.get("frames") or 0
            if not by or not n or not run.get("frames_per_s"):
                continue
            parts = ", ".join(f"{k} {1000 * v / n:.2f}" for k, v in by.items())
            lines.append(f"| {label} | {fmt(1000 * sum(by.values()) / n, 2)} | {fmt(1000 / run['frames_per_s'], 2)} "
                         f"| {parts} |")
    lines += ["", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for t in r["targets"]:
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['name']}{note} | {fmt(t['measured'], 3)} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
    lines.append("")
    return "\n".join(lines)
