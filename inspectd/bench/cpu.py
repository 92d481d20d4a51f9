"""What the bench measures besides time, from /proc: this process's resident set and CPU by
thread, and the CPU that other processes used meanwhile (a figure taken on a busy machine says
so); the machine's description for the report."""
from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _busy_ticks() -> int | None:
    """CPU ticks spent by the whole machine (everything but idle and I/O wait)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4]
    except (OSError, ValueError, IndexError):
        return None


def _process_ticks(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])     # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _thread_ticks() -> dict[int, int]:
    """CPU ticks (utime + stime) of each thread of this process, by thread id."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue          # the thread ended meanwhile
    return out


class PhaseMonitor:
    """While the ``with`` block runs: this process's peak resident set (sampled every 20 ms)
    and the CPU that *other* processes used (in cores), so that a figure taken while the
    machine was busy says so. ``pids``: further processes that count as ours (the subscriber).

    ``per_thread``: also the CPU each thread used, by Python thread name (threads with no
    Python name count as "runtime workers": the runtime's pool, and also ZeroMQ's I/O thread
    and decoder threads; the ``pids`` as "subscriber process"): where a frame's CPU goes."""

    def __init__(self, interval_s: float = 0.02, per_thread: bool = False):
        self.interval_s = interval_s
        self.per_thread = per_thread
        self.peak = 0
        self.pids: list[int] = []
        self.other_cores: float | None = None
        self.cpu_s_by_thread: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_first: dict[int, int] = {}
        self._t_last: dict[int, int] = {}
        self._t_name: dict[int, str] = {}

    def _own(self) -> int:
        return _process_ticks() + sum(_process_ticks(p) for p in self.pids)

    def _sample_threads(self, first: bool = False) -> None:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        for tid, ticks in _thread_ticks().items():
            if tid not in self._t_first:
                self._t_first[tid] = ticks if first else 0     # born during the phase: from 0
            self._t_last[tid] = ticks
            if tid in names:
                self._t_name[tid] = names[tid]

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, _rss_bytes())
            n += 1
            if self.per_thread and n % 3 == 0:     # every 60 ms: reading every thread's stat costs
                self._sample_threads()

    def __enter__(self) -> PhaseMonitor:
        self.peak = _rss_bytes()
        self._t0 = time.monotonic()
        self._busy0, self._own0 = _busy_ticks(), self._own()
        self._subs0 = sum(_process_ticks(p) for p in self.pids)
        self._self0 = _process_ticks()
        if self.per_thread:
            self._sample_threads(first=True)
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        busy1, own1 = _busy_ticks(), self._own()
        elapsed = time.monotonic() - self._t0
        if self.per_thread:
            self._sample_threads()
            hz = os.sysconf("SC_CLK_TCK")
            by: dict[str, float] = {}
            for tid, last in self._t_last.items():
                name = self._t_name.get(tid, "runtime workers")
                by[name] = by.get(name, 0.0) + (last - self._t_first[tid]) / hz
            # Threads that ended after their last sample (or lived between two) are in the
            # process's total only.
            rest = (_process_ticks() - self._self0) / hz - sum(by.values())
            if rest > 0:
                by["threads ended between samples"] = rest
            if self.pids:
                by["subscriber process"] = (sum(_process_ticks(p) for p in self.pids) - self._subs0) / hz
            self.cpu_s_by_thread = {k: round(v, 3) for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if v > 0}
        if self._busy0 is not None and busy1 is not None and elapsed > 0:
            hz = os.sysconf("SC_CLK_TCK")
            other = (busy1 - self._busy0) - (own1 - self._own0)
            self.other_cores = round(max(0.0, other / hz / elapsed), 2)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"peak_rss_mb": self.mb, "other_processes_cpu_cores": self.other_cores}
        if self.per_thread:
            out["cpu_s_by_thread"] = self.cpu_s_by_thread
        return out


def stats_ms(values_ns: list[int] | np.ndarray) -> dict[str, float]:
    a = np.asarray(values_ns, dtype=np.float64) / 1e6
    if a.size == 0:
        return {"mean": math.nan, "p50": math.nan, "p99": math.nan, "max": math.nan}
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "logical_cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["cpu_model"] = names[0] if names else platform.processor()
        info["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                             if f in flags]
    except OSError:
        info["cpu_model"] = platform.processor()
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    versions = {}
    for mod in ("torch", "onnxruntime", "openvino", "numpy", "cv2", "zmq"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        versions[mod] = getattr(m, "__version__", "?")
    info["versions"] = versions
    return info
