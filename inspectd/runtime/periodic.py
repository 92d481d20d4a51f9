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
   class at its cross position ``min_pitch_m`` .. ``max_pitch_m`` before it. The marks that
   become final together are compared with the chains and the recent marks at once (``_Run``),
   with the same arithmetic, so the result is that of taking them one at a time.
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

import bisect
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


@dataclass(slots=True)
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


# Columns of _Chains: floats (sizes as compared: PeriodicDetector._size), and integers.
_X_SUM, _FIRST_Y, _LAST_Y, _FIRST_W, _FIRST_H, _LAST_W, _LAST_H, _PITCH, _CROSS, _ENDS_Y = range(10)
_N, _TURNS, _ALARM = range(3)


class _Column:
    """The live rows of one column of ``_Chains``."""

    def __init__(self, block: str, col: int) -> None:
        self.block, self.col = block, col

    def __get__(self, obj: _Chains, objtype: type | None = None) -> np.ndarray:
        return getattr(obj, self.block)[:obj.size, self.col]


class _Chains:
    """The chains of one class, one row each in two arrays (floats, integers) with spare rows at
    the end: a verdict's marks are compared with all of them at once, and a mark can start dozens.
    Pitch, cross position and where a chain ends unless continued are kept, not derived at each use."""

    n = _Column("_i", _N)                  # marks
    turns = _Column("_i", _TURNS)          # pitches from the first mark to the last
    alarm = _Column("_i", _ALARM)          # alarm id, -1 while not raised
    pitch = _Column("_f", _PITCH)          # (last y - first y) / turns
    cross = _Column("_f", _CROSS)          # mean of the marks' cross positions: x sum / n
    ends_y = _Column("_f", _ENDS_Y)        # strip seen past this without a mark: the chain ends

    def __init__(self, reach: int, pitch_tolerance_mm: float) -> None:
        self.size = 0
        self._reach, self._tol = reach, pitch_tolerance_mm
        self._f = np.zeros((16, 10))
        self._i = np.zeros((16, 3), np.int64)
        self._first = np.empty(16, object)         # the chains' first and latest marks
        self._last = np.empty(16, object)
        # min of pitch and of ends_y, kept while cheap (None: to be found again)
        self._shortest: float | None = math.inf
        self._soonest_end: float | None = math.inf

    def __len__(self) -> int:
        return self.size

    def first(self, i: int) -> _Mark:
        return self._first[i]

    def last(self, i: int) -> _Mark:
        return self._last[i]

    def rows(self, idx: np.ndarray) -> tuple[list[list[float]], list[int]]:
        """The float rows and the mark counts of chains ``idx``, as Python numbers."""
        return self._f[idx].tolist(), self._i[idx, _N].tolist()

    def add(self, firsts: list[_Mark], x: list[float], y: list[float], size: list[tuple[float, float]],
            last: _Mark, last_size: tuple[float, float]) -> range:
        """Two-mark chains from each of ``firsts`` (at ``x``, ``y``, of ``size``) to ``last``;
        returns their indices."""
        s, k = self.size, len(firsts)
        if s + k > len(self._f):
            cap = max(2 * len(self._f), s + k)
            self._f = np.concatenate([self._f[:s], np.zeros((cap - s, 10))])
            self._i = np.concatenate([self._i[:s], np.zeros((cap - s, 3), np.int64)])
            self._first = np.concatenate([self._first[:s], np.empty(cap - s, object)])
            self._last = np.concatenate([self._last[:s], np.empty(cap - s, object)])
        lx, ly, (lw, lh) = last.x, last.y, last_size
        rows = []
        for fx, fy, (fw, fh) in zip(x, y, size):
            x_sum, pitch = fx + lx, ly - fy                    # one turn
            rows.append((x_sum, fy, ly, fw, fh, lw, lh, pitch, x_sum / 2, ly + self._reach * (pitch + self._tol)))
        self._f[s:s + k] = rows
        self._i[s:s + k] = (2, 1, -1)
        if self._shortest is not None:
            self._shortest = min(self._shortest, min(r[_PITCH] for r in rows))
        if self._soonest_end is not None:
            self._soonest_end = min(self._soonest_end, min(r[_ENDS_Y] for r in rows))
        self._first[s:s + k] = firsts
        self._last[s:s + k] = last
        self.size += k
        return range(s, s + k)

    def extend(self, i: int, m: _Mark, size: tuple[float, float], k: int) -> None:
        row = self._f[i].tolist()
        n, turns = int(self._i[i, _N]) + 1, int(self._i[i, _TURNS]) + k
        row[_X_SUM] += m.x
        row[_LAST_Y], (row[_LAST_W], row[_LAST_H]) = m.y, size
        row[_PITCH] = (row[_LAST_Y] - row[_FIRST_Y]) / turns
        row[_CROSS] = row[_X_SUM] / n
        row[_ENDS_Y] = row[_LAST_Y] + self._reach * (row[_PITCH] + self._tol)
        self._f[i] = row
        self._i[i, :2] = n, turns
        self._shortest = self._soonest_end = None
        self._last[i] = m

    def shortest_pitch(self) -> float:
        if self._shortest is None:
            self._shortest = float(self.pitch.min()) if self.size else math.inf
        return self._shortest

    def soonest_end(self) -> float:
        if self._soonest_end is None:
            self._soonest_end = float(self.ends_y.min()) if self.size else math.inf
        return self._soonest_end

    def keep(self, mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        self._f[:len(idx)] = self._f[idx]
        self._i[:len(idx)] = self._i[idx]
        self._first[:len(idx)] = self._first[idx]
        self._last[:len(idx)] = self._last[idx]
        self._first[len(idx):self.size] = self._last[len(idx):self.size] = None
        self.size = len(idx)
        self._shortest = self._soonest_end = None


class _History:
    """Recent final marks of one class, in the order they came, with their x (for the vectorised
    pairing), y and size (``PeriodicDetector._size``). Marks leave from the front; ``start``
    counts those that ever left, so a mark's number (``start`` + its index) stays put."""

    def __init__(self) -> None:
        self.start = 0
        self.marks: list[_Mark] = []
        self.x: list[float] = []
        self.y: list[float] = []
        self.size: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.marks)

    def drop(self, k: int) -> None:
        """The ``k`` oldest leave."""
        if k > 0:
            del self.marks[:k], self.x[:k], self.y[:k], self.size[:k]
            self.start += k

    def append(self, m: _Mark, size: tuple[float, float]) -> None:
        self.marks.append(m)
        self.x.append(m.x)
        self.y.append(m.y)
        self.size.append(size)


@dataclass
class _Run:
    """Marks of one class, next to each other among the marks finalised together, so close along
    the strip (under half of ``min_pitch_m`` and of every chain's pitch) that none can continue a
    chain that another one of them continued or started, nor pair with another one. So the
    candidates of all of them are found at once, against the chains and the history as they were
    before the run, and each mark then takes its own in order, as one mark at a time would."""

    begin: int                        # the class's marks begin .. end - 1
    end: int
    span_mm: float                    # a chain continued to a pitch under this ends the run early
    # Per mark of the run: the chains it may continue, as (chain, turns, pitch error, marks of the
    # chain), and the history marks (numbers, see _History) it may start a chain with.
    fits: list[list[tuple[int, int, float, int]]]
    pairs: list[list[int]]
    size: list[tuple[float, float]]  # per mark: its size (PeriodicDetector._size)
    # Chain (its index before the run) -> its index now, for the chains in ``fits`` still free:
    # one another mark of the run continued, or that was dropped since, is not.
    free: dict[int, int]
    closed: bool = False

    def remap(self, keep: np.ndarray) -> None:
        """The chains were cut to ``keep``."""
        new = (np.cumsum(keep) - 1).tolist()
        self.free = {c: new[i] for c, i in self.free.items() if keep[i]}


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
        self._watched: dict[str, bool] = {}
        self._reset(None)

    def _reset(self, coil: str | None) -> None:
        self._coil = coil
        self._open: list[_Mark] = []
        self._chains: dict[str, _Chains] = {}
        self._hist: dict[str, _History] = {}

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
        # Marks that this frame cannot extend are final.
        out += self._finalise(top - _TOUCH_MM)
        cfg = self.cfg
        watched = self._watched
        defects = [d for d in verdict.get("defects", ()) if not d["score"] < cfg.min_score
                   and (watched.get(d["class"]) or (d["class"] not in watched and self._watch(d["class"])))]
        if defects:
            pos_coil = verdict.get("coil_position_m")
            offset = None if pos_coil is None else top - float(pos_coil) * 1000.0
            frame = int(verdict["frame"])
            for d in defects:
                x1, y1, x2, y2 = map(float, d["box_mm"])
                m = _Mark(d["class"], x1, y1, x2, y2, float(d["score"]), frame, offset)
                touching = [o for o in self._open if y1 <= o.y2 + _TOUCH_MM and y2 >= o.y1 - _TOUCH_MM
                            and x1 <= o.x2 + _TOUCH_MM and x2 >= o.x1 - _TOUCH_MM and o.cls == m.cls]
                if touching:
                    for o in touching:
                        m.join(o)
                    gone = set(map(id, touching))
                    self._open = [o for o in self._open if id(o) not in gone]
                self._open.append(m)
        # Marks that end before the next frame starts are seen whole.
        out += self._finalise(next_top - _TOUCH_MM)
        # A chain expires only behind every mark still open: one of them may yet continue it.
        seen_to = min([next_top - _TOUCH_MM] + [o.y1 for o in self._open])
        out += self._expire(seen_to)
        return out

    def _watch(self, cls: str) -> bool:
        """Whether ``cls`` is watched (remembered: asked for every defect)."""
        classes = self.cfg.classes
        self._watched[cls] = cls in classes if classes is not None else cls not in TEXTURE_CLASSES
        return self._watched[cls]

    def _finalise(self, before_mm: float) -> list[dict[str, Any]]:
        """Open marks that end before ``before_mm`` are final: they are added in strip order."""
        final = [m for m in self._open if m.y2 < before_mm]
        if not final:
            return []
        self._open = [m for m in self._open if not m.y2 < before_mm]
        final.sort(key=lambda m: m.y)
        per_class: dict[str, list[_Mark]] = {}
        for m in final:
            per_class.setdefault(m.cls, []).append(m)
        done = dict.fromkeys(per_class, 0)
        runs: dict[str, _Run] = {}
        out: list[dict[str, Any]] = []
        for m in final:
            j = done[m.cls]
            done[m.cls] = j + 1
            run = runs.get(m.cls)
            if run is None or run.closed or j >= run.end:
                run = runs[m.cls] = self._run(per_class[m.cls], j)
            out += self._add(m, run, j - run.begin)
        return out

    # -- chains ------------------------------------------------------------------
    def _size(self, w: float, h: float) -> tuple[float, float]:
        """Width and length as compared by ``_alike``: below two pixels all sizes look alike."""
        floor = 2 * self.mm_per_px
        return max(w, floor), max(h, floor)

    def _alike(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Both sides (``_size``) within ``max_size_ratio`` of each other."""
        r = self.cfg.max_size_ratio
        return not r or (max(a[0], b[0]) <= r * min(a[0], b[0]) and max(a[1], b[1]) <= r * min(a[1], b[1]))

    def _run(self, marks: list[_Mark], begin: int) -> _Run:
        """The run of final marks of one class (``marks``, in strip order) from ``begin`` on,
        and the candidates of each (see _Run)."""
        cfg = self.cfg
        cls = marks[begin].cls
        chains = self._chains.get(cls)
        if chains is None:
            chains = self._chains[cls] = _Chains(cfg.max_missed + 1, cfg.pitch_tolerance_mm)
        hist = self._hist.get(cls)
        if hist is None:
            hist = self._hist[cls] = _History()
        # Under half of the shortest pitch a chain has or a pair may start: no mark of the run
        # lies a pitch (rounded: k >= 1) after another one.
        span = min(cfg.min_pitch_m * 1000.0, chains.shortest_pitch())
        y0 = marks[begin].y
        end = begin + 1
        while end < len(marks) and marks[end].y - y0 < span / 2:
            end += 1
        group = marks[begin:end]
        x = np.array([m.x for m in group])[:, None]
        y = [m.y for m in group]
        size = [self._size(m.x2 - m.x1, m.y2 - m.y1) for m in group]
        run = _Run(begin, end, span, [[] for _ in group], [[] for _ in group], size, {})
        # The cross position rules out nearly every pair at once; the few left are tested one by one
        # in Python floats: the same IEEE doubles as numpy's, so the same decisions.
        if len(chains):
            r, c = np.nonzero(np.abs(x - chains.cross) <= cfg.cross_tolerance_mm)
            if len(r):
                rows, ns = chains.rows(c)
                reach = cfg.max_missed + 1
                for j, i, row, n in zip(r.tolist(), c.tolist(), rows, ns):
                    dy = y[j] - row[_LAST_Y]
                    pitch = row[_PITCH]
                    q = dy / pitch
                    if not 0.5 <= q <= reach + 0.5:      # also rules out NaN, which round() refuses
                        continue
                    k = round(q)
                    err = abs(dy / max(k, 1) - pitch)
                    if 1 <= k <= reach and err <= cfg.pitch_tolerance_mm \
                            and self._alike(size[j], (row[_LAST_W], row[_LAST_H])) \
                            and self._alike(size[j], (row[_FIRST_W], row[_FIRST_H])):
                        run.fits[j].append((i, k, err, n))
                        run.free[i] = i
        if len(hist):
            r, c = np.nonzero(np.abs(np.array(hist.x) - x) <= cfg.cross_tolerance_mm)
            lo, hi = cfg.min_pitch_m * 1000.0, cfg.max_pitch_m * 1000.0
            hy, hsize = hist.y, hist.size
            for j, i in zip(r.tolist(), c.tolist()):
                if lo <= y[j] - hy[i] <= hi and self._alike(size[j], hsize[i]):
                    run.pairs[j].append(hist.start + i)
        return run

    def _add(self, m: _Mark, run: _Run, row: int) -> list[dict[str, Any]]:
        """Final mark ``m``, mark ``row`` of its ``run``: it continues a chain, or starts chains with
        earlier marks and joins the history."""
        cfg = self.cfg
        chains, hist = self._chains[m.cls], self._hist[m.cls]
        size = run.size[row]
        fits = [f for f in run.fits[row] if f[0] in run.free]
        if fits:
            # The longest chain it fits, then the closest: the mark is used by that one only.
            c, k, _, _ = min(fits, key=lambda f: (-f[3], f[2]))
            i = run.free.pop(c)
            chains.extend(i, m, size, k)
            if float(chains.pitch[i]) < run.span_mm:
                run.closed = True             # a later mark of the run might lie a pitch after this one
            return self._alarm_if_due(chains, i)
        out: list[dict[str, Any]] = []
        if len(hist):
            # Marks that left the history since the run began are skipped; the marks the run
            # added since cannot pair (too close).
            js = [j - hist.start for j in run.pairs[row] if j >= hist.start]
            if js:
                new = chains.add([hist.marks[j] for j in js], [hist.x[j] for j in js], [hist.y[j] for j in js],
                                 [hist.size[j] for j in js], m, size)
                if cfg.repeats <= 2:
                    for i in new:
                        out += self._alarm_if_due(chains, i)
            if len(chains) > _MAX_CHAINS * 5 // 4:
                # Too many: the oldest of the shortest go first; a chain that grew is kept.
                drop = np.lexsort((np.arange(len(chains)), chains.n))[:len(chains) - _MAX_CHAINS]
                keep = np.ones(len(chains), bool)
                keep[drop] = False
                chains.keep(keep)
                run.remap(keep)
        # Recent marks only: nothing further back than the longest pitch can pair. Marks come
        # in strip order, so the ones that fell out of reach are the first few (bisect_left: the
        # same binary search as numpy's searchsorted, also where a long mark came in late).
        first = bisect.bisect_left(hist.y, m.y - cfg.max_pitch_m * 1000.0)
        hist.drop(max(first, len(hist) + 1 - _MAX_HISTORY))
        hist.append(m, size)
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
        last = chains.last(i)
        hist = self._hist.get(last.cls)
        if hist is None or not len(hist):
            return 0.0
        pitch = float(chains.pitch[i])
        span = max(last.y - min(hist.y), pitch)
        own = min(int(chains.n[i]), int(span // pitch) + 1)
        others = max(0, len(hist) + 1 - own)           # the history does not hold the newest mark yet
        if others == 0:
            return 0.0                                 # no other mark of the class: nothing to be chance
        width = max(max(hist.x), last.x) - min(min(hist.x), last.x) + 2 * cfg.cross_tolerance_mm
        window = 2 * cfg.cross_tolerance_mm * 2 * cfg.pitch_tolerance_mm * (cfg.max_missed + 1)
        p = min(1.0, others / (span * width) * window)
        return max(1, len(chains)) * p ** (int(chains.n[i]) - 2)

    def _expire(self, seen_to_mm: float) -> list[dict[str, Any]]:
        """Chains whose next expected mark (after the allowed misses) lies behind ``seen_to_mm``."""
        out: list[dict[str, Any]] = []
        for chains in self._chains.values():
            if chains.soonest_end() >= seen_to_mm:
                continue
            gone = chains.ends_y < seen_to_mm
            out += [self._body(chains, int(i), "ended", "missed") for i in np.flatnonzero(gone & (chains.alarm >= 0))]
            chains.keep(~gone)
        return out

    def _end_all(self, why: str) -> list[dict[str, Any]]:
        return [self._body(chains, int(i), "ended", why) for chains in self._chains.values()
                for i in np.flatnonzero(chains.alarm >= 0)]

    def _body(self, chains: _Chains, i: int, state: str, ended_by: str | None = None) -> dict[str, Any]:
        pitch = float(chains.pitch[i])
        last = chains.last(i)
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
            "first": chains.first(i).occurrence(),
            "latest": last.occurrence(),
            "next_strip_position_m": round((last.y + pitch) / 1000.0, 4),
        }


def check_classes(cfg: PeriodicConfig, class_names: list[str]) -> None:
    """``classes`` must name classes of the model: a typo would silently watch nothing."""
    unknown = [c for c in cfg.classes or [] if c not in class_names]
    if unknown:
        raise ConfigError(f"alarms.periodic.classes: {', '.join(unknown)} not among the model's classes "
                          f"({', '.join(class_names)})")
