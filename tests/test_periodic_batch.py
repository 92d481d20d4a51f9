"""The periodic detector takes the marks that become final together as a batch (``_Run``); its
alarms must be exactly those of taking the marks one at a time.

``reference`` is that one-at-a-time algorithm (the module text of ``runtime.periodic``) in plain
Python: no arrays, no batches, no caches. Both are fed the same seeded random strips (roll marks
at random pitches with misses and jitter, random marks, long marks cut by frame edges,
overlapping and long frames, coil changes, varied configurations), and must emit the same
events, field for field, in the same order.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

import numpy as np
import pytest

from inspectd.runtime import periodic
from inspectd.runtime.periodic import TEXTURE_CLASSES, PeriodicConfig, PeriodicDetector

CLASSES = ["inclusion", "patches", "scratches", "crazing"]


# -- the reference: one mark at a time ---------------------------------------------------------
@dataclass
class Mark:
    cls: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    frame: int
    offset: float | None

    x = property(lambda m: (m.x1 + m.x2) / 2)
    y = property(lambda m: (m.y1 + m.y2) / 2)


@dataclass
class Chain:
    first: Mark
    last: Mark
    n: int = 2
    turns: int = 1
    x_sum: float = 0.0
    alarm: int | None = None

    pitch = property(lambda c: (c.last.y - c.first.y) / c.turns)


def reference(cfg: PeriodicConfig, mm_per_px: float, frames: list[dict]) -> list[list[dict]]:
    """Per frame, the alarm bodies, one mark at a time."""
    touch, floor, reach = 2.0, 2 * mm_per_px, cfg.max_missed + 1
    state = {"coil": None, "open": [], "chains": {}, "hist": {}, "id": 0}

    def watched(c):
        return c in cfg.classes if cfg.classes is not None else c not in TEXTURE_CLASSES

    def alike(a: Mark, b: Mark) -> bool:
        r = cfg.max_size_ratio
        sa = (max(a.x2 - a.x1, floor), max(a.y2 - a.y1, floor))
        sb = (max(b.x2 - b.x1, floor), max(b.y2 - b.y1, floor))
        return not r or all(max(p, q) <= r * min(p, q) for p, q in zip(sa, sb))

    def occurrence(m: Mark) -> dict:
        return {"frame": m.frame, "strip_position_m": round(m.y / 1000.0, 4),
                "coil_position_m": None if m.offset is None else round((m.y - m.offset) / 1000.0, 4),
                "box_mm": [round(m.x1, 1), round(m.y1, 1), round(m.x2, 1), round(m.y2, 1)], "score": round(m.score, 4)}

    def body(c: Chain, st: str, ended_by: str | None = None) -> dict:
        return {"alarm": "periodic", "alarm_id": c.alarm, "state": st, "ended_by": ended_by, "coil": state["coil"],
                "class": c.last.cls, "pitch_m": round(c.pitch / 1000.0, 4), "cross_mm": round(c.x_sum / c.n, 1),
                "repeats": c.n, "turns": c.turns, "first": occurrence(c.first), "latest": occurrence(c.last),
                "next_strip_position_m": round((c.last.y + c.pitch) / 1000.0, 4)}

    def chance(c: Chain, chains: list[Chain], hist: list[Mark]) -> float:
        if not hist:
            return 0.0
        span = max(c.last.y - min(o.y for o in hist), c.pitch)
        others = max(0, len(hist) + 1 - min(c.n, int(span // c.pitch) + 1))
        if others == 0:
            return 0.0
        xs = [o.x for o in hist] + [c.last.x]
        width = max(xs) - min(xs) + 2 * cfg.cross_tolerance_mm
        window = 2 * cfg.cross_tolerance_mm * 2 * cfg.pitch_tolerance_mm * (cfg.max_missed + 1)
        return max(1, len(chains)) * min(1.0, others / (span * width) * window) ** (c.n - 2)

    def due(c: Chain, chains: list[Chain], hist: list[Mark]) -> list[dict]:
        if c.n < cfg.repeats:
            return []
        if c.alarm is not None:
            return [body(c, "repeated")]
        if chance(c, chains, hist) > cfg.max_chance:
            return []
        c.alarm, state["id"] = state["id"], state["id"] + 1
        return [body(c, "raised")]

    def add(m: Mark) -> list[dict]:
        chains = state["chains"].setdefault(m.cls, [])
        hist = state["hist"].get(m.cls, [])
        best = None
        for c in chains:
            dy = m.y - c.last.y
            k = round(dy / c.pitch)
            err = abs(dy / max(k, 1) - c.pitch)
            if abs(m.x - c.x_sum / c.n) <= cfg.cross_tolerance_mm and 1 <= k <= reach \
                    and err <= cfg.pitch_tolerance_mm and alike(m, c.last) and alike(m, c.first) \
                    and (best is None or (-c.n, err) < best[0]):
                best = ((-c.n, err), c, k)
        if best is not None:
            _, c, k = best
            c.n, c.turns, c.x_sum, c.last = c.n + 1, c.turns + k, c.x_sum + m.x, m
            return due(c, chains, hist)
        out = []
        if hist:
            new = [Chain(o, m, x_sum=o.x + m.x) for o in hist if abs(o.x - m.x) <= cfg.cross_tolerance_mm
                   and cfg.min_pitch_m * 1000.0 <= m.y - o.y <= cfg.max_pitch_m * 1000.0 and alike(m, o)]
            chains += new
            if cfg.repeats <= 2:
                for c in new:
                    out += due(c, chains, hist)
            if len(chains) > periodic._MAX_CHAINS * 5 // 4:
                drop = set(sorted(range(len(chains)), key=lambda i: chains[i].n)[:len(chains) - periodic._MAX_CHAINS])
                chains[:] = [c for i, c in enumerate(chains) if i not in drop]
        first = bisect.bisect_left([o.y for o in hist], m.y - cfg.max_pitch_m * 1000.0)
        state["hist"][m.cls] = hist[max(first, len(hist) + 1 - periodic._MAX_HISTORY):] + [m]
        return out

    def finalise(before: float) -> list[dict]:
        final = [m for m in state["open"] if m.y2 < before]
        state["open"] = [m for m in state["open"] if not m.y2 < before]
        return [a for m in sorted(final, key=lambda m: m.y) for a in add(m)]

    result = []
    for v in frames:
        out = []
        if v.get("coil") != state["coil"]:
            out += [body(c, "ended", "coil") for cs in state["chains"].values() for c in cs if c.alarm is not None]
            state.update(coil=v.get("coil"), open=[], chains={}, hist={})
        top = v["strip_position_m"] * 1000.0
        next_top = top + v["frame_length_m"] * 1000.0
        offset = None if v["coil_position_m"] is None else top - v["coil_position_m"] * 1000.0
        out += finalise(top - touch)
        for d in v["defects"]:
            if d["score"] < cfg.min_score or not watched(d["class"]):
                continue
            m = Mark(d["class"], *map(float, d["box_mm"]), d["score"], v["frame"], offset)
            for o in [o for o in state["open"] if m.y1 <= o.y2 + touch and m.y2 >= o.y1 - touch
                      and m.x1 <= o.x2 + touch and m.x2 >= o.x1 - touch and o.cls == m.cls]:
                m.x1, m.y1, m.x2, m.y2 = min(m.x1, o.x1), min(m.y1, o.y1), max(m.x2, o.x2), max(m.y2, o.y2)
                m.score, m.frame = max(m.score, o.score), min(m.frame, o.frame)
                state["open"].remove(o)
            state["open"].append(m)
        out += finalise(next_top - touch)
        seen_to = min([next_top - touch] + [o.y1 for o in state["open"]])
        for cs in state["chains"].values():
            gone = [c.last.y + reach * (c.pitch + cfg.pitch_tolerance_mm) < seen_to for c in cs]
            out += [body(c, "ended", "missed") for c, g in zip(cs, gone) if g and c.alarm is not None]
            cs[:] = [c for c, g in zip(cs, gone) if not g]
        result.append(out)
    return result


# -- seeded strips ------------------------------------------------------------------------------
def scenario(seed: int) -> tuple[PeriodicConfig, float, list[dict]]:
    """A random strip (roll marks, random marks, coils) seen by frames, and a random configuration."""
    rng = np.random.default_rng(seed)
    pick = lambda *options: options[int(rng.integers(len(options)))]  # noqa: E731
    min_pitch_m = pick(0.1, 0.3)
    cfg = PeriodicConfig(
        repeats=pick(2, 3, 3, 4), max_missed=pick(0, 1, 1, 2), max_size_ratio=pick(0.0, 3.0, 3.0, 1.5),
        max_chance=pick(0.0, 0.01, 0.01, 1.0), min_score=pick(0.0, 0.0, 0.5), classes=pick(None, None, ["inclusion", "crazing"]),
        pitch_tolerance_mm=pick(2.0, 5.0, 20.0, min_pitch_m * 490), cross_tolerance_mm=pick(5.0, 10.0, 40.0),
        min_pitch_m=min_pitch_m, max_pitch_m=pick(2.0, 6.0))
    frame_len = pick(100.0, 200.0, 400.0, 1000.0)                 # mm; 1 m: marks a pitch apart in one frame
    advance = frame_len * pick(1.0, 0.75, 0.5)
    length, width = float(rng.uniform(4000, 20000)), pick(300.0, 1000.0)
    marks = []                                                     # class, box, score
    for _ in range(int(rng.integers(0, 5))):                       # rolls
        cls = pick(*CLASSES)
        pitch = pick(float(rng.uniform(cfg.min_pitch_m * 1000 + 20, cfg.max_pitch_m * 1000 - 20)),
                     cfg.min_pitch_m * 1000 + float(rng.uniform(-1, 2)) * cfg.pitch_tolerance_mm)  # or about the shortest
        x, w, h = float(rng.uniform(0, width - 50)), float(rng.uniform(3, 40)), float(rng.uniform(3, 60))
        twin = pick(None, None, w + float(rng.uniform(3, 8)))     # a second mark beside it, each turn
        jitter = pick(0.5, 1.0, 3.0)
        y = float(rng.uniform(0, pitch))
        while y < length:
            for dx in (0.0, twin) if twin else (0.0,):
                if rng.random() > 0.15:                            # missed now and then
                    jx, jy = rng.normal(0, jitter, 2)
                    marks.append((cls, x + dx + jx, y + jy, x + dx + jx + w, y + jy + h, float(rng.uniform(0.3, 1))))
            y += pitch * pick(1.0, 1.0, 1.0, 2.0)                  # a turn skipped now and then
    for _ in range(int(pick(0.0, 1.0, 5.0, 20.0) * length / 1000)):  # random marks, some long
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, length))
        w, h = float(rng.uniform(2, 30)), pick(float(rng.uniform(2, 30)), float(rng.uniform(100, 900)))
        marks.append((pick(*CLASSES), x, y, x + w, y + h, float(rng.uniform(0.2, 1))))
    coil_at = sorted(rng.uniform(0, length, int(rng.integers(0, 3))).tolist())
    frames, top = [], 0.0
    while top < length:
        seen = [(c, x1, max(y1, top), x2, min(y2, top + frame_len), s)
                for c, x1, y1, x2, y2, s in marks if y1 < top + frame_len and y2 > top]
        ncoil = sum(c <= top for c in coil_at)
        coil = None if ncoil == 0 and seed % 2 else f"C{ncoil}"
        frames.append({
            "frame": len(frames), "strip_position_m": top / 1000.0, "frame_length_m": advance / 1000.0, "coil": coil,
            "coil_position_m": None if coil is None else (top - (coil_at[ncoil - 1] if ncoil else 0.0)) / 1000.0,
            "defects": [{"class": seen[j][0], "score": round(seen[j][5], 4), "box_mm": [round(v, 1) for v in seen[j][1:5]]}
                        for j in rng.permutation(len(seen))]})
        top += advance
    return cfg, pick(0.25, 0.5, 1.0), frames


def detector_events(cfg: PeriodicConfig, mm_per_px: float, frames: list[dict]) -> list[list[dict]]:
    det = PeriodicDetector(cfg, mm_per_px)
    return [det.observe(v) for v in frames]


@pytest.mark.parametrize("block", range(4))
def test_batched_detector_emits_exactly_what_one_mark_at_a_time_does(block):
    raised = 0
    for seed in range(block * 40, block * 40 + 40):
        cfg, mm, frames = scenario(seed)
        want = reference(cfg, mm, frames)
        assert detector_events(cfg, mm, frames) == want, f"seed {seed}"
        raised += sum(a["state"] == "raised" for out in want for a in out)
    assert raised >= 10                  # the comparison covers alarms, not only silence


def test_same_events_when_the_chains_and_the_history_overflow(monkeypatch):
    # Dense random marks of one class (some 750 within the longest pitch): chains pruned and the
    # history cut as they fill (smaller caps here, so that the plain reference stays fast).
    monkeypatch.setattr(periodic, "_MAX_CHAINS", 200)
    monkeypatch.setattr(periodic, "_MAX_HISTORY", 150)
    rng = np.random.default_rng(7)
    frames = []
    for i in range(80):
        top = i * 200.0
        boxes = [(float(x), top + float(y)) for x, y in zip(rng.uniform(0, 400, 25), rng.uniform(0, 380, 25))]
        boxes += [(200.0, top + 100.0)] if i % 4 == 1 else []          # and a roll mark every 0.8 m
        frames.append({"frame": i, "strip_position_m": top / 1000, "frame_length_m": 0.2, "coil": "C1",
                       "coil_position_m": top / 1000, "defects": [
                           {"class": "inclusion", "score": 0.9, "box_mm": [x, y, x + 8, y + 10]} for x, y in boxes]})
    states = {}
    for cfg in (PeriodicConfig(), PeriodicConfig(max_chance=1e6)):     # the roll mark; every chance chain
        want = reference(cfg, 0.5, frames)
        assert detector_events(cfg, 0.5, frames) == want
        states[cfg.max_chance] = [(a["state"], a["cross_mm"]) for out in want for a in out]
    assert states[0.01][0][0] == "raised" and abs(states[0.01][0][1] - 204) < 5 and len(states[0.01]) > 5
    assert {s for s, _ in states[1e6]} == {"raised", "repeated", "ended"}


def test_a_roll_mark_several_times_in_one_long_frame():
    # 2 m frames, a mark every 0.3 m: each verdict completes six or seven marks of one chain,
    # which must be followed mark by mark inside the batch.
    pitch, frames = 300.0, []
    for i in range(6):
        top = i * 2000.0
        ys = [y for y in np.arange(50.0, 12000.0, pitch) if top <= y and y + 12 <= top + 2000]
        frames.append({"frame": i, "strip_position_m": top / 1000, "frame_length_m": 2.0, "coil": None,
                       "coil_position_m": None, "defects": [
                           {"class": "scratches", "score": 0.8, "box_mm": [500.0, y, 506.0, y + 12]} for y in ys]})
    events = [a for out in detector_events(PeriodicConfig(), 0.5, frames) for a in out]
    marks = sum(len(v["defects"]) for v in frames)
    assert [a["state"] for a in events] == ["raised"] + ["repeated"] * (marks - 3)
    assert [a["repeats"] for a in events] == list(range(3, marks + 1))
    assert all(a["pitch_m"] == 0.3 and a["cross_mm"] == 503.0 and a["alarm_id"] == 0 for a in events)
    assert events == [a for out in reference(PeriodicConfig(), 0.5, frames) for a in out]


def test_the_reference_is_the_detector_of_the_module_text():
    # The reference itself on the module's own contract: a roll mark every 1.5 m raises at its
    # third mark, repeats, and ends when the marks stop; a new coil ends it.
    frames = []
    for i in range(50):
        top = i * 200.0
        ys = [y for y in (100.0 + 1500.0 * k for k in range(5)) if top <= y < top + 190]
        frames.append({"frame": i, "strip_position_m": top / 1000, "frame_length_m": 0.2,
                       "coil": "C1" if i < 48 else "C2", "coil_position_m": top / 1000,
                       "defects": [{"class": "patches", "score": 0.9, "box_mm": [50.0, y, 70.0, y + 10]} for y in ys]})
    events = [a for out in reference(PeriodicConfig(), 0.5, frames) for a in out]
    assert [(a["state"], a["repeats"], a["ended_by"]) for a in events] == [
        ("raised", 3, None), ("repeated", 4, None), ("repeated", 5, None), ("ended", 5, "missed")]
    assert events[0]["pitch_m"] == 1.5 and events[0]["first"]["strip_position_m"] == 0.105
    assert events == [a for out in detector_events(PeriodicConfig(), 0.5, frames) for a in out]
    ended = reference(replace(PeriodicConfig(), max_missed=5), 0.5, frames)
    assert [a["ended_by"] for out in ended for a in out if a["state"] == "ended"] == ["coil"]


def test_a_chain_continued_twice_within_one_batch_as_its_pitch_shrinks():
    # Pitch tolerance near its limit (half the shortest pitch). B pairs with A (pitch 100 mm);
    # in the next frame C continues it 60 mm on (error 40: pitch now 80) and D 45 mm after C
    # (error 35). C and D become final together, closer than half the pitch A-B: D must see
    # the chain as C left it.
    cfg = PeriodicConfig(min_pitch_m=0.1, pitch_tolerance_mm=49.0)
    box = lambda y: {"class": "patches", "score": 0.9, "box_mm": [50.0, y, 54.0, y + 4]}  # noqa: E731
    frames = [{"frame": 0, "strip_position_m": 0.0, "frame_length_m": 0.1, "coil": None, "coil_position_m": None,
               "defects": [box(10.0)]},
              {"frame": 1, "strip_position_m": 0.1, "frame_length_m": 0.3, "coil": None, "coil_position_m": None,
               "defects": [box(110.0), box(170.0), box(215.0)]}]
    events = [a for out in detector_events(cfg, 0.5, frames) for a in out]
    assert [(a["state"], a["repeats"], a["latest"]["strip_position_m"]) for a in events] == [
        ("raised", 3, 0.172), ("repeated", 4, 0.217)]
    assert events[1]["pitch_m"] == round((217 - 12) / 3 / 1000, 4)
    assert events == [a for out in reference(cfg, 0.5, frames) for a in out]
