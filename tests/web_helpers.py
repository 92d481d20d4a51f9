"""A store full of plausible line data for the web tests, the screenshots and the page benchmark.

The messages go through the store's own writer (the same rows ``inspectd store`` writes):
coils with defects of every class at random places, a defect repeating at a fixed pitch with
its ``alarm``, uninspected stretches, reject frames, JPEG crops (cut from the NEU images in
``../shared/data/neu`` when they are there, else made up), and recent verdicts, heartbeats
and status for two cameras so that the line view has something live to show.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from inspectd.store.database import connect
from inspectd.store.migrations import migrate
from inspectd.store.writer import StoreWriter

INSPECTD = [sys.executable, "-m", "inspectd.cli"]
TIMEOUT_S = 30.0
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
NEU = Path(__file__).resolve().parents[2] / "shared" / "data" / "neu" / "images"
MM_PER_PX = 0.5
FRAME_W, FRAME_H = 2500, 400          # 1250 mm across, 0.2 m along
FRAME_M = FRAME_H * MM_PER_PX / 1000


def _crops(rng: random.Random) -> dict[str, list[bytes]]:
    import cv2

    out: dict[str, list[bytes]] = {c: [] for c in CLASSES}
    for cls in CLASSES:
        files = sorted(NEU.glob(f"{cls}_*.jpg"))[:6] if NEU.is_dir() else []
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            y, x = rng.randrange(0, 100), rng.randrange(0, 100)
            ok, buf = cv2.imencode(".jpg", img[y:y + 96, x:x + 96], [cv2.IMWRITE_JPEG_QUALITY, 85])
            out[cls].append(bytes(buf))
        while len(out[cls]) < 3:       # no NEU images here: a textured stand-in
            img = (np.random.default_rng(len(out[cls])).normal(128, 30, (96, 96))).clip(0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", img)
            out[cls].append(bytes(buf))
    return out


class Feed:
    """One camera's publisher as the store sees it: numbered messages into a writer."""

    def __init__(self, writer: StoreWriter, camera: str, publisher: str):
        self.w, self.camera, self.publisher, self.seq = writer, camera, publisher, 0

    def send(self, kind: str, fields: dict[str, Any], detail: str = "", parts: list[bytes] | None = None,
             wall_ns: int | None = None) -> dict[str, Any]:
        now = wall_ns or time.time_ns()
        msg = {"schema": 2, "kind": kind, "seq": self.seq, "kind_seq": self.seq, "publisher": self.publisher,
               "camera": self.camera, "publish_wall_ns": now, **fields}
        self.seq += 1
        self.w.add(f"{kind}/{self.camera}/{detail}".encode(), json.dumps(msg).encode(), parts or [], now)
        if self.w.pending >= 2000:
            self.w.flush()
        return msg


def _defect(rng: random.Random, cls: str, x_mm: float, y_in_frame_px: float, pos_m: float) -> dict[str, Any]:
    w_px = rng.uniform(15, 120) if cls != "scratches" else rng.uniform(6, 20)
    h_px = rng.uniform(15, 120) if cls != "scratches" else rng.uniform(60, 300)
    x1 = x_mm / MM_PER_PX
    y1 = min(y_in_frame_px, FRAME_H - h_px - 1)
    area = w_px * h_px * rng.uniform(0.4, 0.9)
    score = round(rng.uniform(0.3, 0.98), 3)
    return {"class": cls, "score": score, "box": [round(x1, 1), round(y1, 1), round(x1 + w_px, 1), round(y1 + h_px, 1)],
            "box_mm": [round(x1 * MM_PER_PX, 1), round(pos_m * 1000 + y1 * MM_PER_PX, 1),
                       round((x1 + w_px) * MM_PER_PX, 1), round(pos_m * 1000 + (y1 + h_px) * MM_PER_PX, 1)],
            "area_px": int(area), "area_mm2": round(area * MM_PER_PX ** 2, 2),
            "branch": rng.choice(["detection", "segmentation", "both"]),
            "rejects": score > 0.8 and cls in ("inclusion", "scratches", "patches")}


def run_coil(feed: Feed, rng: random.Random, crops: dict[str, list[bytes]], coil: str, length_m: float,
             defects: int, *, end: bool = True, periodic: bool = True, holes: bool = True, start_ns: int | None = None,
             frame_ns: int = 20_000_000, meta: dict[str, str] | None = None) -> None:
    frames = max(1, int(length_m / FRAME_M))
    t = start_ns or time.time_ns() - frames * frame_ns
    feed.send("coil_start", {"coil": coil, "width_mm": FRAME_W * MM_PER_PX, "meta": meta or {"grade": "S235JR"},
                             "start_wall_ns": t}, wall_ns=t)
    per_frame: dict[int, list[tuple[str, float, float]]] = {}
    for _ in range(defects):
        f = rng.randrange(frames)
        per_frame.setdefault(f, []).append((rng.choices(CLASSES, [3, 2, 2, 2, 3, 2])[0],
                                            rng.uniform(10, FRAME_W * MM_PER_PX - 80), rng.uniform(0, FRAME_H - 40)))
    pitch_m, cross = 3.2, 412.0
    marks = []
    if periodic:
        for k in range(int(length_m * 0.35 / pitch_m), int(length_m * 0.6 / pitch_m)):
            f = int(k * pitch_m / FRAME_M)
            per_frame.setdefault(f, []).append(("rolled-in_scale", cross, 100.0))
            marks.append(f)
    gaps = {int(frames * 0.22): 6, int(frames * 0.71): 14} if holes else {}     # frames not inspected
    skip = 0
    for f in range(frames):
        now = t + f * frame_ns
        pos = round(f * FRAME_M, 6)
        if f in gaps:
            n = gaps[f]
            feed.send("uninspected", {"reason": "ring_overflow", "first_frame": f, "last_frame": f + n - 1, "count": n,
                                      "strip_start_m": pos, "strip_end_m": pos + n * FRAME_M, "coil": coil,
                                      "coil_start_m": pos, "coil_end_m": round(pos + n * FRAME_M, 6),
                                      "first_capture_wall_ns": now, "last_capture_wall_ns": now + n * frame_ns},
                      "ring_overflow", wall_ns=now)
            skip = n
        if skip:
            skip -= 1
            continue
        ds = [_defect(rng, cls, x, y, pos) for cls, x, y in per_frame.get(f, [])]
        status = "reject" if any(d["rejects"] for d in ds) else "ok"
        v = feed.send("verdict", {"frame": f, "camera_frame_id": f, "camera_timestamp_ns": None, "width": FRAME_W,
                                  "height": FRAME_H, "capture_wall_ns": now, "inference_start_wall_ns": now + 3_000_000,
                                  "inference_end_wall_ns": now + rng.randint(14, 30) * 1_000_000,
                                  "strip_position_m": pos, "frame_length_m": FRAME_M, "coil": coil,
                                  "coil_position_m": pos, "gate_deadline_wall_ns": now + 500_000_000,
                                  "gate_until_wall_ns": now + 520_000_000, "late": False, "status": status,
                                  "defects": ds}, status, wall_ns=now + 30_000_000)
        for i, d in enumerate(ds):
            jpeg = rng.choice(crops[d["class"]])
            feed.send("defect", {"frame": f, "capture_wall_ns": now, "strip_position_m": pos, "coil": coil,
                                 "coil_position_m": pos, "verdict_seq": v["seq"], "verdict_status": status, "index": i,
                                 "count": len(ds), **d,
                                 "crop": {"format": "jpeg", "box": [0, 0, 96, 96], "width": 96, "height": 96,
                                          "bytes": len(jpeg)}}, d["class"], [jpeg], wall_ns=now + 30_000_000)
    if periodic and len(marks) >= 3:
        first, latest = marks[0] * FRAME_M, marks[-1] * FRAME_M
        feed.send("alarm", {"alarm": "periodic", "alarm_id": 1, "state": "active", "coil": coil,
                            "class": "rolled-in_scale", "pitch_m": pitch_m, "cross_mm": cross + 10, "repeats": len(marks),
                            "first": {"frame": marks[0], "coil_position_m": round(first, 3)},
                            "latest": {"frame": marks[-1], "coil_position_m": round(latest, 3)}}, "periodic",
                  wall_ns=t + marks[-1] * frame_ns)
    if end:
        feed.send("coil_end", {"coil": coil, "closed_by": "end", "length_m": round(frames * FRAME_M, 3),
                               "end_wall_ns": t + frames * frame_ns}, wall_ns=t + frames * frame_ns)


def fill_demo(url: str, *, big_defects: int = 0, seed: int = 7) -> dict[str, Any]:
    """Coils on two cameras, the last one still open and running now; with ``big_defects``, one
    more coil with that many defects (the page-speed case). Returns what was made."""
    rng = random.Random(seed)
    db = connect(url)
    try:
        migrate(db)
        w = StoreWriter(db)
        crops = _crops(rng)
        top, bottom = Feed(w, "top", "demo-top"), Feed(w, "bottom", "demo-bottom")
        now = time.time_ns()
        made = {"coils": []}
        hour = 3600 * 10**9
        # Few defects and no holes (a good grade), a bad roll (a periodic defect, many marks),
        # a middling one.
        for k, (coil, length, n, holes) in enumerate([("C24-0417", 180.0, 4, False), ("C24-0418", 240.0, 420, True),
                                                      ("C24-0419", 120.0, 25, True)]):
            run_coil(top, rng, crops, coil, length, n, start_ns=now - (5 - k) * hour, periodic=n > 100, holes=holes)
            run_coil(bottom, rng, crops, coil, length, n // 3, start_ns=now - (5 - k) * hour, periodic=False,
                     holes=holes)
            made["coils"].append(coil)
        if big_defects:
            run_coil(top, rng, crops, "C24-BIG", 2000.0, big_defects, start_ns=now - 2 * hour)
            made["coils"].append("C24-BIG")
        # The coil running now: its last frames are the line view's strip.
        live = "C24-0420"
        for feed in (top, bottom):
            run_coil(feed, rng, crops, live, 30.0, 40 if feed is top else 12, end=False, periodic=False,
                     start_ns=now - 150 * 40_000_000, frame_ns=40_000_000)
            feed.send("status", {"interval_s": 5.0, "uptime_s": 3600.0, "counters": {"fps_in": 25.0, "frames_in": 9000}})
            feed.send("heartbeat", {"interval_s": 1.0, "next_kind_seq": {}, "last_frame": 149, "uptime_s": 3600.0})
        made["coils"].append(live)
        w.flush()
        made["messages"] = w.committed
        return made
    finally:
        db.close()


@contextmanager
def web_server(db: str, *extra: str) -> Iterator[str]:
    proc = subprocess.Popen(INSPECTD + ["web", "--db", db, "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(TIMEOUT_S * 6, proc.kill)
    timer.daemon = True
    timer.start()
    try:
        banner = proc.stderr.readline()
        assert banner.startswith("inspectd web: http://"), banner + proc.stderr.read()
        yield banner.split()[2].rstrip("/")
    finally:
        timer.cancel()
        proc.terminate()
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
