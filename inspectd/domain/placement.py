"""Where a frame (and each of its defects) lies on the strip, and when it passes the reject gate.

Computed once, where the verdict or the uninspected report is made (``runtime.placement.place``,
with the line geometry of ``inspectd.line``), and carried with it: the bus copies these fields
into the messages (rounding them for the wire) and computes none of them. Values are kept
unrounded here, so that the wire's rounding stays the encoder's one step.
"""
from __future__ import annotations

from dataclasses import dataclass

from inspectd.domain.frames import CoilMark


@dataclass(frozen=True, slots=True)
class DefectPlacement:
    """One defect's box on the strip and the instants its rows pass the gate."""

    box_mm: tuple[float, float, float, float]   # x1, y1, x2, y2: x across the strip, y as strip position (mm)
    area_mm2: float
    gate_deadline_wall_ns: int                  # the defect's first row reaches the gate
    gate_until_wall_ns: int                     # its last row has passed the gate


@dataclass(frozen=True, slots=True)
class Placement:
    """One frame's strip: where it lies, in its coil, and its window at the gate."""

    strip_position_m: float          # the frame's first row (from the encoder, or index x frame length)
    frame_length_m: float            # strip from this frame's first row to the next frame's
    coil: CoilMark | None            # the coil it was read in
    coil_position_m: float | None    # its first row in that coil (metres from the coil's head)
    gate_deadline_wall_ns: int       # the first row reaches the gate: the gate must act by then
    gate_until_wall_ns: int          # the last row (the next frame's first) has passed the gate
    defects: tuple[DefectPlacement, ...] = ()   # one per defect of the verdict, in its order

    @property
    def strip_end_m(self) -> float:
        """Where the next frame's first row lies (the end of this frame's strip)."""
        return self.strip_position_m + self.frame_length_m


@dataclass(frozen=True, slots=True)
class StretchPlacement:
    """Consecutive frames' strip (an ``uninspected`` stretch): from the first frame's first row
    to the end of the last frame's strip, and the gate window of all of it."""

    strip_start_m: float
    strip_end_m: float
    coil: str | None
    coil_start_m: float | None
    coil_end_m: float | None
    gate_deadline_wall_ns: int
    gate_until_wall_ns: int

    @classmethod
    def spanning(cls, first: Placement, last: Placement) -> StretchPlacement:
        """From the first frame's placement to the last one's. Positions in the coil count from
        the first frame's coil (a stretch normally lies in one coil)."""
        end = last.strip_end_m
        head = first.coil
        return cls(
            strip_start_m=first.strip_position_m, strip_end_m=end,
            coil=None if head is None else head.coil, coil_start_m=first.coil_position_m,
            coil_end_m=None if head is None else end - head.head_m,
            gate_deadline_wall_ns=first.gate_deadline_wall_ns, gate_until_wall_ns=last.gate_until_wall_ns,
        )
