"""Placing a frame on the strip: where it and its defects lie, and when they pass the reject gate.

Done where the verdict is made (``InferenceStage.finish``) and where a frame is given up
(``Pipeline._uninspected``), with the line geometry of ``inspectd.line``; the result
(``domain.placement.Placement``) travels with the verdict or the report, and the bus copies
it into the messages. The gate deadline is therefore fixed by the line configuration the
runtime holds, not by the encoder.
"""
from __future__ import annotations

from collections.abc import Sequence

from inspectd.domain.frames import FrameMeta
from inspectd.domain.placement import DefectPlacement, Placement
from inspectd.domain.verdicts import Defect
from inspectd.line import LineConfig, gate_deadline_wall_ns, strip_position_m


def place(line: LineConfig, meta: FrameMeta, defects: Sequence[Defect] = ()) -> Placement:
    """The frame's strip (its own position, or the line's index x frame length), its coil
    position, its gate window, and each defect's box in strip millimetres and gate window."""
    pos = float(meta.strip_position_m) if meta.strip_position_m is not None else \
        strip_position_m(line, meta.index, meta.height)
    length = line.frame_length(meta.height)
    t = meta.capture_wall_ns
    return Placement(
        strip_position_m=pos,
        frame_length_m=length,
        coil=meta.coil,
        coil_position_m=None if meta.coil is None else pos - meta.coil.head_m,
        gate_deadline_wall_ns=gate_deadline_wall_ns(line, t),
        gate_until_wall_ns=gate_deadline_wall_ns(line, t, pos, pos + length),
        defects=tuple([_place_defect(line, d, t, pos) for d in defects]),
    )


def _place_defect(line: LineConfig, d: Defect, capture_wall_ns: int, pos: float) -> DefectPlacement:
    mm = line.mm_per_px
    x1, y1, x2, y2 = map(float, d.box)
    origin_mm = pos * 1000.0
    return DefectPlacement(
        box_mm=(x1 * mm, origin_mm + y1 * mm, x2 * mm, origin_mm + y2 * mm),
        area_mm2=int(d.area_px) * mm * mm,
        # The defect's own rows (those above the frame's first row count from it): a gate that
        # can act on part of a frame needs only these.
        gate_deadline_wall_ns=gate_deadline_wall_ns(line, capture_wall_ns, pos, pos + max(0.0, y1) * mm / 1000.0),
        gate_until_wall_ns=gate_deadline_wall_ns(line, capture_wall_ns, pos, pos + max(0.0, y2) * mm / 1000.0),
    )
