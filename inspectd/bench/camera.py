"""``inspectd bench --camera-fps``: a live camera against a recording of its own frames.

One process, one run, on the viky GenICam simulator (the ``genicam`` package's viky.cti):

1. **frames**: ``frames`` frames grabbed from viky (``frame_size``, Mono8), written as a
   lossless FFV1 recording, so that both runs inspect the same pictures.
2. **recording**: the service's ``Pipeline`` on that recording, as fast as it goes (policy
   ``block``): the rate at which this backend inspects these frames, the reference.
3. **camera**, for each rate asked for: the ``Pipeline`` on the live camera (its acquisition
   process, the shared-memory ring, policy ``drop_oldest`` as in service) for ``seconds``.

Rates are taken between the first and the last verdict of a run (publish times). Targets
(issue 10): a camera faster than the model is inspected at >= 0.9 x the recording rate; a
camera slower than the model has every frame inspected.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from inspectd.bench import (
    BackendFactory,
    BenchOptions,
    PhaseMonitor,
    Progress,
    availability,
    check_in_flight_and_streams,
    machine_info,
    precision_of,
    resolve_model,
)
from inspectd.bench.measure import warm
from inspectd.bench.report import fmt
from inspectd.errors import InspectdError

TARGET_RATIO = 0.9


def viky_cti() -> Path:
    try:
        import genicam
    except ImportError:
        raise InspectdError("--camera-fps: the camera bench needs the genicam package (its viky.cti "
                            "simulator): pip install genicam") from None
    cti = Path(genicam.__file__).with_name("viky.cti")
    if not cti.is_file():
        raise InspectdError(f"--camera-fps: the genicam package has no viky.cti ({cti})")
    return cti


def parse_rates(text: str) -> list[float | None]:
    """``max,20`` -> [None, 20.0] (None: the camera's maximum)."""
    out: list[float | None] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "max":
            out.append(None)
            continue
        try:
            rate = float(part)
        except ValueError:
            raise InspectdError(f"--camera-fps {text}: {part!r} is neither a number nor 'max'") from None
        if rate <= 0:
            raise InspectdError(f"--camera-fps {text}: rates must be positive")
        out.append(rate)
    if not out:
        raise InspectdError("--camera-fps: no rate given")
    return out


def _camera_cfg(cti: Path, size: tuple[int, int], rate: float | None):
    from inspectd.runtime.sources import GenICamConfig

    h, w = size
    cfg = GenICamConfig(cti=[str(cti)], serial="0", pixel_format="Mono8", width=w, height=h, buffers=8)
    if rate is None:
        cfg.frame_rate = _max_rate(cfg)
    else:
        cfg.frame_rate = rate
    return cfg


def _open_camera(cfg: Any) -> Any:
    """The camera in this process, opened as the service opens a source (``open_source``)."""
    from inspectd.runtime.sources import SourceConfig, open_source

    return open_source(SourceConfig(kind="genicam", genicam=cfg), "bench")


def _max_rate(cfg: Any) -> float:
    src = _open_camera(cfg)
    try:
        return float(src.node_max("AcquisitionFrameRate"))     # a GenICamSource's
    finally:
        src.stop()


def grab_frames(cti: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``n`` frames from viky (in this process: a few hundred frames, no inference beside)."""
    src = _open_camera(_camera_cfg(cti, size, 200.0))
    out: list[np.ndarray] = []
    try:
        src.start()
        while len(out) < n:
            frame = src.read()
            if frame is None:
                raise InspectdError("bench: the camera stopped delivering frames")
            out.append(frame.image.copy())
    finally:
        src.stop()
    return out


def write_ffv1(path: Path, frames: list[np.ndarray], fps: float = 50.0) -> None:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), fps, (w, h), False)
    if not writer.isOpened():
        raise InspectdError(f"bench: OpenCV cannot write an FFV1 recording at {path}")
    try:
        for img in frames:
            writer.write(img)
    finally:
        writer.release()


class _Verdicts:
    """A publisher tap: verdict publish times and uninspected counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.publish_ns: list[int] = []
        self.capture_ns: list[int] = []
        self.frames: list[int] = []

    def __call__(self, _topic, msg: dict) -> None:
        if msg.get("kind") == "verdict":
            with self.lock:
                self.publish_ns.append(int(msg["publish_wall_ns"]))
                self.capture_ns.append(int(msg["capture_wall_ns"]))
                self.frames.append(int(msg["frame"]))


def _run_pipeline(cfg, backend, seconds: float | None, in_thread: bool = False) -> dict[str, Any]:
    from inspectd.runtime.camera_process import CameraProcess
    from inspectd.runtime.pipeline import Pipeline
    from inspectd.runtime.sources import open_source

    tap = _Verdicts()
    # in_thread: the camera read by an acquisition thread in this process (the design before
    # runtime.camera_process), for comparison.
    source = open_source(cfg.source, cfg.camera) if in_thread else None
    pipe = Pipeline(cfg, backend=backend, tap=tap, handle_signals=False, source=source)
    mon = PhaseMonitor()
    pid = pipe.source.pid if isinstance(pipe.source, CameraProcess) else None
    if pid:
        mon.pids.append(pid)          # the acquisition process's CPU is ours
    timer = threading.Timer(seconds, pipe.request_stop) if seconds else None
    with mon:
        if timer is not None:
            timer.start()
        result = pipe.run()
    if timer is not None:
        timer.cancel()
    if result.exit_code != 0:
        raise InspectdError(f"bench: the pipeline stopped with {result.reason}: {result.error}")
    c = result.counters
    t = np.asarray(tap.publish_ns, np.int64)
    span = float(t.max() - t.min()) / 1e9 if len(t) > 1 else float("nan")
    # The source's rate: frame indices (a camera's follow its frame ids) over capture times.
    cap = np.asarray(tap.capture_ns, np.int64)
    cap_span = float(cap.max() - cap.min()) / 1e9 if len(cap) > 1 else 0.0
    return {
        "captured": c["captured"], "inspected": c["inspected"], "uninspected": c["uninspected"],
        "uninspected_by_reason": c["uninspected_by_reason"], "elapsed_s": c["elapsed_s"],
        "inspected_per_s": round((len(t) - 1) / span, 2) if len(t) > 1 else 0.0,
        "captured_per_s": round((max(tap.frames) - min(tap.frames)) / cap_span, 2) if cap_span else 0.0,
        "in_order": tap.frames == sorted(tap.frames),
        **mon.fields(),
    }


def run_camera_bench(opts: BenchOptions, rates: list[float | None], seconds: float,
                     progress: Progress | None = None, acquisition: tuple[str, ...] = ("process",)) -> dict[str, Any]:
    from inspectd.backends.config import InferenceConfig
    from inspectd.config import default_config
    from inspectd.model.checkpoint import read_metadata
    from inspectd.runtime.ringbuffer import OverflowPolicy

    progress = progress or (lambda msg: print(f"bench: {msg}", flush=True))
    if seconds <= 0:
        raise InspectdError(f"--camera-seconds {seconds}: must be positive")
    cti = viky_cti()
    backend_name = opts.pipeline_backend or (opts.backends[0] if opts.backends else None)
    if backend_name is None:
        backend_name = "openvino-bf16" if availability("openvino-bf16")[0] else "torch"
    check_in_flight_and_streams(opts, [backend_name])
    ok, why = availability(backend_name)
    if not ok:
        raise InspectdError(f"--pipeline-backend {backend_name}: {why}")
    started = time.time()
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="inspectd-bench-camera-") as tmp:
        workdir = Path(opts.workdir) if opts.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoint, model_info = resolve_model(opts, workdir, progress)
        mcfg, _ = read_metadata(checkpoint)
        model_info.update(name=mcfg.name, input_size=list(mcfg.input_size))
        h, w = opts.frame_size
        progress(f"grabbing {opts.frames} frames of {h}x{w} Mono8 from viky")
        frames = grab_frames(cti, opts.frames, (h, w))
        video = workdir / "viky.mkv"
        write_ffv1(video, frames)
        icfg = InferenceConfig(model=checkpoint, device="cpu", threads=opts.threads, in_flight=opts.in_flight,
                               streams=opts.streams)
        factory = BackendFactory(checkpoint, opts.threads, None, [], progress, streams=icfg.streams_for("openvino"))
        streams = icfg.streams_for(backend_name.split("-")[0])     # "openvino-bf16" -> openvino's

        def cfg_for(kind: Literal["video", "genicam"]):
            cfg = default_config()
            cfg.camera = "bench"
            cfg.inference = icfg
            cfg.bus.publish = None
            cfg.bus.queue_size = max(1000, 4 * opts.frames)
            cfg.service.notify = False
            cfg.log.verdicts = "none"
            cfg.line.gate_distance_m = 1e4      # no reject gate here: no late-verdict warnings
            cfg.source.channels = 1
            cfg.source.kind = kind
            return cfg

        def backend():
            b = factory.make(backend_name)
            warm(b, 1)
            return b

        progress(f"recording of those frames, {backend_name}, unpaced (policy block)")
        cfg = cfg_for("video")
        cfg.source.path = str(video)
        cfg.ring.policy = OverflowPolicy.block
        recording = _run_pipeline(cfg, backend(), None)
        ref = recording["inspected_per_s"]
        runs = []
        for rate, how in ((r, a) for r in rates for a in acquisition):
            gcfg = _camera_cfg(cti, (h, w), rate)
            progress(f"live viky at {gcfg.frame_rate:g} frames/s for {seconds:g} s, {backend_name} "
                     f"(policy drop_oldest, acquisition in a {how})")
            cfg = cfg_for("genicam")
            cfg.source.genicam = gcfg
            cfg.ring.policy = OverflowPolicy.drop_oldest
            r = _run_pipeline(cfg, backend(), seconds, in_thread=how == "thread")
            r["camera_fps_set"] = gcfg.frame_rate
            r["acquisition"] = how
            r["ratio_to_recording"] = round(r["inspected_per_s"] / ref, 4) if ref else None
            faster = r["captured_per_s"] > ref
            r["camera_faster_than_model"] = faster
            if faster:
                r["target"] = f"inspected rate >= {TARGET_RATIO} x recording rate"
                r["met"] = bool(r["ratio_to_recording"] is not None and r["ratio_to_recording"] >= TARGET_RATIO)
            else:
                r["target"] = "every frame inspected"
                r["met"] = r["inspected"] == r["captured"] and r["uninspected"] == 0
            runs.append(r)
        # The recording once more, after: on a shared machine speed drifts; both are reported.
        progress(f"recording again, {backend_name}")
        cfg = cfg_for("video")
        cfg.source.path = str(video)
        cfg.ring.policy = OverflowPolicy.block
        again = _run_pipeline(cfg, backend(), None)
    return {
        "inspectd_bench_camera": 1,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": machine,
        "model": model_info,
        "backend": backend_name,
        "precision": precision_of(backend_name),
        "frames": {"count": len(frames), "height": h, "width": w, "pixels": "viky (genicam simulator) Mono8",
                   "recording": "FFV1 .mkv written with OpenCV"},
        "threads": opts.threads,
        "streams": streams,
        "in_flight": icfg.in_flight_for(streams),
        "recording": recording,
        "recording_after": again,
        "camera": runs,
        "seconds": seconds,
    }


def markdown(r: dict[str, Any]) -> str:
    m, fr, mach = r["model"], r["frames"], r["machine"]
    rec, again = r["recording"], r["recording_after"]
    lines = [
        f"## inspectd bench, camera mode: {m['path'] or 'preset n, random weights'} on {r['backend']} "
        f"({r['precision']})",
        "",
        f"{mach.get('cpu_model', '?')}, {mach.get('logical_cpus')} logical CPUs, load average at start "
        f"{mach.get('load_average')}; frames of {fr['height']}x{fr['width']} Mono8 from viky, "
        f"OpenVINO streams: {r.get('streams', 1)}, frames in flight: {r['in_flight']}. "
        f"The recording holds {fr['count']} of the camera's frames.",
        "",
        "| run | camera frames/s | frames | inspected | uninspected | inspected frames/s | vs recording "
        "| other CPU | target | met |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|",
        f"| recording (policy block) | | {rec['captured']} | {rec['inspected']} | {rec['uninspected']} "
        f"| {fmt(rec['inspected_per_s'])} | 1.000 | {fmt(rec.get('other_processes_cpu_cores'), 2)} | | |",
    ]
    for c in r["camera"]:
        why = ", ".join(f"{k} {v}" for k, v in c["uninspected_by_reason"].items()) or "0"
        lines.append(
            f"| live viky at {c['camera_fps_set']:g} frames/s, {r['seconds']:g} s, acquisition in a "
            f"{c.get('acquisition', 'process')} "
            f"| {fmt(c['captured_per_s'])} | {c['captured']} | {c['inspected']} | {why} "
            f"| {fmt(c['inspected_per_s'])} | {fmt(c['ratio_to_recording'], 3)} "
            f"| {fmt(c.get('other_processes_cpu_cores'), 2)} | {c['target']} | {'yes' if c['met'] else 'NO'} |")
    lines.append(
        f"| recording again, after | | {again['captured']} | {again['inspected']} | {again['uninspected']} "
        f"| {fmt(again['inspected_per_s'])} | {fmt(again['inspected_per_s'] / rec['inspected_per_s'], 3)} "
        f"| {fmt(again.get('other_processes_cpu_cores'), 2)} | | |")
    lines += ["", "Rates between the first and the last verdict of each run; `vs recording` against the "
                  "first recording run. `other CPU`: cores used by processes other than this one and its "
                  "camera process during the run.", ""]
    return "\n".join(lines)
