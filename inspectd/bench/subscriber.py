"""The bench's subscriber: a process of its own that receives every verdict of the pipeline
run on a real socket, and the bench's end of it. They talk over the child's stdin and stdout,
one JSON object per line (``subscriber_main`` says which)."""
from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

from inspectd.errors import InspectdError


def subscriber_main(endpoint: str) -> int:
    """The subscriber process (``python -m inspectd.bench --subscriber ENDPOINT``).

    Talks to the bench over its stdin and stdout, one JSON object per line: it says
    ``{"ready": true}`` once a heartbeat has come through (ZeroMQ's slow joiner: messages
    published before the subscription is live are lost), reads ``{"verdicts": V,
    "uninspected": U}`` when the pipeline has stopped, and answers with every verdict's frame,
    capture, publish and receipt times once it has them all (or after 15 s).
    """
    import json

    from inspectd.bus.subscriber import EventSubscriber

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    expect: list[tuple[int, int]] = []
    got_expect = threading.Event()

    def read_stdin() -> None:
        line = sys.stdin.readline()
        try:
            d = json.loads(line)
            expect.append((int(d["verdicts"]), int(d["uninspected"])))
        except (ValueError, KeyError, TypeError):
            expect.append((0, 0))
        got_expect.set()

    try:
        sub = EventSubscriber(endpoint, topics=[b"verdict/", b"uninspected/", b"heartbeat/"], rcv_hwm=100_000)
    except Exception as exc:  # noqa: BLE001 - reported to the bench
        say({"error": f"subscriber cannot connect to {endpoint}: {exc}"})
        return 1
    try:
        deadline = time.monotonic() + 30
        while True:
            ev = sub.recv(timeout_s=0.5)
            if ev is not None and ev.msg is not None and ev.msg.get("kind") == "heartbeat":
                break
            if time.monotonic() > deadline:
                say({"error": f"no heartbeat from {endpoint} within 30 s"})
                return 1
        threading.Thread(target=read_stdin, daemon=True).start()
        say({"ready": True})
        frames, capture, publish, receipt, inf_start, inf_end = [], [], [], [], [], []
        uninspected = gaps = 0
        give_up = math.inf
        while True:
            ev = sub.recv(timeout_s=0.05)
            if ev is not None and ev.msg is not None:
                now = time.time_ns()
                m = ev.msg
                gaps += sum(g.missing for g in ev.gaps)
                if m["kind"] == "verdict":
                    frames.append(m["frame"])
                    capture.append(m["capture_wall_ns"])
                    publish.append(m["publish_wall_ns"])
                    receipt.append(now)
                    inf_start.append(m.get("inference_start_wall_ns") or 0)
                    inf_end.append(m.get("inference_end_wall_ns") or 0)
                elif m["kind"] == "uninspected":
                    uninspected += int(m["count"])
            if got_expect.is_set():
                if give_up == math.inf:
                    give_up = time.monotonic() + 15
                want_v, want_u = expect[0]
                if (len(frames) >= want_v and uninspected >= want_u) or time.monotonic() > give_up:
                    break
        say({"frames": frames, "capture": capture, "publish": publish, "receipt": receipt,
             "inference_start": inf_start, "inference_end": inf_end,
             "uninspected": uninspected, "gaps": gaps, "timed_out": time.monotonic() > give_up})
        return 0
    finally:
        sub.close()


class SubscriberProcess:
    """The bench's end of the subscriber process."""

    def __init__(self, endpoint: str):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "inspectd.bench", "--subscriber", endpoint],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid

    def read(self, timeout_s: float) -> dict[str, Any]:
        import json
        import select

        assert self.proc.stdout is not None and self.proc.stdin is not None   # both PIPE
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise InspectdError(f"bench: the subscriber process said nothing within {timeout_s:g} s "
                                f"(exit status {self.proc.poll()})")
        msg = json.loads(line)
        if "error" in msg:
            raise InspectdError(f"bench: {msg['error']}")
        return msg

    def send(self, obj: dict[str, Any]) -> None:
        import json
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            self.proc.kill()
            self.proc.wait(5)
