"""Does harvesters' fetch() starve the other Python threads? (issue 10, section 1)

A "worker" thread counts pure-Python loop iterations (a stand-in for the inference thread's
Python work: tiling, decoding, merge, and the Python glue around every backend call) while
another thread (or, for comparison, another process) fetches frames from the viky GenICam
simulator, as the acquisition thread does. Reports the worker's iterations per second against
its rate alone, its longest stall, the fetch thread's CPU and the frames it fetched.

Why it would: genicam's SWIG modules (_gentl.so, _genapi.so) never release the GIL (they import
neither PyEval_SaveThread nor PyGILState_*), and harvesters' fetch() loops on
``update_event_data(timeout_period_on_update_event_data_call)`` (1 ms by default), which waits
in C for the next buffer -- holding the GIL while it sleeps.

    .venv/bin/python pipelines/genicam_gil_probe.py [--seconds 3] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path


def _viky() -> str:
    import genicam
    return str(Path(genicam.__file__).with_name("viky.cti"))


def _open(fps: float, serial: str):
    from harvesters.core import Harvester
    h = Harvester()
    h.add_file(_viky())
    h.update()
    idx = next(i for i, d in enumerate(h.device_info_list) if d.serial_number == serial)
    ia = h.create(h.device_info_list[idx])
    nm = ia.remote_device.node_map
    nm.PixelFormat.value = "Mono8"
    nm.Width.value, nm.Height.value = 200, 200
    nm.AcquisitionFrameRate.value = float(fps)
    ia.num_buffers = 8
    return h, ia


def fetch_loop(stop, fps: float, serial: str, internal_ms: int | None, counts: dict, ready=None) -> None:
    import numpy as np
    h, ia = _open(fps, serial)
    if internal_ms is not None:
        ia.timeout_period_on_update_event_data_call = internal_ms
    staging = np.empty((200, 200), np.uint8)
    ia.start()
    if ready is not None:
        ready.set()
    t_cpu = time.thread_time()
    n = 0
    try:
        while not stop.is_set():
            with ia.fetch(timeout=1.0) as buf:
                c = buf.payload.components[0]
                np.copyto(staging, c.data.reshape(200, 200))
            n += 1
    finally:
        counts["frames"] = n
        counts["fetch_cpu_s"] = time.thread_time() - t_cpu
        ia.stop()
        ia.destroy()
        h.reset()


def _fetch_process(stop, fps, serial, internal_ms, q, ready) -> None:
    counts: dict = {}
    fetch_loop(stop, fps, serial, internal_ms, counts, ready)
    q.put(counts)


def _torch_step():
    """One small model forward on one thread: ~40 torch ops, each releasing and retaking the GIL."""
    import torch
    torch.set_num_threads(1)
    net = torch.nn.Sequential(*[m for _ in range(8) for m in (torch.nn.Conv2d(8, 8, 3, padding=1),
                                                              torch.nn.BatchNorm2d(8), torch.nn.SiLU())]).eval()
    x = torch.zeros(1, 8, 32, 32)

    def step() -> None:
        with torch.inference_mode():
            net(x)
    step()
    return step


WORK = {"python": None, "torch": None}


def _ticks(pid) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(seconds: float, kind: str = "python") -> dict:
    """Counts work units for ``seconds`` (200 loop iterations, or one small torch forward);
    notes the longest gap between two of them."""
    n, longest = 0, 0.0
    step = None
    if kind == "torch":
        step = WORK["torch"] = WORK["torch"] or _torch_step()
    t0 = last = time.perf_counter()
    end = t0 + seconds
    while True:
        if step is None:
            for _ in range(200):
                n += 1
        else:
            step()
            n += 1
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        if now >= end:
            break
    return {"iterations_per_s": n / (now - t0), "longest_stall_ms": longest * 1e3}


def run(case: str, seconds: float, fps: float, internal_ms: int | None = None, kind: str = "python") -> dict:
    counts: dict = {}
    stop: threading.Event | mp.synchronize.Event
    if case == "alone":
        r = worker(seconds, kind)
        return {"case": case, "work": kind, **r}
    if case == "thread":
        stop = threading.Event()
        ready = threading.Event()
        t = threading.Thread(target=fetch_loop, args=(stop, fps, "0", internal_ms, counts, ready))
        t.start()
        ready.wait(30)
        time.sleep(0.3)
        cpu0 = time.process_time()
        r = worker(seconds, kind)
        cpu = time.process_time() - cpu0
        stop.set()
        t.join()
    elif case == "process":
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        q = ctx.Queue()
        ready = ctx.Event()
        p = ctx.Process(target=_fetch_process, args=(stop, fps, "0", internal_ms, q, ready))
        p.start()
        ready.wait(60)
        time.sleep(0.3)
        cpu0 = time.process_time()
        r = worker(seconds, kind)
        cpu = time.process_time() - cpu0
        stop.set()
        counts = q.get(timeout=10)
        p.join()
    elif case == "camera_process":
        # inspectd's design: CameraProcess (the child fetches) + CameraAcquisition (a thread here
        # takes the frames into the shared-memory ring) + a thread releasing them as inspected.
        from inspectd.runtime.camera_process import CameraProcess, acquisition_for, ring_for
        from inspectd.runtime.ringbuffer import RingConfig
        from inspectd.runtime.sources import GenICamConfig
        src = CameraProcess(GenICamConfig(cti=[_viky()], serial="0", width=200, height=200, frame_rate=fps), "probe")
        ring = ring_for(src, RingConfig(slots=8), lambda m: None)
        stop = threading.Event()
        acq = acquisition_for(src, ring, stop, realtime=False, frame_period_s=0.01,
                              on_lost=lambda m: None, on_silent=lambda m: None)

        def drain() -> None:
            while not stop.is_set():
                f = ring.get(timeout=0.1)
                if f is not None:
                    ring.release(f)
        t = threading.Thread(target=drain)
        acq.start()
        t.start()
        time.sleep(1.0)
        n0, c0 = ring.counters().captured, _ticks(src.pid)
        cpu0 = time.process_time()
        r = worker(seconds, kind)
        cpu = time.process_time() - cpu0
        counts = {"frames": ring.counters().captured - n0, "fetch_cpu_s": _ticks(src.pid) - c0}
        stop.set()
        acq.join()
        t.join()
        src.stop()
    else:
        raise ValueError(case)
    return {"case": case, "work": kind, "camera_fps": fps, "internal_timeout_ms": 1 if internal_ms is None else internal_ms,
            "this_process_cpu_cores": cpu / seconds, **r, **counts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    rows = []
    for kind in ("torch", "python"):
        base = run("alone", args.seconds, 0, kind=kind)
        rows.append(base)
        for fps in (190.0, 20.0):
            rows.append(run("thread", args.seconds, fps, kind=kind))
        rows.append(run("thread", args.seconds, 190.0, internal_ms=100, kind=kind))
        rows.append(run("thread", args.seconds, 20.0, internal_ms=100, kind=kind))
        rows.append(run("thread", args.seconds, 190.0, internal_ms=0, kind=kind))
        rows.append(run("thread", args.seconds, 20.0, internal_ms=0, kind=kind))
        old = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        for fps in (190.0, 20.0):
            rows.append(run("thread", args.seconds, fps, kind=kind))
            rows[-1]["switch_interval_ms"] = 0.2
        sys.setswitchinterval(old)
        rows.append(run("process", args.seconds, 190.0, kind=kind))
        rows.append(run("process", args.seconds, 20.0, kind=kind))
        rows.append(run("camera_process", args.seconds, 200.0, kind=kind))
        rows.append(run("camera_process", args.seconds, 20.0, kind=kind))
        for r in rows[-13:]:
            r["vs_alone"] = round(r["iterations_per_s"] / base["iterations_per_s"], 3)
    print(f"{'work':6} {'case':14} {'camera':>7} {'internal':>8} {'switch':>6} {'work units/s':>12} {'vs alone':>8} "
          f"{'stall ms':>9} {'frames':>7} {'fetch CPU s':>11} {'proc CPU':>8}")
    for r in rows:
        print(f"{r['work']:6} {r['case']:14} {r.get('camera_fps', 0):7.0f} {r.get('internal_timeout_ms', 0):8} "
              f"{r.get('switch_interval_ms', 5.0):6} "
              f"{r['iterations_per_s']:12.0f} {r['vs_alone']:8.3f} "
              f"{r['longest_stall_ms']:9.1f} {r.get('frames', 0):7} {r.get('fetch_cpu_s', 0):11.2f} "
              f"{r.get('this_process_cpu_cores', 0):8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
