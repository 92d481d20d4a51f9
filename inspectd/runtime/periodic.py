"""Periodic defects: the same mark repeating at a constant pitch along the strip.

A damaged or dirty roll marks the strip once per turn: marks of one class, at one cross
position, one roll circumference apart. ``PeriodicDetector`` is fed each verdict payload as
it is published (on the publisher's thread) and returns the ``alarm`` bodies to publish.

How a mark is found and followed:

1. **Marks.** A defect cut by a frame edge, or seen twice because consecutive frames
   overlap, is one mark: same-class boxes that overlap or touch in strip millimetres
   (``box_mm``) across consecutive frames are joined. A mark is final once no later frame can
   see more of it.
2. **Chains.** Each final mark first tries to continue a chain of its class: at the chain's
   cross position (``cross_tolerance_mm``) and 1 .. ``max_missed + 1`` pitches after its
   latest mark (``pitch_tolerance_mm`` on the pitch). A mark that continues a chain is used
   by that chain only. Otherwise it starts a two-mark chain with every earlier mark of its
   class at its cross position ``min_pitch_m`` .. ``max_pitch_m`` before it (one vectorised
   comparison over the recent marks).
3. **Alarms.** A chain of ``repeats`` marks raises an alarm (``state: raised``); each further
   mark sends it again (``repeated``, same ``alarm_id``); when ``max_missed + 1`` expected
   marks have passed unseen (the roll was changed, or the mark wore off) it ends
   (``ended``). A new coil ends every alarm (``ended_by: coil``) and starts afresh: the
   strip behind a coil head is another piece of steel.

Positions are the published ones: strip positions (``strip_position_m``, ``box_mm``) for the
pitch, ``coil_position_m`` for the coil positions reported with each occurrence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspectd.configtools import ConfigError, doc, fail


@dataclass
class PeriodicConfig:
    enabled: bool = doc("Watch for periodic defects and publish `alarm` events.", default=True)
    repeats: int = doc(
        "Marks at one pitch (the first one included) that raise an alarm: 3 means the mark was "
        "seen on three consecutive turns of the roll (or with at most `max_missed` turns unseen "
        "between them).",
        default=3,
    )
    pitch_tolerance_mm: float = doc(
        "How far, in millimetres, the distance between two marks (divided by the turns between "
        "them) may differ from the chain's pitch. Covers the defect's position jitter in the "
        "images (about 1 mm for a compact mark at 0.5 mm/px) and the strip's stretch.",
        default=5.0,
    )
    cross_tolerance_mm: float = doc(
        "How far, in millimetres across the strip, a mark's centre may lie from the chain's "
        "cross position (strip wander, position jitter).",
        default=10.0,
    )
    min_pitch_m: float = doc(
        "Shortest pitch, in metres, that is watched: the smallest roll circumference that touches "
        "the strip ahead of the camera.",
        default=0.3,
    )
    max_pitch_m: float = doc(
        "Longest pitch, in metres, that is watched: the largest roll circumference (a backup "
        "roll of 1.6 m diameter: about 5 m).",
        default=6.0,
    )
    max_missed: int = doc(
        "Turns in a row on which a chain's mark may go unseen (a missed detection, an "
        "uninspected frame) before the chain, and its alarm, ends.",
        default=1,
    )
    max_size_ratio: float = doc(
        "A roll leaves the same mark each turn: marks whose length or width differ by more than "
        "this factor from the chain's latest mark do not continue it. 0: any size.",
        default=3.0,
    )
    classes: list[str] | None = doc(
        "Defect classes that are watched. null: every class of the model except the texture "
        "classes (`crazing`, `pitted_surface`, `rolled-in_scale`): they cover areas, and the "
        "centre of an area carries no roll position.",
        default=None,
    )
    min_score: float = doc("Defects scoring below this are not used.", default=0.0)

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if self.repeats < 2:
            fail(where, p + "repeats", f"must be at least 2, got {self.repeats!r}")
        for name in ("pitch_tolerance_mm", "cross_tolerance_mm", "min_pitch_m", "max_pitch_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                fail(where, p + name, f"must be a positive number, got {value!r}")
        if self.max_pitch_m <= self.min_pitch_m:
            fail(where, p + "max_pitch_m", f"must be above min_pitch_m ({self.min_pitch_m}), got {self.max_pitch_m!r}")
        if self.pitch_tolerance_mm >= self.min_pitch_m * 500:
            fail(where, p + "pitch_tolerance_mm",
                 f"must be below half of min_pitch_m ({self.min_pitch_m * 500:g} mm), got {self.pitch_tolerance_mm!r}")
        if self.max_missed < 0:
            fail(where, p + "max_missed", f"must be zero or more, got {self.max_missed!r}")
        if not (math.isfinite(self.max_size_ratio) and (self.max_size_ratio == 0 or self.max_size_ratio >= 1)):
            fail(where, p + "max_size_ratio", f"must be 0 (off) or at least 1, got {self.max_size_ratio!r}")
        if not 0 <= self.min_score <= 1:
            fail(where, p + "min_score", f"must be 0 to 1, got {self.min_score!r}")


@dataclass
class _Mark:
    """One physical defect on the strip, in strip millimetres (x across, y along)."""

    cls: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    frame: int
    coil_offset_mm: float | None     # strip mm minus coil mm (None: no coil open)

    @property
    def x(self) -> float:
        return (self.x1 + self.x2) / 2

    @property
    def y(self) -> float:
        return (self.y1 + self.y2) / 2

    def join(self, o: "_Mark") -> None:
        self.x1, self.y1 = min(self.x1, o.x1), min(self.y1, o.y1)
        self.x2, self.y2 = max(self.x2, o.x2), max(self.y2, o.y2)
        if o.score > self.score:
            self.score = o.score
        self.frame = min(self.frame, o.frame)

    def occurrence(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "strip_position_m": round(self.y / 1000.0, 4),
            "coil_position_m": None if self.coil_offset_mm is None else round((self.y - self.coil_offset_mm) / 1000.0, 4),
            "box_mm": [round(self.x1, 1), round(self.y1, 1), round(self.x2, 1), round(self.y2, 1)],
            "score": round(self.score, 4),
        }


@dataclass
class _Chain:
    cls: str
    first: _Mark
    last: _Mark
    turns: int                       # roll turns from first to last
    marks: int = 2
    xs: list[float] = field(default_factory=list)
    alarm_id: int | None = None

    @property
    def pitch(self) -> float:
        return (self.last.y - self.first.y) / self.turns

    @property
    def cross(self) -> float:
        return float(np.mean(self.xs))


#: Classes that are not watched by default: areas of texture, not marks.
TEXTURE_CLASSES = ("crazing", "pitted_surface", "rolled-in_scale")

_TOUCH_MM = 2.0          # boxes this close (or overlapping) in strip mm are one mark
_MAX_CHAINS = 2000       # per class: a strip covered in one defect class must not eat the CPU


class PeriodicDetector:
    """Fed verdict payloads in frame order; returns ``alarm`` bodies (see the module text)."""

    def __init__(self, cfg: PeriodicConfig, mm_per_px: float):
        self.cfg = cfg
        self.mm_per_px = mm_per_px
        self._next_id = 0
        self._reset(None)

    def _reset(self, coil: str | None) -> None:
        self._coil = coil
        self._open: list[_Mark] = []
        self._chains: dict[str, list[_Chain]] = {}
        # Recent final marks per class, as arrays for the vectorised pairing.
        self._hist: dict[str, tuple[np.ndarray, list[_Mark]]] = {}

    # -- input -------------------------------------------------------------------
    def observe(self, verdict: dict[str, Any]) -> list[dict[str, Any]]:
        """One published verdict payload in; the alarm bodies it causes out."""
        out: list[dict[str, Any]] = []
        coil = verdict.get("coil")
        if coil != self._coil:
            out += self._end_all("coil")
            self._reset(coil)
        top = float(verdict["strip_position_m"]) * 1000.0
        next_top = top + float(verdict["frame_length_m"]) * 1000.0
        pos_coil = verdict.get("coil_position_m")
        offset = None if pos_coil is None else top - float(pos_coil) * 1000.0
        # Marks that this frame cannot extend are final.
        out += self._finalise(lambda m: m.y2 < top - _TOUCH_MM)
        cfg = self.cfg
        for d in verdict.get("defects", []):
            if d["score"] < cfg.min_score or not self._watched(d["class"]):
                continue
            x1, y1, x2, y2 = (float(v) for v in d["box_mm"])
            m = _Mark(d["class"], x1, y1, x2, y2, float(d["score"]), int(verdict["frame"]), offset)
            touching = [o for o in self._open if o.cls == m.cls
                        and m.x1 <= o.x2 + _TOUCH_MM and m.x2 >= o.x1 - _TOUCH_MM
                        and m.y1 <= o.y2 + _TOUCH_MM and m.y2 >= o.y1 - _TOUCH_MM]
            for o in touching:
                m.join(o)
                self._open.remove(o)
            self._open.append(m)
        # Marks that end before the next frame starts are seen whole.
        out += self._finalise(lambda m: m.y2 < next_top - _TOUCH_MM)
        # A chain expires only behind every mark still open: one of them may yet continue it.
        seen_to = min([next_top - _TOUCH_MM] + [o.y1 for o in self._open])
        out += self._expire(seen_to)
        return out

    def _watched(self, cls: str) -> bool:
        return cls in self.cfg.classes if self.cfg.classes is not None else cls not in TEXTURE_CLASSES

    def _finalise(self, done) -> list[dict[str, Any]]:
        final = [m for m in self._open if done(m)]
        if not final:
            return []
        self._open = [m for m in self._open if not done(m)]
        out: list[dict[str, Any]] = []
        for m in sorted(final, key=lambda m: m.y):
            out += self._add(m)
        return out

    # -- chains ------------------------------------------------------------------
    def _similar(self, a: _Mark, b: _Mark) -> bool:
        r = self.cfg.max_size_ratio
        if not r:
            return True
        for sa, sb in ((a.x2 - a.x1, b.x2 - b.x1), (a.y2 - a.y1, b.y2 - b.y1)):
            sa, sb = max(sa, 2 * self.mm_per_px), max(sb, 2 * self.mm_per_px)
            if max(sa, sb) > r * min(sa, sb):
                return False
        return True

    def _add(self, m: _Mark) -> list[dict[str, Any]]:
        cfg = self.cfg
        chains = self._chains.setdefault(m.cls, [])
        best: tuple[tuple[int, float], _Chain, int] | None = None
        for c in chains:
            if abs(m.x - c.cross) > cfg.cross_tolerance_mm or not (self._similar(m, c.last) and self._similar(m, c.first)):
                continue
            pitch = c.pitch
            k = round((m.y - c.last.y) / pitch)
            if not 1 <= k <= cfg.max_missed + 1:
                continue
            err = abs((m.y - c.last.y) / k - pitch)
            if err <= cfg.pitch_tolerance_mm:
                key = (-c.marks, err)
                if best is None or key < best[0]:
                    best = (key, c, k)
        if best is not None:
            _, c, k = best
            c.last, c.turns, c.marks = m, c.turns + k, c.marks + 1
            c.xs.append(m.x)
            return self._alarm_if_due(c)
        out: list[dict[str, Any]] = []
        ys, marks = self._hist.get(m.cls, (np.empty((0, 2)), []))
        if len(marks):
            dy = m.y - ys[:, 1]
            near = (np.abs(ys[:, 0] - m.x) <= cfg.cross_tolerance_mm) \
                & (dy >= cfg.min_pitch_m * 1000.0) & (dy <= cfg.max_pitch_m * 1000.0)
            for i in np.flatnonzero(near):
                if self._similar(m, marks[i]):
                    c = _Chain(m.cls, marks[i], m, 1, 2, [marks[i].x, m.x])
                    chains.append(c)
                    out += self._alarm_if_due(c)
            if len(chains) > _MAX_CHAINS:
                del chains[:len(chains) - _MAX_CHAINS]
        # Recent marks only: nothing further back than the longest pitch can pair.
        keep = [i for i, o in enumerate(marks) if m.y - o.y <= cfg.max_pitch_m * 1000.0]
        marks = [marks[i] for i in keep] + [m]
        ys = np.concatenate([ys[keep], np.array([[m.x, m.y]])])
        self._hist[m.cls] = (ys, marks)
        return out

    def _alarm_if_due(self, c: _Chain) -> list[dict[str, Any]]:
        if c.marks < self.cfg.repeats:
            return []
        state = "repeated"
        if c.alarm_id is None:
            c.alarm_id, self._next_id, state = self._next_id, self._next_id + 1, "raised"
        return [self._body(c, state)]

    def _expire(self, seen_to_mm: float) -> list[dict[str, Any]]:
        """Chains whose next expected mark (after the allowed misses) lies behind ``seen_to_mm``."""
        out: list[dict[str, Any]] = []
        reach = self.cfg.max_missed + 1
        for cls, chains in self._chains.items():
            alive = []
            for c in chains:
                if c.last.y + reach * (c.pitch + self.cfg.pitch_tolerance_mm) < seen_to_mm:
                    if c.alarm_id is not None:
                        out.append(self._body(c, "ended", "missed"))
                else:
                    alive.append(c)
            self._chains[cls] = alive
        return out

    def _end_all(self, why: str) -> list[dict[str, Any]]:
        return [self._body(c, "ended", why) for chains in self._chains.values() for c in chains
                if c.alarm_id is not None]

    def _body(self, c: _Chain, state: str, ended_by: str | None = None) -> dict[str, Any]:
        return {
            "alarm": "periodic",
            "alarm_id": c.alarm_id,
            "state": state,
            "ended_by": ended_by,
            "coil": self._coil,
            "class": c.cls,
            "pitch_m": round(c.pitch / 1000.0, 4),
            "cross_mm": round(c.cross, 1),
            "repeats": c.marks,
            "turns": c.turns,
            "first": c.first.occurrence(),
            "latest": c.last.occurrence(),
            "next_strip_position_m": round((c.last.y + c.pitch) / 1000.0, 4),
        }


def check_classes(cfg: PeriodicConfig, class_names: list[str]) -> None:
    """``classes`` must name classes of the model: a typo would silently watch nothing."""
    unknown = [c for c in cfg.classes or [] if c not in class_names]
    if unknown:
        raise ConfigError(f"alarms.periodic.classes: {', '.join(unknown)} not among the model's classes "
                          f"({', '.join(class_names)})")
