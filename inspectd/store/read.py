"""What the pages ask of the store: plain data (dicts and lists), the same SQL for both dialects.

Nothing here writes. Times stay integers (ns since the epoch); the pages format them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from inspectd.store.database import Database

RECENT_VERDICTS = 16          # the line view's strip, per camera
RATE_WINDOW = 200             # verdicts the rates and latencies are computed over


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


# -- line now ------------------------------------------------------------------------------
def cameras(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT DISTINCT camera FROM publishers WHERE camera <> 'sync' ORDER BY camera")]


def line_now(db: Database, now_ns: int | None = None) -> dict[str, Any]:
    """Per camera: the latest verdicts with their defects, rates, latency, uninspected
    stretches, heartbeat age, gaps and alarms."""
    now = time.time_ns() if now_ns is None else now_ns
    out = []
    for camera in cameras(db):
        pub = db.query("SELECT publisher, last_heartbeat_wall_ns, last_received_ns, last_seq FROM publishers "
                       "WHERE camera = ? ORDER BY last_received_ns DESC LIMIT 1", (camera,))
        publisher, heartbeat_ns, received_ns, last_seq = pub[0] if pub else (None, None, None, None)
        rows = db.query("SELECT id, frame, status, capture_wall_ns, inference_end_wall_ns, publish_wall_ns, "
                        "strip_position_m, coil, coil_position_m, payload FROM verdicts WHERE camera = ? "
                        "ORDER BY id DESC LIMIT ?", (camera, RATE_WINDOW))
        strip = []
        latencies = []
        for i, (vid, frame, status, cap, inf_end, _pub_ns, pos, coil, coil_pos, payload) in enumerate(rows):
            if cap is not None and inf_end is not None:
                latencies.append((inf_end - cap) / 1e6)
            if i < RECENT_VERDICTS:
                msg = json.loads(payload)
                strip.append({
                    "id": vid, "frame": frame, "status": status, "capture_wall_ns": cap,
                    "position_m": coil_pos if coil_pos is not None else pos, "coil": coil,
                    "width": msg.get("width"), "height": msg.get("height"),
                    "defects": [{"class": d.get("class"), "score": d.get("score"), "box": d.get("box"),
                                 "rejects": d.get("rejects")} for d in msg.get("defects") or []]})
        # Rates over the last 10 s of verdicts (the line may have stood still before).
        newest = max((r[3] for r in rows if r[3] is not None), default=None)
        recent = [r for r in rows if r[3] is not None and newest - r[3] <= 10 * 10**9] if newest else []
        caps = [r[3] for r in recent]
        fps = (len(caps) - 1) / ((max(caps) - min(caps)) / 1e9) if len(caps) > 1 and max(caps) > min(caps) else None
        rejects = sum(1 for r in recent if r[2] == "reject")
        # What happened in the last hour of this camera's messages (not yesterday's coils).
        hour_ago = (newest or now) - 3600 * 10**9
        uninspected = [{"reason": r[0], "first_frame": r[1], "last_frame": r[2], "count": r[3],
                        "start_m": r[4], "end_m": r[5], "capture_wall_ns": r[6]}
                       for r in db.query("SELECT reason, first_frame, last_frame, count, "
                                         "COALESCE(coil_start_m, strip_start_m), COALESCE(coil_end_m, strip_end_m), "
                                         "first_capture_wall_ns FROM uninspected WHERE camera = ? ORDER BY id DESC "
                                         "LIMIT 8", (camera,)) if (r[6] or 0) >= hour_ago]
        gaps = [{"reason": r[0], "missing": r[1], "received_wall_ns": r[2]}
                for r in db.query("SELECT reason, missing, received_wall_ns FROM gaps WHERE camera = ? "
                                  "ORDER BY id DESC LIMIT 5", (camera,))]
        alarms = [json.loads(r[0]) for r in db.query(
            "SELECT payload FROM events WHERE kind = 'alarm' AND camera = ? AND publish_wall_ns >= ? "
            "ORDER BY id DESC LIMIT 5", (camera, hour_ago))]
        status = db.query("SELECT payload FROM events WHERE kind = 'status' AND camera = ? ORDER BY id DESC LIMIT 1",
                          (camera,))
        coil = db.query("SELECT coil, started_wall_ns FROM coils WHERE camera = ? AND status = 'open' "
                        "ORDER BY id DESC LIMIT 1", (camera,))
        out.append({
            "camera": camera, "publisher": publisher, "last_seq": last_seq,
            "heartbeat_age_s": None if heartbeat_ns is None else round((now - heartbeat_ns) / 1e9, 1),
            "last_message_age_s": None if received_ns is None else round((now - received_ns) / 1e9, 1),
            "fps": None if fps is None else round(fps, 1),
            "reject_share": round(rejects / len(recent), 3) if recent else None,
            "latency_ms": {"p50": _round(_pct(latencies, 0.5)), "p99": _round(_pct(latencies, 0.99)),
                           "max": _round(max(latencies) if latencies else None)},
            "strip": strip, "uninspected": uninspected, "gaps": gaps, "alarms": alarms,
            "counters": json.loads(status[0][0]).get("counters") if status else None,
            "coil": coil[0][0] if coil else None,
        })
    return {"now_ns": now, "cameras": out}


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


# -- coils -----------------------------------------------------------------------------------
def coils(db: Database, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Coils, newest first, one entry per coil id (its cameras together), with counts per class."""
    rows = db.query("SELECT coil, max(id) AS last FROM coils GROUP BY coil ORDER BY last DESC LIMIT ? OFFSET ?",
                    (limit, offset))
    ids = [r[0] for r in rows]
    if not ids:
        return []
    summaries = _summaries(db, ids)
    return [summaries[c] for c in ids]


def _summaries(db: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {c: {"coil": c, "cameras": [], "status": None, "started_wall_ns": None,
                                          "ended_wall_ns": None, "width_mm": None, "length_m": None, "meta": None,
                                          "end_reason": None, "counts": {}, "defects": 0, "reject_frames": 0,
                                          "frames": 0, "uninspected_m": 0.0} for c in ids}
    for coil, camera, status, started, ended, width, length, meta, reason in db.query(
            "SELECT coil, camera, status, started_wall_ns, ended_wall_ns, width_mm, length_m, meta, end_reason "
            f"FROM coils WHERE coil IN {_in(ids)} ORDER BY id", ids):
        s = out[coil]
        if camera not in s["cameras"]:
            s["cameras"].append(camera)
        s["status"] = "open" if "open" in (status, s["status"]) else status      # open while any camera has it open
        if started is not None:
            s["started_wall_ns"] = started if s["started_wall_ns"] is None else min(s["started_wall_ns"], started)
        s["ended_wall_ns"] = ended if ended is not None else s["ended_wall_ns"]
        s["width_mm"] = width if width is not None else s["width_mm"]
        s["length_m"] = max(filter(None, (length, s["length_m"])), default=None)
        s["meta"] = json.loads(meta) if meta else s["meta"]
        s["end_reason"] = reason or s["end_reason"]
    for coil, cls, n in db.query(f"SELECT coil, class, count(*) FROM defects WHERE coil IN {_in(ids)} "
                                 "GROUP BY coil, class", ids):
        out[coil]["counts"][cls] = int(n)
        out[coil]["defects"] += int(n)
    for coil, frames, rejects, extent in db.query(
            "SELECT coil, count(*), sum(CASE WHEN status = 'reject' THEN 1 ELSE 0 END), "
            f"max(coil_position_m + frame_length_m) FROM verdicts WHERE coil IN {_in(ids)} GROUP BY coil", ids):
        out[coil]["frames"] = int(frames)
        out[coil]["reject_frames"] = int(rejects or 0)
        if out[coil]["length_m"] is None and extent is not None:
            out[coil]["length_m"] = round(float(extent), 3)
    for coil, metres in db.query("SELECT coil, sum(coil_end_m - coil_start_m) FROM uninspected "
                                 f"WHERE coil IN {_in(ids)} GROUP BY coil", ids):
        out[coil]["uninspected_m"] = round(float(metres or 0.0), 3)
    return out


def coil_summary(db: Database, coil: str) -> dict[str, Any]:
    return _summaries(db, [coil])[coil]


def coil_exists(db: Database, coil: str) -> bool:
    return bool(db.query("SELECT 1 FROM coils WHERE coil = ? LIMIT 1", (coil,))) or \
        bool(db.query("SELECT 1 FROM verdicts WHERE coil = ? LIMIT 1", (coil,)))


DEFECT_FIELDS = ("id", "camera", "class", "score", "x1_mm", "x2_mm", "pos_m", "pos_end_m", "area_mm2", "rejects",
                 "branch", "frame", "crop")


def coil_map(db: Database, coil: str) -> dict[str, Any]:
    """Everything the coil map draws: defects (as compact rows), uninspected stretches, reject
    frames, alarms and the coil's extent."""
    defects = db.query(
        "SELECT d.id, d.camera, d.class, d.score, d.x1_mm, d.x2_mm, d.pos_m, d.pos_end_m, d.area_mm2, d.rejects, "
        # c.idx, not c.bytes: the crops' primary key answers, their JPEG pages are not read.
        "d.branch, d.frame, CASE WHEN c.idx IS NULL THEN 0 ELSE 1 END FROM defects d LEFT JOIN crops c "
        "ON c.publisher = d.publisher AND c.verdict_seq = d.verdict_seq AND c.idx = d.idx "
        "WHERE d.coil = ? ORDER BY d.pos_m", (coil,))
    uninspected = db.query("SELECT camera, reason, count, coil_start_m, coil_end_m FROM uninspected WHERE coil = ? "
                           "ORDER BY coil_start_m", (coil,))
    rejects = db.query("SELECT camera, coil_position_m, frame_length_m FROM verdicts WHERE coil = ? "
                       "AND status = 'reject' ORDER BY coil_position_m", (coil,))
    frame_width = db.query("SELECT max(x2_mm) FROM defects WHERE coil = ?", (coil,))[0][0]
    alarms = []
    for (payload,) in db.query("SELECT payload FROM events WHERE kind = 'alarm' ORDER BY id"):
        msg = json.loads(payload)
        if msg.get("coil") == coil:
            alarms.append(msg)
    summary = coil_summary(db, coil)
    extent = max([r[7] or r[6] or 0.0 for r in defects] + [r[4] or 0.0 for r in uninspected]
                 + [(r[1] or 0.0) + (r[2] or 0.0) for r in rejects] + [summary["length_m"] or 0.0])
    names: dict[str, int] = {}
    rows = [_compact(r, names) for r in defects]
    return {
        "coil": coil, "summary": summary, "names": list(names),
        "length_m": summary["length_m"] or extent, "width_mm": summary["width_mm"] or frame_width or 1000.0,
        "fields": DEFECT_FIELDS,
        "defects": rows,
        "uninspected": [{"camera": r[0], "reason": r[1], "count": r[2], "start_m": r[3], "end_m": r[4]}
                        for r in uninspected],
        "rejects": [[r[0], r[1], r[2]] for r in rejects],
        "alarms": alarms,
    }


def _r(v: Any, digits: int) -> Any:
    return round(v, digits) if type(v) is float else v


def _compact(r: tuple, names: dict[str, int]) -> list:
    """A map row, small: no more digits than the map can show, and camera, class and branch as
    numbers into ``names`` (the page's ``names`` list)."""
    return [r[0], names.setdefault(r[1], len(names)), names.setdefault(r[2], len(names)), _r(r[3], 3),
            _r(r[4], 1), _r(r[5], 1), _r(r[6], 4), _r(r[7], 4), _r(r[8], 1), r[9],
            names.setdefault(r[10], len(names)), r[11], r[12]]


def coil_defects(db: Database, coil: str) -> list[tuple]:
    """Rows of the CSV export, in coil order."""
    return db.query(
        "SELECT id, camera, frame, pos_m, pos_end_m, x1_mm, x2_mm, class, score, area_mm2, branch, rejects, "
        "verdict_status, capture_wall_ns FROM defects WHERE coil = ? ORDER BY pos_m, id", (coil,))


# -- single defects, crops, the gallery ------------------------------------------------------
def defect(db: Database, defect_id: int) -> dict[str, Any] | None:
    rows = db.query(
        "SELECT d.id, d.camera, d.coil, d.frame, d.class, d.score, d.pos_m, d.pos_end_m, d.x1_mm, d.x2_mm, "
        "d.area_mm2, d.branch, d.rejects, d.capture_wall_ns, d.publisher, d.verdict_seq, d.idx, "
        "CASE WHEN c.bytes IS NULL THEN 0 ELSE 1 END FROM defects d LEFT JOIN crops c "
        "ON c.publisher = d.publisher AND c.verdict_seq = d.verdict_seq AND c.idx = d.idx WHERE d.id = ?",
        (defect_id,))
    if not rows:
        return None
    keys = ("id", "camera", "coil", "frame", "class", "score", "pos_m", "pos_end_m", "x1_mm", "x2_mm", "area_mm2",
            "branch", "rejects", "capture_wall_ns", "publisher", "verdict_seq", "index", "crop")
    return dict(zip(keys, rows[0]))


def crop(db: Database, defect_id: int) -> bytes | None:
    rows = db.query("SELECT c.jpeg FROM crops c JOIN defects d ON c.publisher = d.publisher "
                    "AND c.verdict_seq = d.verdict_seq AND c.idx = d.idx WHERE d.id = ?", (defect_id,))
    return bytes(rows[0][0]) if rows else None


def classes(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT DISTINCT class FROM defects ORDER BY class")]


def gallery(db: Database, *, cls: str | None = None, min_score: float | None = None, coil: str | None = None,
            since_ns: int | None = None, until_ns: int | None = None, before_id: int | None = None,
            limit: int = 60) -> list[dict[str, Any]]:
    """Defects that have a crop, newest first, filtered."""
    where, params = [], []
    for cond, value in (("d.class = ?", cls), ("d.score >= ?", min_score), ("d.coil = ?", coil),
                        ("d.capture_wall_ns >= ?", since_ns), ("d.capture_wall_ns < ?", until_ns),
                        ("d.id < ?", before_id)):
        if value is not None and value != "":
            where.append(cond)
            params.append(value)
    sql = ("SELECT d.id, d.camera, d.coil, d.class, d.score, d.pos_m, d.capture_wall_ns, d.branch, d.rejects "
           "FROM defects d JOIN crops c ON c.publisher = d.publisher AND c.verdict_seq = d.verdict_seq "
           "AND c.idx = d.idx" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY d.id DESC LIMIT ?")
    keys = ("id", "camera", "coil", "class", "score", "pos_m", "capture_wall_ns", "branch", "rejects")
    return [dict(zip(keys, r)) for r in db.query(sql, (*params, limit))]
