"""The running service: source -> ring buffer -> inference -> publisher, and its supervisor.

Threads::

    acquisition (AcquisitionThread)  source.read() -> ring.put()      overflow -> on_drop
                (CameraAcquisition)  a GenICam camera: its own process writes into the ring's
                                     shared-memory slots (runtime.camera_process)
    inference   (this module)        ring.get() -> stage.begin() ... stage.finish()
                                     -> publisher.publish_verdict() -> ring.release()
    model       (InferenceStage)     the backend's calls, while the inference thread finishes
                                     the previous frame (inference.in_flight)
    publisher   (EventPublisher)     owns the ZeroMQ socket; calls the --out tap
    annotate    (Annotator, opt.)    draws and encodes the annotated video
    main        (Pipeline.run)       supervisor: signals, systemd notify, status, errors

Every frame offered to the ring ends as exactly one verdict or one uninspected event:
``captured == inspected + uninspected + queued + in_flight`` (the status counters; ``captured``
includes the frames the camera lost, which never reach the ring) is checked when it stops.

Shutdown (SIGTERM, SIGINT, end of the recording, or a fatal error in any thread): stop
acquiring (the acquisition thread closes the ring), finish the frame being inspected,
inspect the queued frames within ``service.shutdown_grace_s`` (or report them at once,
``service.shutdown_queued: report``), report what is left as uninspected, flush the
publisher, tell systemd STOPPING. A second signal skips the remaining queued frames.
Every wait on that path is bounded: a source stuck in read() is left behind after
``_SOURCE_STOP_S``, and a model call that has not returned ``inference.STUCK_AFTER_S`` after the
stop turned hurried fails the stop (exit 1, the frames reported) instead of hanging it.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from inspectd.backends.base import Backend, backend_label
from inspectd.config import DaemonConfig
from inspectd.domain.frames import FrameMeta
from inspectd.domain.verdicts import Verdict
from inspectd.errors import EXIT_CONFIG, EXIT_FAILURE, ConfigError, InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.notify import Notifier
from inspectd.runtime.placement import place
from inspectd.runtime.sources.base import AcquiredSource
from inspectd.stop_signals import STOP_SIGNALS, StopSignals, Waker

if TYPE_CHECKING:
    from inspectd.bus.publisher import EventPublisher
    from inspectd.runtime.acquisition import AcquisitionThread
    from inspectd.runtime.camera_process import CameraAcquisition
    from inspectd.runtime.capacity import Capacity
    from inspectd.runtime.inference import InferenceStage

log = structlog.get_logger("inspectd.pipeline")

Tap = Callable[[bytes, dict[str, Any]], None]     # (topic, message): the publisher's tap

# Uninspected reasons of frames that never reached the ring buffer: ``captured`` counts them
# too. Add a reason here when a new one is reported without passing through the ring.
NOT_IN_RING = ("camera_lost", "camera_silent", "corrupt")

# How long after the shutdown grace time the source may take to return from read().
_SOURCE_STOP_S = 5.0


@dataclass
class PipelineResult:
    exit_code: int
    reason: str                       # "end-of-stream", "signal", "error"
    counters: dict[str, Any]
    error: BaseException | None = None


@dataclass
class _Tally:
    """Counts kept by the pipeline itself (the ring keeps its own)."""

    verdicts: int = 0
    rejects: int = 0
    uninspected: int = 0
    not_published: int = 0        # verdicts the publisher could not queue (seq gap on the bus)
    late: int = 0                 # verdicts published after their gate deadline
    late_rejects: int = 0         # of those, rejects: a defect that may have passed the gate
    late_worst_ms: float | None = None
    late_last_ms: float | None = None
    late_last_frame: int | None = None
    uninspected_by_reason: Counter = field(default_factory=Counter)
    rejects_by_class: Counter = field(default_factory=Counter)
    defects_by_class: Counter = field(default_factory=Counter)


class Pipeline:
    """One camera's inspection pipeline; ``run()`` blocks until it has stopped.

    The stages are built from ``cfg`` unless given (tests pass a slow backend or a
    prepared source; ``self_test=False`` skips the start-up self-test, for stand-ins that
    count their calls). ``realtime``: pace a recording at its frame rate; None paces it
    when its rate is known (``run``: a recording stands in for a camera). ``capacity``: the
    capacity check preflight made (``runtime.capacity``); None: made here after the self-test
    (none without it), e.g. at a camera's own frame size. ``tap(topic, payload)``
    sees every message the publisher sends,
    from the publisher's thread. ``on_tick(pipeline)`` is called by the supervisor about
    every ``service.status_interval_s`` (replay's progress line).
    """

    def __init__(
        self,
        cfg: DaemonConfig,
        *,
        realtime: bool | None = False,
        backend: Backend | None = None,
        source: AcquiredSource | None = None,
        tap: Tap | None = None,
        annotate_path: str | None = None,
        notifier: Notifier | None = None,
        on_tick: Callable[[Pipeline], None] | None = None,
        handle_signals: bool = True,
        self_test: bool = True,
        coil: str | None = None,
        capacity: Capacity | None = None,
    ) -> None:
        self.cfg = cfg
        self.realtime = realtime
        self._tap = tap
        self._late_logged = 0
        self._on_tick = on_tick
        self._handle_signals = handle_signals
        self.notifier = notifier if notifier is not None else Notifier(enabled=cfg.service.notify)
        self.tally = _Tally()
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()     # a signal, or a fatal error
        self._hurry = threading.Event()              # report queued frames instead of inspecting
        # Wakes the supervisor early; a self-pipe, not an Event: a signal handler may set it
        # (inspectd.stop_signals says why a handler must not take a lock).
        self._wake = Waker()
        self._shutting_down = False
        self._drop_reason = "overflow"    # why the ring gives up frames: overflow, shutdown, error
        self._signals = 0                 # signals acted on (the supervisor's count)
        self._source_stuck = False
        self._recent_fps: float | None = None
        self._frame_est_ns: int | None = None      # recent time per frame, begin to verdict
        self._last_verdict_ns = time.monotonic_ns()
        self._local = threading.local()             # a drop reason for the inference thread's own drops
        self._rate_mark: tuple[int, float] | None = None
        self._errors: list[tuple[str, BaseException]] = []
        self._started_ns = 0
        self._stopped_ns = 0
        self._inference_thread: threading.Thread | None = None
        self.control = None
        self.alarms = None

        # Build everything that can fail on bad input before any thread starts, so that
        # a missing file or model is one clear error and nothing is left running.
        from inspectd.bus.messages import EventEncoder
        from inspectd.bus.publisher import EventPublisher
        from inspectd.line import position_fn, strip_position_m
        from inspectd.model.config import check_model_classes
        from inspectd.runtime.alarm_thread import AlarmThread
        from inspectd.runtime.camera_process import acquisition_for, ring_for
        from inspectd.runtime.coils import CoilDesk, CoilTracker
        from inspectd.runtime.inference import InferenceStage
        from inspectd.runtime.periodic import PeriodicDetector, check_classes
        from inspectd.runtime.sources import open_source

        self.annotator = None
        # What is built so far (a constructor that fails closes it); once built, the
        # properties ``publisher``, ``backend`` and ``source`` are the pipeline's parts.
        self._publisher: EventPublisher | None = None
        self._backend: Backend | None = backend
        self._source: AcquiredSource | None = None
        self._stage: InferenceStage | None = None
        self._acquisition: CameraAcquisition | AcquisitionThread | None = None
        self._acq_stop = threading.Event()
        try:
            if annotate_path is not None:
                from inspectd.runtime.annotate import Annotator
                self.annotator = Annotator(annotate_path, fps=10.0)   # checks the name first; set_stream below
            # A GenICam camera is acquired in its own process (runtime.camera_process: why).
            self._source = source if source is not None else open_source(cfg.source, cfg.camera, None,
                                                                        camera_process=True, log=cfg.log)
            if self.source.position is None:
                # A frame's strip position follows from its index once the frame height is known.
                self.source.position = position_fn(cfg.line, int(self.source.frame_shape[0]))
            if self._backend is None:
                from inspectd.backends import create_backend
                self._backend = create_backend(cfg.inference)
            check_classes(cfg.alarms.periodic, list(self.backend.class_names))
            check_model_classes(list(self.backend.class_names), list(self.backend.seg_class_names),
                                str(cfg.inference.model or "(the shipped model)"))
            self._stage = InferenceStage(self.backend, cfg.inference, cfg.merge, cfg.line)
            if self_test:
                # A model that loads can still be broken (NaN, zeroed weights, a runtime that
                # miscomputes): one known frame through the stage before the first real one.
                from inspectd.runtime.selftest import run_self_test
                model = str(cfg.inference.model or "(the shipped model)")
                found = run_self_test(self.stage, tuple(self.source.frame_shape),
                                      f"model {model} on {backend_label(self.backend)}")
                log.info("self_test_passed", backend=self.backend.name, **found)
                self._frame_est_ns = int(found["frame_ms"] * 1e6)
            if self.annotator is not None:
                self.annotator.set_stream(self.source.nominal_fps, self.stage.class_names, self.stage.seg_class_names)
            self.ring = ring_for(self.source, cfg.ring, self._on_drop)
            if realtime is None:
                # `run` on a recording: pace it like the camera it stands in for, if its rate is known.
                realtime = not self.source.live and bool(self.source.nominal_fps)
            self.realtime = realtime
            if capacity is None and self_test:
                # Not measured by preflight (a camera's own frame size): on the stage just warmed.
                from inspectd.runtime.capacity import check_capacity
                capacity = check_capacity(cfg, self.stage, tuple(self.source.frame_shape), paced=bool(realtime),
                                          nominal_fps=self.source.nominal_fps)
            self.capacity = capacity
            # Coils: the acquisition thread marks each frame read with the open coil.
            self.coils = CoilTracker(lambda i, h: strip_position_m(cfg.line, i, h), cfg.line.frame_length)
            self._acquisition = acquisition_for(
                self.source, self.ring, self._acq_stop, realtime=realtime, on_lost=self._on_lost,
                on_silent=self._on_silent, on_frame=self.coils.stamp, on_corrupt=self._on_corrupt,
                frame_period_s=cfg.line.frame_length(int(self.source.frame_shape[0])) / cfg.line.speed_m_per_s)
            if cfg.alarms.periodic.enabled:
                # Periodic defects: the detector has its own thread, fed by the publisher's.
                self.alarms = AlarmThread(PeriodicDetector(cfg.alarms.periodic, cfg.line.mm_per_px),
                                          lambda kind, body: self.publisher.publish_event(kind, body),
                                          name=f"alarms-{cfg.camera}").start()
            self._publisher = EventPublisher(cfg.bus, EventEncoder(cfg.camera, cfg.line,
                                                                   capacity=None if capacity is None else capacity.as_dict()),
                                             tap=self._on_message,
                                            status_source=self._status_payload, watcher=self.alarms)
            self.publisher.start()    # binds the socket: a bad or busy address fails here
            self.coil_desk = CoilDesk(self.coils, self.publisher, cfg.camera)
            if coil is not None:
                self.coil_desk.start(coil)        # before the first frame is read: it is the head
            if cfg.control.address is not None:
                from inspectd.control.server import ControlServer
                self.control = ControlServer(cfg.control, self.coil_desk.handle, f"control-{cfg.camera}").start()
        except BaseException:
            self._close_all()
            raise

    def _close_all(self) -> None:
        """Undo a half-built pipeline (a constructor that failed)."""
        if self._stage is not None:
            self._close_quietly(self._stage.close_model)
        if self.control is not None:
            self.control.close()
        if self.alarms is not None:
            self.alarms.close(0.5)
        if self._publisher is not None:
            self._publisher.close(0.5)
        if self.annotator is not None:
            self._close_quietly(self.annotator.close)
        if self._backend is not None:
            self._close_quietly(self._backend.close)
        if self._source is not None:
            self._close_quietly(self._source.stop)

    @property
    def publisher(self) -> EventPublisher:
        assert self._publisher is not None, "built by the constructor"
        return self._publisher

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "built by the constructor"
        return self._backend

    @property
    def source(self) -> AcquiredSource:
        assert self._source is not None, "built by the constructor"
        return self._source

    @property
    def stage(self) -> InferenceStage:
        assert self._stage is not None, "built by the constructor"
        return self._stage

    @property
    def acquisition(self) -> CameraAcquisition | AcquisitionThread:
        assert self._acquisition is not None, "built by the constructor"
        return self._acquisition

    # -- wiring helpers --------------------------------------------------------------
    def _on_drop(self, meta: FrameMeta) -> None:
        """Every frame the ring gives up on: announce it downstream as uninspected."""
        self._uninspected(meta, getattr(self._local, "reason", None) or self._drop_reason)

    def _on_corrupt(self, meta: FrameMeta) -> None:
        """A frame the source could not deliver whole (damaged, truncated): never inspected."""
        self.coils.stamp_meta(meta)
        self._uninspected(meta, "corrupt")

    def _on_lost(self, meta: FrameMeta) -> None:
        """A frame the camera lost (frame-id gap): it never reached the ring."""
        self.coils.stamp_meta(meta)
        self._uninspected(meta, "camera_lost")

    def _on_silent(self, meta: FrameMeta) -> None:
        """A frame length of strip that passed while the camera delivered nothing."""
        self._uninspected(meta, "camera_silent")

    def _on_message(self, topic: bytes, msg: dict[str, Any]) -> None:
        """Every message as sent (publisher thread): late verdicts are counted, then the
        caller's tap sees it. Late is decided where it is sent: ``publish_wall_ns`` after
        ``gate_deadline_wall_ns``, the strip's first row was at the gate before its verdict."""
        if msg.get("kind") == "verdict" and msg.get("late"):
            late_ms = round((int(msg["publish_wall_ns"]) - int(msg["gate_deadline_wall_ns"])) / 1e6, 1)
            with self._lock:
                t = self.tally
                t.late += 1
                t.late_rejects += msg.get("status") == "reject"
                t.late_worst_ms = late_ms if t.late_worst_ms is None else max(t.late_worst_ms, late_ms)
                t.late_last_ms, t.late_last_frame = late_ms, int(msg["frame"])
        if self._tap is not None:
            self._tap(topic, msg)

    def _log_late(self) -> None:
        """One warning per supervisor tick in which verdicts were late (paced runs only: a
        recording replayed as fast as it goes has no line to be late for)."""
        with self._lock:
            t = self.tally
            new = t.late - self._late_logged
            if new <= 0:
                return
            self._late_logged = t.late
            fields = dict(late=new, late_total=t.late, late_rejects_total=t.late_rejects,
                          worst_ms=t.late_worst_ms, last_ms=t.late_last_ms, last_frame=t.late_last_frame)
        if self.realtime or self.source.live:
            log.warning("verdicts_late", **fields,
                        note="published after the strip reached the gate: for the line, uninspected")

    def _uninspected(self, meta: FrameMeta, reason: str) -> None:
        with self._lock:
            self.tally.uninspected += 1
            self.tally.uninspected_by_reason[reason] += 1
        # Placed here, as a verdict is in the stage: the gate window goes with the report.
        self.publisher.publish_dropped(meta, place(self.cfg.line, meta), reason)

    # -- inference thread ------------------------------------------------------------
    def _inference_loop(self) -> None:
        """Keeps up to ``inference.in_flight`` frames with the model.

        A frame is begun as soon as the ring hands it out; the oldest is finished when the
        model has the next one to work on, or at once when the ring has nothing more (so a
        frame never waits for its successor, and latency stays one frame's inspection).
        """
        ring, stage = self.ring, self.stage
        try:
            while not self._hurry.is_set():
                frame = ring.get(timeout=0.0 if stage.pending else 0.1)
                if frame is not None and not self._skip_if_late(frame):
                    self._begin(frame)
                    if stage.pending < stage.in_flight:
                        continue
                if stage.pending:
                    self._finish_oldest()
                elif ring.closed and self._drained():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the supervisor
            self._fail("inference", exc)
        finally:
            self._report_rest()
            self._wake.set()

    def _skip_if_late(self, frame: Frame) -> bool:
        """``inference.skip_late``: a frame whose verdict would come after its strip reached the
        gate is released uninspected (reason ``deadline``) at once, in time for the gate. Only
        where there is a line to be late for (a camera, a paced recording)."""
        est = self._frame_est_ns
        if est is None or not self.cfg.inference.skip_late or not (
                self.realtime or self.source.live):
            return False
        from inspectd.line import gate_deadline_wall_ns
        if time.time_ns() + est + 1_000_000 <= gate_deadline_wall_ns(self.cfg.line, frame.capture_wall_ns):
            return False
        if time.monotonic_ns() - self._last_verdict_ns > 1_000_000_000:
            return False      # the estimate learns only from inspected frames: one a second is tried
        self._local.reason = "deadline"
        try:
            self.ring.release(frame, inspected=False)
        finally:
            self._local.reason = None
        return True

    def _drained(self) -> bool:
        # After close, get() returns None at once only when nothing is queued or being
        # written; a put that was copying while the ring closed is waited for here.
        frame = self.ring.get(timeout=5.0)
        if frame is None:
            return True
        self._begin(frame)
        return False

    def _begin(self, frame: Frame) -> None:
        try:
            self.stage.begin(frame)
        except BaseException:
            self._drop_reason = "error"
            # Inspection stops: the older frames still with the model are reported first, so
            # that uninspected reports stay in frame order.
            for older in self.stage.abandon():
                self.ring.release(older, inspected=False)
            self.ring.release(frame, inspected=False)
            raise

    def _finish_oldest(self) -> None:
        stage = self.stage
        job = stage.oldest
        frame = job.frame
        inspected = False
        try:
            verdict, labels = stage.finish(job, cancel=self._hurry)
            if self.annotator is not None:
                self.annotator.submit(frame.image.copy(), verdict, labels.copy())
            if not self.publisher.publish_verdict(verdict, frame.image):
                with self._lock:
                    self.tally.not_published += 1
            inspected = True
            self._count(verdict)
            took = verdict.inference_end_ns - verdict.inference_start_ns
            est = self._frame_est_ns
            self._frame_est_ns = took if est is None else int(0.7 * est + 0.3 * took)
            self._last_verdict_ns = verdict.inference_end_ns
        except BaseException:
            self._drop_reason = "error"
            raise
        finally:
            self.ring.release(frame, inspected=inspected)

    def _count(self, verdict: Verdict) -> None:
        with self._lock:
            t = self.tally
            t.verdicts += 1
            if t.verdicts == 1:
                self._wake.set()     # READY goes out now, not at the next tick
            for d in verdict.defects:
                t.defects_by_class[d.cls] += 1
            if verdict.status == "reject":
                t.rejects += 1
                for cls in {d.cls for d in verdict.defects if d.rejects} or {d.cls for d in verdict.defects}:
                    t.rejects_by_class[cls] += 1
        mode = self.cfg.log.verdicts
        if mode == "all" or (mode == "rejects" and verdict.status == "reject"):
            log.info(
                "verdict", frame=verdict.meta.index, status=verdict.status,
                defects=[f"{d.cls}:{d.score:.2f}" for d in verdict.defects],
            )

    def _report_rest(self) -> None:
        """Whatever is still queued or with the model when inspection stops early is
        reported uninspected."""
        if self._drop_reason == "overflow":
            self._drop_reason = "shutdown"
        for frame in self.stage.abandon():
            self.ring.release(frame, inspected=False)
        self._acq_stop.set()
        self.ring.close(drop_queued=True)

    # -- errors and signals ----------------------------------------------------------
    def _fail(self, where: str, exc: BaseException) -> None:
        """A fatal error: logged once, then the same clean shutdown as for SIGTERM.

        When the source failed, the frames already in the ring are sound and are still
        inspected (within the grace time); when inspection itself failed they are reported
        uninspected at once.
        """
        with self._lock:
            first = not self._errors
            self._errors.append((where, exc))
        if where != "acquisition":
            self._drop_reason = "error"
            self._hurry.set()
        if first:
            if isinstance(exc, InspectdError):
                log.error("pipeline_failed", stage=where, error=str(exc))
            else:
                log.error("pipeline_failed", stage=where, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        self._stop_requested.set()
        self._wake.set()

    def _act_on_signals(self, caught: int) -> None:
        """The supervisor's part of a signal (the handler only counted it and woke us)."""
        if caught <= self._signals:
            return
        self._signals = caught
        if caught > 1:
            self._hurry.set()    # second signal: do not wait for the queued frames
        self._stop_requested.set()

    def fail(self, where: str, exc: BaseException) -> None:
        """A fatal error found outside the pipeline's own threads (``replay --out`` cannot
        write): the same clean stop as any other fatal error, logged once, reason ``error``."""
        self._fail(where, exc)

    def request_stop(self, hurry: bool = False) -> None:
        """Stop as SIGTERM would (for embedding and tests)."""
        if hurry:
            self._hurry.set()
        self._stop_requested.set()
        self._wake.set()

    # -- counters --------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        ring = self.ring.counters()
        with self._lock:
            t = self.tally
            out: dict[str, Any] = {
                # Every frame of the source: what reached the ring, and what the camera lost or
                # what passed while it was silent (reported uninspected without reaching it).
                "captured": ring.captured + sum(t.uninspected_by_reason.get(r, 0) for r in NOT_IN_RING),
                "inspected": t.verdicts,
                "rejects": t.rejects,
                "uninspected": t.uninspected,
                "not_published": t.not_published,
                "late": t.late,
                "late_rejects": t.late_rejects,
                "late_worst_ms": t.late_worst_ms,
                "late_last_ms": t.late_last_ms,
                "queued": ring.queued,
                "in_flight": ring.in_flight,
                "max_queued": ring.max_queued,
                "rejects_by_class": dict(t.rejects_by_class),
                "defects_by_class": dict(t.defects_by_class),
                "uninspected_by_reason": dict(t.uninspected_by_reason),
            }
        now = self._stopped_ns or time.monotonic_ns()
        elapsed = (now - self._started_ns) / 1e9 if self._started_ns else 0.0
        out["elapsed_s"] = round(elapsed, 3)
        out["fps"] = round(out["inspected"] / elapsed, 2) if elapsed > 0 else 0.0
        out["fps_recent"] = round(self._recent_fps, 2) if self._recent_fps is not None else out["fps"]
        return out

    def _update_rate(self, inspected: int, now: float) -> None:
        """Frames per second over the last status interval (what systemctl status should show)."""
        if self._rate_mark is not None:
            n0, t0 = self._rate_mark
            if now > t0:
                self._recent_fps = (inspected - n0) / (now - t0)
        self._rate_mark = (inspected, now)

    def status_line(self, c: dict[str, Any] | None = None) -> str:
        c = c or self.counters()
        late = f", late {c['late']} (worst {c['late_worst_ms']:.0f} ms)" if c.get("late") else ""
        return (f"inspected {c['inspected']}, rejects {c['rejects']}, uninspected {c['uninspected']}, "
                f"queued {c['queued']}, {c['fps_recent']:.1f} fps" + late + self._silence_note())

    def _silence_note(self) -> str:
        acq = self._acquisition.stats() if self._acquisition is not None else {}
        return f", CAMERA SILENT for {acq['silent_s']:.0f} s" if acq.get("camera_silent") else ""

    # -- supervisor ------------------------------------------------------------------
    def run(self) -> PipelineResult:
        svc = self.cfg.service
        with StopSignals(self._wake, STOP_SIGNALS if self._handle_signals else ()) as caught:
            return self._supervise(svc, caught)

    def _supervise(self, svc, caught: StopSignals) -> PipelineResult:
        notifier = self.notifier
        wd_interval = notifier.watchdog_interval_s
        tick = min(svc.status_interval_s, wd_interval or svc.status_interval_s, 0.5)

        self._started_ns = time.monotonic_ns()
        self._inference_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._inference_thread.start()
        self.acquisition.start()
        log.info("pipeline_started", source=self.cfg.source.describe(), backend=self.backend.name,
                 policy=self.ring.policy.value, realtime=self.realtime, frame_shape=list(self.source.frame_shape))

        ready = False
        reason = "end-of-stream"
        last_status = 0.0
        last_ping = time.monotonic()
        inspected_at_ping = source_at_ping = 0
        shutdown_deadline: float | None = None

        while True:
            self._wake.wait(tick)
            self._act_on_signals(caught.count)
            now = time.monotonic()
            self._collect_errors()
            self._log_late()

            c = self.counters()
            if not ready and not self._shutting_down and (c["inspected"] > 0 or svc.ready_when == "started"):
                ready = True
                notifier.ready(self.status_line(c))
                log.info("ready", inspected=c["inspected"])
            # After STOPPING=1 systemd no longer expects pings (the stop has its own timeout).
            if wd_interval is not None and not self._shutting_down and now - last_ping >= wd_interval:
                # Idle (nothing to inspect) counts as healthy only if the source still answers:
                # a triggered camera times out in read() while the line stands still.
                acq = self.acquisition.stats()
                source_alive = acq["frames_read"] + acq["timeouts"]
                # A silent camera is not idle: it keeps systemd's watchdog only while reconnecting.
                idle = c["queued"] == 0 and c["in_flight"] == 0 and source_alive > source_at_ping \
                    and self.acquisition.is_alive() and not (acq.get("camera_silent") and not acq.get("reconnecting"))
                # Reconnecting a silent camera is work, not a hang (bounded by reconnect_attempts).
                reconnecting = bool(acq.get("reconnecting")) and self.acquisition.is_alive()
                if c["inspected"] > inspected_at_ping or \
                        ((svc.watchdog_when_idle and idle or reconnecting) and not self._errors):
                    notifier.watchdog()
                    last_ping, inspected_at_ping, source_at_ping = now, c["inspected"], source_alive
            if now - last_status >= svc.status_interval_s:
                last_status = now
                self._update_rate(c["inspected"], now)
                if ready and not self._shutting_down:
                    notifier.status(self.status_line(c))
                if self._on_tick is not None:
                    self._on_tick(self)

            if self._stop_requested.is_set() and not self._shutting_down:
                reason = "error" if self._errors else "signal"
                self._begin_shutdown(reason)
                shutdown_deadline = now + (0.0 if svc.shutdown_queued == "report" else svc.shutdown_grace_s)
            elif not self._shutting_down and self.ring.closed:
                # The acquisition thread closed the ring: end of the recording.
                self._begin_shutdown("end-of-stream")   # the queued frames are all inspected
            if shutdown_deadline is not None and now >= shutdown_deadline and not self._hurry.is_set():
                if self.ring.counters().queued:
                    log.warning("shutdown_grace_expired", queued=self.ring.counters().queued)
                self._hurry.set()
            if shutdown_deadline is not None and now >= shutdown_deadline + _SOURCE_STOP_S \
                    and not self.ring.closed:
                # The source has not returned from read() since stop: do not wait for it
                # (its thread is a daemon); end inspection so that the process can exit.
                log.error("acquisition_stuck", waited_s=_SOURCE_STOP_S)
                self._source_stuck = True
                self.ring.close(drop_queued=True)

            if not self._inference_thread.is_alive():
                break

        return self._finish(reason)

    def _begin_shutdown(self, reason: str) -> None:
        self._shutting_down = True
        if self._drop_reason == "overflow":
            self._drop_reason = "shutdown"
        log.info("shutdown_started", reason=reason, **{k: v for k, v in self.counters().items()
                                                       if k in ("inspected", "queued", "in_flight")})
        self.notifier.stopping(f"stopping ({reason}): {self.status_line()}")
        self._acq_stop.set()

    def _collect_errors(self) -> None:
        acq_err = self.acquisition.error
        if acq_err is not None and not any(w == "acquisition" for w, _ in self._errors):
            self._fail("acquisition", acq_err)
        if self.annotator is not None and self.annotator.error is not None \
                and not any(w == "annotate" for w, _ in self._errors):
            self._fail("annotate", self.annotator.error)
        pub_err = self.publisher.error
        if pub_err is not None and not any(w == "publisher" for w, _ in self._errors):
            # Verdicts no longer leave the process: stop, so that systemd restarts the service.
            self._fail("publisher", pub_err)

    def _status_payload(self, c: dict[str, Any] | None = None) -> dict[str, Any]:
        """The counters of a ``status`` event (the publisher asks for them on its thread)."""
        payload = dict(c or self.counters())
        payload["acquisition"] = self.acquisition.stats()
        if self.alarms is not None:
            payload["alarms"] = self.alarms.stats()
        return payload

    def _finish(self, reason: str) -> PipelineResult:
        if not self._shutting_down:
            self._begin_shutdown(reason)
        self.acquisition.join(timeout=0.5 if self._source_stuck else 2 * _SOURCE_STOP_S)
        if self.acquisition.is_alive() and not self._source_stuck:
            log.error("acquisition_stuck", waited_s=2 * _SOURCE_STOP_S)
        self._collect_errors()
        self.ring.close(drop_queued=True)    # a put that raced the close is reported too
        self._stopped_ns = time.monotonic_ns()

        if self.annotator is not None:
            try:
                self.annotator.close()
            except BaseException as exc:  # noqa: BLE001
                self._fail("annotate", exc)
        if self.control is not None:
            self.control.close()
        if self.alarms is not None:
            # The alarms of the last verdicts go out before the coil ends and the bus closes.
            self.publisher.flush(self.cfg.service.flush_timeout_s)
            self.alarms.close(self.cfg.service.flush_timeout_s)
        self.coil_desk.stop()                # the open coil ends after its last frame's verdict
        # The final status is built when it is sent, after the last verdict: its late count is complete.
        self.publisher.publish_status(lambda: self._status_payload(self.counters()))
        if not self.publisher.close(self.cfg.service.flush_timeout_s):
            log.warning("publisher_not_flushed", timeout_s=self.cfg.service.flush_timeout_s)
        self._log_late()                     # the verdicts sent while closing
        final = self.counters()
        self._close_quietly(self.stage.close)     # the model thread, then the backend
        self.notifier.close()

        ring = self.ring.counters()
        # Frames the camera lost or never took (silence) were never offered to the ring.
        # The identity the status documents (docs/events.md), and the ring's own books.
        ok = final["captured"] == final["inspected"] + final["uninspected"] + final["queued"] + final["in_flight"] \
            and ring.queued == 0 and ring.in_flight == 0 and ring.inspected == final["inspected"]
        log_fn = log.info if ok else log.error
        bus = self.publisher.stats
        error = self._errors[0][1] if self._errors else None
        # An error found while shutting down (the last verdicts could not be written, say) is
        # the reason too, as in the result: the stop began as end-of-stream but ended failed.
        stop_reason = "error" if error is not None else reason
        log_fn("pipeline_stopped", reason=stop_reason, frames_accounted=ok,
               **{k: v for k, v in final.items() if k not in ("queued", "in_flight")},
               bus={k: bus.get(k, 0) for k in ("emitted", "sent", "not_sent", "queue_full",
                                               "uninspected_frames", "tap_errors")})
        code = 0
        if error is not None:
            # At run time only a configuration error found late (a ring too big for memory
            # once the camera's frame size is known) is 78; everything else is a failure (1).
            code = EXIT_CONFIG if isinstance(error, ConfigError) or getattr(error, "exit_code", None) == EXIT_CONFIG \
                else EXIT_FAILURE
        elif not ok:
            code = 1
        return PipelineResult(exit_code=code, reason=stop_reason, counters=final, error=error)

    @staticmethod
    def _close_quietly(close: Callable[[], object]) -> None:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - already shutting down
            log.warning("close_failed", what=getattr(close, "__qualname__", repr(close)), error=str(exc))
