"""Periodic defects: the same mark repeating at a constant pitch along the strip.

A damaged or dirty roll marks the strip once per turn: marks of one class, at one cross
position, one roll circumference apart. ``PeriodicDetector`` is fed each verdict payload as
it is published (on its own thread, ``runtime.alarm_thread``) and returns the ``alarm``
bodies to publish.

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
3. **Alarms.** A chain of ``repeats`` marks raises an alarm (``state: raised``), unless marks
   of its class are so dense that a chain that long is likely chance (``max_chance``: then it
   waits for more marks); each further
   mark sends it again (``repeated``, same ``alarm_id``); when ``max_missed + 1`` expected
   marks have passed unseen (the roll was changed, or the mark wore off) it ends
   (``ended``). A new coil ends every alarm (``ended_by: coil``) and starts afresh: the
   strip behind a coil head is another piece of steel.

Positions are the published ones: strip positions (``strip_position_m``, ``box_mm``) for the
pitch, ``coil_position_m`` for the coil positions reported with each occurrence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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
    max_chance: float = doc(
        "Where marks of a class crowd a cross position, a chain of `repeats` marks can be chance: "
        "the alarm then waits for more marks, until fewer than this many chains that long are "
        "expected by chance (from the density of the class's other recent marks on the strip and "
        "the window where a chain expects its next mark). 0: never raise where other marks of "
        "the class are; 1 or more: always at `repeats`.",
        default=0.01,
    )

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
        if not (math.isfinite(self.max_chance) and self.max_chance >= 0):
            fail(where, p + "max_chance", f"must be zero or more, got {self.max_chance!r}")


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

    @property
    def wh(self) -> np.ndarray:
        return np.array([self.x2 - self.x1, self.y2 - self.y1])

    def join(self, o: _Mark) -> None:
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


class _Chains:
    """The chains of one class, as columns: each new mark is compared with all of them at once."""

    def __init__(self) -> None:
        self.n = np.zeros(0, np.int64)            # marks
        self.turns = np.zeros(0, np.int64)        # pitches from the first mark to the last
        self.x_sum = np.zeros(0)                  # sum of the marks' cross positions (mean: cross)
        self.first_y = np.zeros(0)
        self.last_y = np.zeros(0)
        self.first_wh = np.zeros((0, 2))
        self.last_wh = np.zeros((0, 2))
        self.alarm = np.zeros(0, np.int64)        # alarm id, -1 while not raised
        self.first: list[_Mark] = []
        self.last: list[_Mark] = []

    def __len__(self) -> int:
        return len(self.n)

    @property
    def pitch(self) -> np.ndarray:
        return (self.last_y - self.first_y) / self.turns

    @property
    def cross(self) -> np.ndarray:
        return self.x_sum / self.n

    def add(self, firsts: list[_Mark], cols: np.ndarray, last: _Mark) -> range:
        """Two-mark chains from each of ``firsts`` (their x, y, w, h rows: ``cols``) to ``last``;
        returns their indices."""
        n, k = len(self.n), len(firsts)
        self.n = np.concatenate([self.n, np.full(k, 2)])
        self.turns = np.concatenate([self.turns, np.ones(k, np.int64)])
        self.x_sum = np.concatenate([self.x_sum, cols[:, 0] + last.x])
        self.first_y = np.concatenate([self.first_y, cols[:, 1]])
        self.last_y = np.concatenate([self.last_y, np.full(k, last.y)])
        self.first_wh = np.concatenate([self.first_wh, cols[:, 2:]])
        self.last_wh = np.concatenate([self.last_wh, np.tile(last.wh, (k, 1))])
        self.alarm = np.concatenate([self.alarm, np.full(k, -1)])
        self.first += firsts
        self.last += [last] * k
        return range(n, n + k)

    def extend(self, i: int, m: _Mark, k: int) -> None:
        self.n[i] += 1
        self.turns[i] += k
        self.x_sum[i] += m.x
        self.last_y[i] = m.y
        self.last_wh[i] = m.wh
        self.last[i] = m

    def keep(self, mask: np.ndarray) -> None:
        for name in ("n", "turns", "x_sum", "first_y", "last_y", "first_wh", "last_wh", "alarm"):
            setattr(self, name, getattr(self, name)[mask])
        idx = np.flatnonzero(mask)
        self.first = [self.first[i] for i in idx]
        self.last = [self.last[i] for i in idx]


#: Classes that are not watched by default: areas of texture, not marks.
TEXTURE_CLASSES = ("crazing", "pitted_surface", "rolled-in_scale")

_TOUCH_MM = 2.0          # boxes this close (or overlapping) in strip mm are one mark
# Per class: a strip covered in one defect class must not eat the CPU (the newest are kept).
_MAX_CHAINS = 500
_MAX_HISTORY = 2000


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
        self._chains: dict[str, _Chains] = {}
        # Recent final marks per class: (x, y, w, h) columns for the vectorised pairing, and the marks.
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
            touching = [o for o in self._open if m.y1 <= o.y2 + _TOUCH_MM and m.y2 >= o.y1 - _TOUCH_MM
                        and m.x1 <= o.x2 + _TOUCH_MM and m.x2 >= o.x1 - _TOUCH_MM and o.cls == m.cls]
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
    def _similar(self, wh: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Per row of ``others`` (w, h): both sides within ``max_size_ratio`` of ``wh``'s."""
        r = self.cfg.max_size_ratio
        if not r:
            return np.ones(len(others), bool)
        floor = 2 * self.mm_per_px
        a, b = np.maximum(wh, floor)[None, :], np.maximum(others, floor)
        return np.all(np.maximum(a, b) <= r * np.minimum(a, b), axis=1)

    def _add(self, m: _Mark) -> list[dict[str, Any]]:
        cfg = self.cfg
        chains = self._chains.setdefault(m.cls, _Chains())
        if len(chains):
            pitch = chains.pitch
            dy = m.y - chains.last_y
            k = np.rint(dy / pitch)
            err = np.abs(dy / np.maximum(k, 1) - pitch)
            ok = (np.abs(m.x - chains.cross) <= cfg.cross_tolerance_mm) & (k >= 1) & (k <= cfg.max_missed + 1) \
                & (err <= cfg.pitch_tolerance_mm)
            if ok.any():
                ok &= self._similar(m.wh, chains.last_wh) & self._similar(m.wh, chains.first_wh)
            if ok.any():
                # The longest chain it fits, then the closest: the mark is used by that one only.
                idx = np.flatnonzero(ok)
                i = int(idx[np.lexsort((err[idx], -chains.n[idx]))[0]])
                chains.extend(i, m, int(k[i]))
                return self._alarm_if_due(chains, i)
        out: list[dict[str, Any]] = []
        cols, marks = self._hist.get(m.cls, (np.empty((0, 4)), []))
        if len(marks):
            dy = m.y - cols[:, 1]
            near = (np.abs(cols[:, 0] - m.x) <= cfg.cross_tolerance_mm) \
                & (dy >= cfg.min_pitch_m * 1000.0) & (dy <= cfg.max_pitch_m * 1000.0)
            if near.any():
                near &= self._similar(m.wh, cols[:, 2:])
            idx = np.flatnonzero(near)
            if len(idx):
                new = chains.add([marks[j] for j in idx], cols[idx], m)
                if cfg.repeats <= 2:
                    for i in new:
                        out += self._alarm_if_due(chains, i)
            if len(chains) > _MAX_CHAINS * 5 // 4:
                # Too many: the oldest of the shortest go first; a chain that grew is kept.
                drop = np.lexsort((np.arange(len(chains)), chains.n))[:len(chains) - _MAX_CHAINS]
                keep = np.ones(len(chains), bool)
                keep[drop] = False
                chains.keep(keep)
        # Recent marks only: nothing further back than the longest pitch can pair. Marks come
        # in strip order, so the ones that fell out of reach are the first few.
        first = int(np.searchsorted(cols[:, 1], m.y - cfg.max_pitch_m * 1000.0)) if len(marks) else 0
        first = max(first, len(marks) + 1 - _MAX_HISTORY)
        self._hist[m.cls] = (np.vstack([cols[first:], [[m.x, m.y, *m.wh]]]), marks[first:] + [m])
        return out

    def _alarm_if_due(self, chains: _Chains, i: int) -> list[dict[str, Any]]:
        if chains.n[i] < self.cfg.repeats:
            return []
        state = "repeated"
        if chains.alarm[i] < 0:
            if self._chance(chains, i) > self.cfg.max_chance:
                return []
            chains.alarm[i], self._next_id, state = self._next_id, self._next_id + 1, "raised"
        return [self._body(chains, i, state)]

    def _chance(self, chains: _Chains, i: int) -> float:
        """Chains as long as chain ``i`` expected by chance: (chains being followed) x
        p^(marks - 2), where p is the chance that one of the class's other recent marks falls
        into the window where a chain expects its next mark (the marks' density per strip area,
        times the window: 2 cross tolerances x 2 pitch tolerances x the turns it may skip)."""
        cfg = self.cfg
        last = chains.last[i]
        cols, _ = self._hist.get(last.cls, (np.empty((0, 4)), []))
        if not len(cols):
            return 0.0
        pitch = float(chains.pitch[i])
        span = max(last.y - float(cols[:, 1].min()), pitch)
        own = min(int(chains.n[i]), int(span // pitch) + 1)
        others = max(0, len(cols) + 1 - own)           # the history does not hold the newest mark yet
        if others == 0:
            return 0.0                                 # no other mark of the class: nothing to be chance
        xs = np.append(cols[:, 0], last.x)
        width = float(xs.max() - xs.min()) + 2 * cfg.cross_tolerance_mm
        window = 2 * cfg.cross_tolerance_mm * 2 * cfg.pitch_tolerance_mm * (cfg.max_missed + 1)
        p = min(1.0, others / (span * width) * window)
        return max(1, len(chains)) * p ** (int(chains.n[i]) - 2)

    def _expire(self, seen_to_mm: float) -> list[dict[str, Any]]:
        """Chains whose next expected mark (after the allowed misses) lies behind ``seen_to_mm``."""
        out: list[dict[str, Any]] = []
        reach = self.cfg.max_missed + 1
        for chains in self._chains.values():
            if not len(chains):
                continue
            gone = chains.last_y + reach * (chains.pitch + self.cfg.pitch_tolerance_mm) < seen_to_mm
            if gone.any():
                out += [self._body(chains, int(i), "ended", "missed") for i in np.flatnonzero(gone & (chains.alarm >= 0))]
                chains.keep(~gone)
        return out

    def _end_all(self, why: str) -> list[dict[str, Any]]:
        return [self._body(chains, int(i), "ended", why) for chains in self._chains.values()
                for i in np.flatnonzero(chains.alarm >= 0)]

    def _body(self, chains: _Chains, i: int, state: str, ended_by: str | None = None) -> dict[str, Any]:
        pitch = float(chains.pitch[i])
        last = chains.last[i]
        return {
            "alarm": "periodic",
            "alarm_id": int(chains.alarm[i]),
            "state": state,
            "ended_by": ended_by,
            "coil": self._coil,
            "class": last.cls,
            "pitch_m": round(pitch / 1000.0, 4),
            "cross_mm": round(float(chains.cross[i]), 1),
            "repeats": int(chains.n[i]),
            "turns": int(chains.turns[i]),
            "first": chains.first[i].occurrence(),
            "latest": last.occurrence(),
            "next_strip_position_m": round((last.y + pitch) / 1000.0, 4),
        }


def check_classes(cfg: PeriodicConfig, class_names: list[str]) -> None:
    """``classes`` must name classes of the model: a typo would silently watch nothing."""
    unknown = [c for c in cfg.classes or [] if c not in class_names]
    if unknown:
        raise ConfigError(f"alarms.periodic.classes: {', '.join(unknown)} not among the model's classes "
                          f"({', '.join(class_names)})")
