"""Late verdicts: counted and reported by the daemon, and failed safe by the example actuator.

Real parts: a recording paced at its frame rate, the pipeline, a PUB socket on loopback, the
example actuator's loop on a SUB socket. The model is the thresholding stand-in, made slow
(nothing real can be made slow on purpose), so that verdicts miss a gate 20 ms downstream.
"""
from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import structlog
from stand_ins import ThresholdBackend, write_video

from inspectd.bus.messages import camera_prefixes
from inspectd.bus.subscriber import EventSubscriber
from inspectd.config import default_config
from inspectd.runtime.pipeline import Pipeline
from inspectd.runtime.ringbuffer import OverflowPolicy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _actuator_module():
    spec = importlib.util.spec_from_file_location("example_reject_actuator_late", EXAMPLES / "reject_actuator.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


actuator = _actuator_module()


class Gate:
    def __init__(self) -> None:
        self.changes: list[tuple[bool, str]] = []

    def set(self, active: bool, reason: str, now_ns: int) -> None:
        self.changes.append((active, reason))


WINDOW_KINDS = ("verdict", "uninspected")      # the messages that carry a gate window


class WatchedLogic(actuator.ActuatorLogic):
    """The example's logic, unchanged, noting how far it has got: after each decision, the
    window messages heard so far and the time it decided for (one tuple: read from the test thread)."""

    heard = 0
    decided: tuple[int, int] = (0, 0)

    def on_event(self, ev, now_ns: int) -> None:
        super().on_event(ev, now_ns)
        if ev.msg is not None and ev.msg.get("kind") in WINDOW_KINDS:
            self.heard += 1

    def state(self, now_ns: int) -> tuple[bool, str]:
        out = super().state(now_ns)
        self.decided = (self.heard, now_ns)
        return out


def _wait_for(condition, timeout_s: float) -> None:
    """Until ``condition()`` or ``timeout_s`` (then the test's assertions say what is missing)."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _acted_on_every_window(logic: WatchedLogic, messages: list[dict]) -> bool:
    """The actuator has heard every verdict and uninspected message and decided at a time past
    the last gate window, so it has fired (or found missed) every window."""
    windows = [m for m in messages if m["kind"] in WINDOW_KINDS]
    last = max((m["gate_until_wall_ns"] for m in windows), default=0)
    heard, at_ns = logic.decided
    return heard >= len(windows) and at_ns >= last


def _run_with_actuator(tmp_path, delay_s: float, gate_distance_m: float, skip_late: bool = False):
    video = tmp_path / "line.avi"
    truth = write_video(video, 25, size=(200, 200), fps=25.0, defect_every=5)
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.ring.slots = 4
    cfg.ring.policy = OverflowPolicy.block       # every frame gets a verdict, late or not
    cfg.line.speed_m_per_s = 10.0
    cfg.line.gate_distance_m = gate_distance_m
    cfg.bus.publish = "tcp://127.0.0.1:*"
    cfg.bus.heartbeat_interval_s = 0.05
    cfg.bus.uninspected_max_delay_s = 0.0
    cfg.inference.skip_late = skip_late
    messages: list[dict] = []
    pipeline = Pipeline(cfg, realtime=True, backend=ThresholdBackend(delay_s=delay_s),
                        tap=lambda topic, msg: messages.append(msg), handle_signals=False)
    endpoint = pipeline.publisher.endpoint
    sub = EventSubscriber(endpoint, camera_prefixes("cam0", ["verdict", "uninspected", "heartbeat"]))
    status_sub = EventSubscriber(endpoint, camera_prefixes("cam0", ["status"]))
    warnings: list[str] = []
    logic = WatchedLogic("cam0", silence_factor=1000.0, default_span_s=0.05, warn=warnings.append)
    gate, stop = Gate(), threading.Event()
    loop = threading.Thread(target=actuator.run, args=(sub, logic, gate, stop), daemon=True)
    loop.start()
    try:
        # The actuator listens before the line starts: once it has heard a heartbeat, its
        # subscription is in place and no verdict is lost to ZeroMQ's slow joiner.
        _wait_for(lambda: logic.heard_ns is not None, 10.0)
        with structlog.testing.capture_logs() as logs:
            result = pipeline.run()
        _run_with_actuator.logs = logs
        statuses = []
        while (ev := status_sub.recv(2.0)) is not None:
            statuses.append(ev.msg)
            if ev.msg["counters"]["inspected"] == len(truth):
                break
        # No fixed margin after the last window (a loaded machine outlasts it): until the
        # actuator has acted on every window.
        _wait_for(lambda: _acted_on_every_window(logic, messages), 60.0)
    finally:
        stop.set()
        loop.join(10)
        sub.close()
        status_sub.close()
    return truth, result, messages, statuses, logic, gate, warnings


def test_slow_model_late_verdicts_are_counted_reported_and_fail_safe(tmp_path):
    # The gate is 2 cm (2 ms) downstream and a frame takes the model 60 ms: every verdict is late
    # (inference.skip_late off: the frames are inspected anyway).
    truth, result, messages, statuses, logic, gate, warnings = _run_with_actuator(tmp_path, 0.06, 0.02)
    c = result.counters
    verdicts = [m for m in messages if m["kind"] == "verdict"]
    assert result.exit_code == 0 and c["inspected"] == len(truth) == len(verdicts)
    late = [v for v in verdicts if v["late"]]
    assert c["late"] == len(late) == len(verdicts)
    assert c["late_rejects"] == sum(v["status"] == "reject" for v in late) == sum(truth)
    margins = [(v["publish_wall_ns"] - v["gate_deadline_wall_ns"]) / 1e6 for v in late]
    assert c["late_worst_ms"] == round(max(margins), 1) and c["late_last_ms"] == round(margins[-1], 1)
    assert c["late_worst_ms"] >= 50
    # The status event on the wire carries the same counts (the final one is sent after the last verdict).
    final = statuses[-1]["counters"]
    assert (final["late"], final["late_rejects"], final["late_worst_ms"]) == (c["late"], c["late_rejects"],
                                                                             c["late_worst_ms"])
    # The actuator: every reject arrived after its strip had passed, so each is reported MISSED
    # (to mark the coil), and the gate rejects from the first late verdict on.
    assert sorted(int(w.reason.split()[-1]) for w in logic.missed) == [i for i, t in enumerate(truth) if t]
    assert len(logic.late) == len(verdicts) and logic.behind
    assert (True, "verdicts late: no verdict yet for the strip at the gate") in gate.changes
    assert gate.changes[-1][0] is True
    assert any(w.startswith("late: ") for w in warnings)
    # ... and the daemon logged them (a warning per status tick, the total in the last one).
    logged = [e for e in _run_with_actuator.logs if e["event"] == "verdicts_late"]
    assert logged and logged[-1]["late_total"] == c["late"] and logged[-1]["log_level"] == "warning"


def test_fast_model_is_not_late_and_the_gate_passes(tmp_path):
    truth, result, messages, statuses, logic, gate, warnings = _run_with_actuator(tmp_path, 0.0, 5.0)
    c = result.counters
    assert c["inspected"] == len(truth) and c["late"] == 0 and c["late_worst_ms"] is None
    assert statuses[-1]["counters"]["late"] == 0
    assert not logic.late and not logic.missed and not logic.behind
    assert sum(f.reason.startswith("reject frame") for f in logic.fired) == sum(truth)


def test_frames_that_cannot_make_the_gate_are_published_uninspected_in_time(tmp_path):
    """inference.skip_late (the default): with 150 ms a frame and the gate 100 ms downstream, a
    frame is not inspected into a late verdict but published at once as uninspected (deadline),
    so the actuator rejects its strip in time. About once a second one frame is still tried (the
    time per frame is learnt from inspected frames): those verdicts are late, and so are the
    frames that queue behind them."""
    truth, result, messages, statuses, logic, gate, warnings = _run_with_actuator(tmp_path, 0.15, 1.0,
                                                                                  skip_late=True)
    c = result.counters
    skipped = [i for m in messages if m["kind"] == "uninspected" and m["reason"] == "deadline"
               for i in range(m["first_frame"], m["last_frame"] + 1)]
    verdicts = [m["frame"] for m in messages if m["kind"] == "verdict"]
    assert sorted(skipped + verdicts) == list(range(len(truth)))        # every frame accounted once
    assert c["uninspected_by_reason"].get("deadline") == len(skipped) >= len(truth) - 3
    assert c["late"] == len(verdicts) <= 3                               # only the frames tried
    # The deadline stretches reached the actuator before their strip reached the gate, but for
    # the frames that queued (4 ring slots) while a tried frame had the model.
    late_skips = [w for w in logic.late if "deadline" in w.reason]
    late_frames = sum(int(w.reason.split()[2].split("..")[1]) - int(w.reason.split()[2].split("..")[0]) + 1
                      for w in late_skips)
    assert late_frames <= 4 * len(verdicts), late_skips
    assert sum(f.reason.endswith("(deadline)") for f in logic.fired) >= 1
    assert c["captured"] == c["inspected"] + c["uninspected"]


def test_replay_realtime_summary_reports_late_verdicts(tmp_path):
    """`inspectd replay --realtime`: the summary says how many verdicts were late and by how much
    (a real model file; the gate 1 mm downstream, so that no verdict can be in time)."""
    import os
    import subprocess

    from stand_ins import tiny_checkpoint
    video = tmp_path / "v.avi"
    write_video(video, 8, size=(200, 200), fps=25.0)
    cfg = tmp_path / "line.yaml"
    cfg.write_text("line: {gate_distance_m: 0.001}\ninference: {backend: torch, skip_late: false}\n")
    model = tiny_checkpoint(tmp_path / "m.safetensors")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    args = [sys.executable, "-m", "inspectd.cli", "replay", str(video), "--model", str(model), "--config", str(cfg),
            "--show", "none"]
    r = subprocess.run([*args, "--realtime"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "  late: 8 verdicts (0 rejects) published after their strip reached the gate; worst " in r.stderr
    # Unpaced, frames wait in the ring by design: there is no line to be late for, nothing is said.
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "late:" not in r.stderr and "verdicts_late" not in r.stderr, r.stderr
