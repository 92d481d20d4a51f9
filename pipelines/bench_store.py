"""Does ``inspectd store`` keep up? Publish N events/s over a real loopback PUB socket for S
seconds into an ``inspectd store`` subprocess and measure its commit rate and lag.

The messages are built by the daemon's own ``EventEncoder`` (verdicts with 0, 1, 2, 0, 1, 2 ...
defects, each defect also as a ``defect`` message, a heartbeat per second): on average two
events per frame. ``--crops`` adds a JPEG crop (about 3 kB) to each defect message.

Lag is sampled every 0.2 s by a second process reading the database: now minus the publish
time of the newest committed verdict. At the end every message sent must be in the
database, and no gap recorded.

    .venv/bin/python pipelines/bench_store.py --rate 5000 --seconds 20 [--crops] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspectd.bus.messages import EventEncoder, encode, topic_for  # noqa: E402
from inspectd.domain.frames import FrameMeta  # noqa: E402
from inspectd.domain.verdicts import Defect, Verdict  # noqa: E402
from inspectd.line import LineConfig  # noqa: E402
from inspectd.runtime.placement import place  # noqa: E402
from inspectd.store.database import connect  # noqa: E402

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def make_verdict(i: int) -> Verdict:
    now_mono, now_wall = time.monotonic_ns(), time.time_ns()
    meta = FrameMeta(index=i, camera="cam0", capture_ns=now_mono, capture_wall_ns=now_wall, height=400, width=1024)
    defects = [Defect(cls=CLASSES[(i + k) % 6], score=0.6, box=(100.0 + 200 * k, 50.0, 160.0 + 200 * k, 120.0),
                      area_px=3000, branch="both", rejects=True) for k in range(i % 3)]
    return Verdict(meta=meta, status="reject" if defects else "ok", placement=place(LineConfig(), meta, defects),
                   defects=defects, inference_start_ns=now_mono, inference_end_ns=now_mono + 10_000_000)


def jpeg_bytes() -> bytes:
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return bytes(buf)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=5000.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--db", default=None, help="SQLite file or postgresql:// URL (default: a new temporary file)")
    ap.add_argument("--crops", action="store_true", help="a JPEG crop with each defect message")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-store-")
    url = args.db or os.path.join(tmp, "events.db")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 1_000_000)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    store = subprocess.Popen([sys.executable, "-m", "inspectd.cli", "store", endpoint, "--db", url, "--quiet"],
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    store.stderr.readline()
    enc = EventEncoder("cam0", LineConfig())
    crop = jpeg_bytes() if args.crops else None

    def send(msg: dict, extra: list[bytes] | None = None) -> None:
        sock.send_multipart([topic_for(msg), encode(msg)] + (extra or []))

    # Sync: heartbeats of a side publisher until the store has one (the subscription is then in place).
    db = connect(url, read_only=True)
    side = EventEncoder("sync", LineConfig())
    deadline = time.monotonic() + 30
    while db.query("SELECT count(*) FROM events WHERE camera = 'sync'")[0][0] == 0:
        if time.monotonic() > deadline:
            raise SystemExit("the store did not receive anything")
        send(side.heartbeat(1.0))
        time.sleep(0.1)

    lags: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rows = db.query("SELECT publish_wall_ns FROM verdicts ORDER BY id DESC LIMIT 1")
            if rows:
                lags.append((time.time_ns() - int(rows[0][0])) / 1e9)
            sampling.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sent = 0
    frames = 0
    t0 = time.monotonic()
    next_hb = t0 + 1.0
    while True:
        now = time.monotonic()
        if now - t0 >= args.seconds:
            break
        due = int((now - t0) * args.rate)
        while sent < due:
            v = make_verdict(frames)
            vmsg = enc.verdict(v)
            send(vmsg)
            sent += 1
            for k in range(len(v.defects)):
                cmeta = {"format": "jpeg", "box": [0, 0, 64, 64], "width": 64, "height": 64,
                         "bytes": len(crop)} if crop else None
                send(enc.defect(v, k, vmsg["seq"], crop=cmeta), [crop] if crop else None)
                sent += 1
            frames += 1
        if now >= next_hb:
            send(enc.heartbeat(1.0))
            sent += 1
            next_hb += 1.0
        time.sleep(0.001)
    publish_s = time.monotonic() - t0
    last_seq = enc.next_seq - 1
    # Drain: until the store has committed the last message sent.
    t_end = time.monotonic()
    while time.monotonic() - t_end < 60:
        row = db.query("SELECT last_seq FROM publishers WHERE publisher = ?", (enc.publisher,))
        if row and row[0][0] == last_seq:
            break
        time.sleep(0.05)
    drain_s = time.monotonic() - t_end
    sampling.set()
    sampler.join()
    stored = sum(db.query(f"SELECT count(*) FROM {t} WHERE publisher = ?", (enc.publisher,))[0][0]
                 for t in ("verdicts", "uninspected", "events"))
    stored += db.query("SELECT count(*) FROM defects WHERE publisher = ? AND defect_seq IS NOT NULL",
                       (enc.publisher,))[0][0]
    gaps = db.query("SELECT count(*) FROM gaps WHERE publisher = ? AND reason <> 'joined'", (enc.publisher,))[0][0]
    # The store's own CPU time: what it costs per event, whatever else runs on the machine.
    fields = Path(f"/proc/{store.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    store.send_signal(signal.SIGTERM)
    store.wait(60)
    size = os.path.getsize(url) if os.path.exists(url) else None
    lags_sorted = sorted(lags)
    result = {
        "rate_target_events_per_s": args.rate, "seconds": args.seconds, "crops": bool(crop),
        "events_sent": sent, "frames": frames, "events_stored": stored, "gaps": gaps,
        "publish_rate_events_per_s": round(sent / publish_s, 1),
        "store_rate_events_per_s": round(stored / (publish_s + drain_s), 1),
        "drain_after_last_s": round(drain_s, 3),
        "store_cpu_s": round(cpu_s, 2),
        "store_cpu_us_per_event": round(cpu_s / max(1, stored) * 1e6, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "lag_s": {"p50": round(statistics.median(lags_sorted), 3),
                  "p99": round(lags_sorted[int(0.99 * (len(lags_sorted) - 1))], 3),
                  "max": round(lags_sorted[-1], 3)} if lags_sorted else None,
        "db_bytes": size,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    sock.close(0)
    ctx.term()
    return 0 if stored == sent and gaps == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
