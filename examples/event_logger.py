#!/usr/bin/env python3
"""Log every event of the inspectd bus to rotating JSON-lines files.

Each line of ``DIR/events.jsonl`` is one payload exactly as it arrived. When the file
passes ``--max-bytes`` it becomes ``events.jsonl.1`` (the older ones shift up to
``--backups``; the oldest is deleted). What the logger noticed itself is written as lines
of its own, which are not bus messages and are told apart by ``"logger"``:

    {"logger": "gap", "publisher": "...", "camera": "cam0", "kind": null, "expected": 120, "received": 131, "missing": 11, "at_wall_ns": ...}
    {"logger": "restart", "publisher": "...", "camera": "cam0", "at_wall_ns": ...}

so a reader of the log knows exactly which messages it does not hold.

    python examples/event_logger.py tcp://inspect-pc:5556 /var/log/inspectd-events
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from inspectd.bus.subscriber import Event, EventSubscriber


class RotatingJsonLines:
    """Appends lines to ``DIR/NAME``; rotates by size, keeping ``backups`` old files."""

    def __init__(self, directory: str | Path, name: str = "events.jsonl", max_bytes: int = 64 << 20,
                 backups: int = 10):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / name
        self.max_bytes = max_bytes
        self.backups = backups
        self._f = open(self.path, "ab")
        self._size = self._f.tell()

    def write(self, line: bytes) -> None:
        if self._size and self._size + len(line) + 1 > self.max_bytes:
            self.rotate()
        self._f.write(line + b"\n")
        self._size += len(line) + 1

    def rotate(self) -> None:
        self._f.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._f = open(self.path, "ab")
        self._size = 0

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def log_event(out: RotatingJsonLines, ev: Event) -> None:
    now = time.time_ns()
    if ev.msg is None:
        out.write(json.dumps({"logger": "undecodable", "topic": ev.topic.decode("utf-8", "replace"),
                              "error": ev.error, "at_wall_ns": now}).encode())
        return
    if ev.restarted:
        out.write(json.dumps({"logger": "restart", "publisher": ev.msg.get("publisher"),
                              "camera": ev.msg.get("camera"), "at_wall_ns": now}).encode())
    for g in ev.gaps:
        out.write(json.dumps({"logger": "gap", "publisher": g.publisher, "camera": g.camera, "kind": g.kind,
                              "expected": g.expected, "received": g.received, "missing": g.missing,
                              "at_wall_ns": now}).encode())
    out.write(ev.payload)


def run(sub: EventSubscriber, out: RotatingJsonLines, stop: threading.Event, flush_every_s: float = 1.0) -> None:
    last_flush = time.monotonic()
    while not stop.is_set():
        ev = sub.recv(0.1)
        if ev is not None:
            log_event(out, ev)
        if time.monotonic() - last_flush >= flush_every_s:
            out.flush()
            last_flush = time.monotonic()
    out.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address", help="publisher or proxy address")
    p.add_argument("dir", help="folder for the log files")
    p.add_argument("--topic", action="append", default=None, help="topic prefix (default: everything)")
    p.add_argument("--max-bytes", type=int, default=64 << 20, help="rotate when a file reaches this size")
    p.add_argument("--backups", type=int, default=10, help="rotated files to keep")
    args = p.parse_args(argv)
    topics = [t.encode() for t in args.topic] if args.topic else [b""]
    sub = EventSubscriber(args.address, topics)
    out = RotatingJsonLines(args.dir, max_bytes=args.max_bytes, backups=args.backups)
    stop = threading.Event()
    try:
        run(sub, out, stop)
    except KeyboardInterrupt:
        pass
    finally:
        out.close()
        sub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
