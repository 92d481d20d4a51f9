#!/usr/bin/env python3
"""A reject-gate actuator driven by the inspectd event bus, failing safe.

The gate is switched on ("reject") while any of these holds:

- a reject verdict's strip is at the gate: from the verdict's ``gate_deadline_wall_ns`` to its
  ``gate_until_wall_ns`` (fired at once if the verdict came late);
- an uninspected stretch is at the gate (``gate_deadline_wall_ns`` .. ``gate_until_wall_ns``):
  strip nobody looked at is rejected;
- verdicts are late: a verdict (``ok`` or ``reject``) or an uninspected stretch arrived after its
  strip reached the gate. The verdicts of the strip now at the gate are then, in all
  likelihood, late too: the gate rejects from then until a verdict arrives before its
  deadline again (verdicts come in frame order, so the strip between is covered by verdicts
  that have arrived). The part of the strip that passed the gate before its verdict was, for
  the line, uninspected: it is reported (``MISSED``, with its strip positions, in ``missed``)
  so that the coil can be marked for re-inspection; a reject among it is a defect shipped;
- messages were missed (a gap in the sequence numbers) or the publisher restarted: the
  strip they were about is unknown, so everything that can still be ahead of the gate is
  rejected -- for ``span`` from now, where ``span`` (gate delay plus one frame) is learnt
  from the verdicts;
- the publisher is silent: no message for ``--silence-factor`` heartbeat intervals (or none
  yet since start), and for ``span`` after it speaks again (also after the first message:
  what was between camera and gate when the actuator started is unknown to it).

Times are the publisher host's wall clock: the two machines' clocks must be synchronised
(PTP or chrony); a warning is logged when a message looks like it comes from the future
or is older than ``--max-age-ms``. A real gate would be driven by a PLC output here
(``Gate``); this program shows the decisions and prints them.

    python examples/reject_actuator.py tcp://inspect-pc:5556 --camera cam0
"""
from __future__ import annotations

import argparse
import heapq
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from inspectd.bus.messages import camera_prefixes
from inspectd.bus.subscriber import Event, EventSubscriber

NS = 1_000_000_000


@dataclass(order=True)
class Window:
    start_ns: int
    end_ns: int
    reason: str = field(compare=False)


@dataclass
class Fire:
    """One window that became active (``at_ns`` is when the actuator acted on it)."""
    reason: str
    start_ns: int
    end_ns: int
    at_ns: int


class Gate(Protocol):
    def set(self, active: bool, reason: str, now_ns: int) -> None: ...


class PrintGate:
    def set(self, active: bool, reason: str, now_ns: int) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(now_ns / NS)) + f".{now_ns % NS // 1_000_000:03d}"
        print(f"{stamp} gate {'REJECT' if active else 'pass  '} {reason}", flush=True)


class ActuatorLogic:
    """The decisions, apart from sockets and clocks (``now_ns`` is wall time)."""

    def __init__(self, camera: str | None = None, silence_factor: float = 3.0,
                 default_span_s: float = 1.0, max_age_ms: float = 200.0,
                 warn: Callable[[str], None] | None = None):
        self.camera = camera
        self.silence_factor = silence_factor
        self.span_ns = round(default_span_s * NS)     # gate delay + one frame, learnt from verdicts
        self.max_age_ns = round(max_age_ms * 1e6)
        self.warn = warn or (lambda text: print(f"actuator: {text}", file=sys.stderr, flush=True))
        self._windows: list[Window] = []               # heap by start
        self._active: list[Window] = []                # started, not yet ended
        self.fired: list[Fire] = []
        self.missed: list[Window] = []                 # reject windows that had passed on arrival
        self.heard_ns: int | None = None
        self.interval_ns = NS
        self.silent = True                             # nothing heard yet: unknown = reject
        self.behind = False                            # verdicts late: the strip at the gate is unknown
        self.verdicts = self.rejects = 0
        self.worst_late_ns = 0
        self.late: list[Window] = []                   # strip that reached the gate before its verdict
        self.hold_until_ns = 0                         # keep rejecting after silence ends
        self.clock_warned = False

    # -- input ----------------------------------------------------------------------------
    def add_window(self, start_ns: int, end_ns: int, reason: str, now_ns: int) -> None:
        if end_ns <= now_ns:
            self.missed.append(Window(start_ns, end_ns, reason))
            self.warn(f"MISSED {reason}: passed the gate {(now_ns - end_ns) / 1e6:.0f} ms before its "
                      "message came; mark that strip for re-inspection")
            return
        heapq.heappush(self._windows, Window(start_ns, end_ns, reason))

    def _check_late(self, msg: dict, what: str, where: str, now_ns: int) -> None:
        """A message about strip that has (partly) passed the gate: that strip went unjudged,
        and until a verdict comes in time again, so does the strip now at the gate."""
        deadline = int(msg["gate_deadline_wall_ns"])
        if now_ns <= deadline and not msg.get("late"):
            if msg["kind"] == "verdict" and self.behind:
                self.behind = False
                self.warn(f"verdicts in time again ({what})")
            return
        until = int(msg["gate_until_wall_ns"])
        self.late.append(Window(deadline, min(until, now_ns), what))
        self.worst_late_ns = max(self.worst_late_ns, now_ns - deadline)
        if not self.behind:
            self.behind = True
            self.warn(f"late: {what} came {(now_ns - deadline) / 1e6:.0f} ms after its strip ({where}) reached "
                      "the gate; rejecting until verdicts come in time")

    def on_event(self, ev: Event, now_ns: int) -> None:
        msg = ev.msg
        if msg is None:
            return
        if self.camera is not None and msg.get("camera") != self.camera:
            return
        if self.silent:
            # Strip that passed the camera while we heard nothing (or before we listened) may
            # still be ahead of the gate, its verdicts unknown to us.
            self.hold_until_ns = max(self.hold_until_ns, now_ns + self.span_ns)
        self.silent = False
        self.heard_ns = now_ns
        age = now_ns - int(msg.get("publish_wall_ns", now_ns))
        if not self.clock_warned and (age < -5_000_000 or age > self.max_age_ns):
            self.clock_warned = True
            self.warn(f"message is {age / 1e6:.0f} ms old on arrival: clocks not synchronised, or the network is slow")
        kind = msg.get("kind")
        if kind == "heartbeat":
            self.interval_ns = max(1, round(float(msg.get("interval_s", 1.0)) * NS))
        if ev.restarted:
            self.add_window(now_ns, now_ns + self.span_ns, f"publisher of {msg.get('camera')} restarted", now_ns)
        for gap in ev.gaps:
            if gap.kind in (None, "verdict", "uninspected"):
                self.add_window(now_ns, now_ns + self.span_ns, f"missed {gap.missing} messages", now_ns)
        if kind == "verdict":
            span = int(msg["gate_until_wall_ns"]) - int(msg["capture_wall_ns"])
            if span > 0:
                self.span_ns = span
            self.verdicts += 1
            self.rejects += msg["status"] == "reject"
            pos = float(msg.get("strip_position_m", 0.0))
            self._check_late(msg, f"{msg['status']} frame {msg['frame']}",
                             f"{pos:.2f}..{pos + float(msg.get('frame_length_m', 0.0)):.2f} m", now_ns)
            if msg["status"] == "reject":
                self.add_window(int(msg["gate_deadline_wall_ns"]), int(msg["gate_until_wall_ns"]),
                                f"reject frame {msg['frame']}", now_ns)
        elif kind == "uninspected":
            what = f"uninspected frames {msg['first_frame']}..{msg['last_frame']} ({msg['reason']})"
            self._check_late(msg, what, f"{float(msg.get('strip_start_m', 0.0)):.2f}.."
                                        f"{float(msg.get('strip_end_m', 0.0)):.2f} m", now_ns)
            self.add_window(int(msg["gate_deadline_wall_ns"]), int(msg["gate_until_wall_ns"]), what, now_ns)

    # -- state ----------------------------------------------------------------------------
    def summary(self) -> str:
        late_rejects = sum(w.reason.startswith("reject") for w in self.late)
        return (f"{self.verdicts} verdicts ({self.rejects} rejects) heard; late: {len(self.late)} messages "
                f"({late_rejects} rejects, {len(self.missed)} wholly past the gate: MISSED), worst "
                f"{self.worst_late_ns / 1e6:.0f} ms after the deadline")

    def check_silence(self, now_ns: int) -> None:
        if not self.silent and self.heard_ns is not None:
            if now_ns - self.heard_ns > self.silence_factor * self.interval_ns:
                self.silent = True
                self.warn(f"no message for {(now_ns - self.heard_ns) / 1e9:.1f} s: rejecting until the publisher is back")

    def state(self, now_ns: int) -> tuple[bool, str]:
        """Whether the gate must reject now, and why (starts due windows, records them)."""
        self.check_silence(now_ns)
        while self._windows and self._windows[0].start_ns <= now_ns:
            w = heapq.heappop(self._windows)
            self.fired.append(Fire(w.reason, w.start_ns, w.end_ns, now_ns))
            self._active.append(w)
        self._active = [w for w in self._active if w.end_ns > now_ns]
        if self.silent:
            return True, "no heartbeat from the publisher" if self.heard_ns is not None else "publisher not heard yet"
        if now_ns < self.hold_until_ns:
            return True, "publisher was silent"
        if self._active:
            return True, self._active[-1].reason
        if self.behind:
            return True, "verdicts late: no verdict yet for the strip at the gate"
        return False, ""

    def next_change_ns(self, now_ns: int) -> int:
        """The next instant at which ``state`` may change without a new message."""
        times = [now_ns + NS]
        if self._windows:
            times.append(self._windows[0].start_ns)
        times += [w.end_ns for w in self._active]
        if self.hold_until_ns > now_ns:
            times.append(self.hold_until_ns)
        if not self.silent and self.heard_ns is not None:
            times.append(self.heard_ns + round(self.silence_factor * self.interval_ns) + 1)
        return min(times)


def run(sub: EventSubscriber, logic: ActuatorLogic, gate: Gate, stop: threading.Event,
        clock: Callable[[], int] = time.time_ns) -> None:
    """The actuator loop: wait for a message or the next change, then drive the gate."""
    active: bool | None = None
    reason = ""
    while not stop.is_set():
        now = clock()
        wait_s = min(0.05, max(0.0, (logic.next_change_ns(now) - now) / NS))
        ev = sub.recv(wait_s)
        now = clock()
        if ev is not None:
            logic.on_event(ev, now)
        new_active, new_reason = logic.state(now)
        if new_active != active or (new_active and new_reason != reason):
            gate.set(new_active, new_reason, now)
            active, reason = new_active, new_reason


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address", help="publisher or proxy address")
    p.add_argument("--camera", default=None, help="the camera whose gate this is (default: any)")
    p.add_argument("--silence-factor", type=float, default=3.0,
                   help="heartbeat intervals without a message before failing safe")
    p.add_argument("--default-span-s", type=float, default=2.0,
                   help="seconds to reject on a gap or restart until a verdict tells the real gate delay")
    p.add_argument("--max-age-ms", type=float, default=200.0, help="warn about messages older than this")
    p.add_argument("--curve-server-key", default=None, help="publisher's public key file")
    p.add_argument("--curve-client-key", default=None, help="this client's secret key file")
    args = p.parse_args(argv)
    curve = None
    if args.curve_server_key:
        from inspectd.bus.curve import CurveClient
        curve = CurveClient.load(args.curve_server_key, args.curve_client_key)
    kinds = ["verdict", "uninspected", "heartbeat"]
    topics = camera_prefixes(args.camera, kinds) if args.camera else [f"{k}/".encode() for k in kinds]
    sub = EventSubscriber(args.address, topics, curve=curve)
    logic = ActuatorLogic(args.camera, args.silence_factor, default_span_s=args.default_span_s,
                          max_age_ms=args.max_age_ms)
    stop = threading.Event()

    def on_term(signum, frame):     # systemd stops with SIGTERM: same as Ctrl-C
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        run(sub, logic, PrintGate(), stop)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        print(f"actuator summary: {logic.summary()}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

