"""Placing frames and defects on the strip and at the reject gate (runtime.placement), where the
verdict is made; the stretch of an uninspected report (domain.placement)."""
from __future__ import annotations

import pytest

from inspectd.domain.frames import CoilMark, FrameMeta
from inspectd.domain.placement import StretchPlacement
from inspectd.domain.verdicts import Defect, Verdict
from inspectd.line import LineConfig
from inspectd.runtime.placement import place

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
LINE = LineConfig(speed_m_per_s=10.0, gate_distance_m=5.0, mm_per_px=0.5)   # 400 rows: 0.2 m, 20 ms


def frame(index: int, coil: CoilMark | None = None, position: float | None = None, h: int = 400) -> FrameMeta:
    return FrameMeta(index, "cam0", 0, T0, h, 600, strip_position_m=position, coil=coil)


def test_a_frame_is_placed_by_its_index_and_its_defects_by_their_rows():
    d = Defect("scratches", 0.9, (10.0, -4.0, 50.0, 200.0), 100, "both", True)   # starts above row 0
    at = place(LINE, frame(3, CoilMark("C1", 0.4)), [d])
    assert at.strip_position_m == pytest.approx(0.6) and at.frame_length_m == pytest.approx(0.2)
    assert at.coil == CoilMark("C1", 0.4) and at.coil_position_m == pytest.approx(0.2)
    assert (at.gate_deadline_wall_ns, at.gate_until_wall_ns) == (T0 + 500 * MS, T0 + 520 * MS)
    (dp,) = at.defects
    assert dp.box_mm == pytest.approx((5.0, 598.0, 25.0, 700.0))          # y: strip millimetres
    assert dp.area_mm2 == pytest.approx(25.0)
    # its rows: the part above row 0 counts as row 0; row 200 is 0.1 m upstream, 10 ms later
    assert (dp.gate_deadline_wall_ns, dp.gate_until_wall_ns) == (T0 + 500 * MS, T0 + 510 * MS)


def test_a_frame_with_its_own_strip_position_and_a_fixed_frame_length():
    line = LineConfig(speed_m_per_s=2.0, gate_distance_m=1.0, mm_per_px=0.25, frame_length_m=0.1)
    at = place(line, frame(3, position=42.5, h=1024))
    assert (at.strip_position_m, at.frame_length_m, at.coil, at.coil_position_m) == (42.5, 0.1, None, None)
    assert (at.gate_deadline_wall_ns, at.gate_until_wall_ns) == (T0 + 500 * MS, T0 + 550 * MS)
    assert at.defects == () and at.strip_end_m == pytest.approx(42.6)


def test_a_verdict_carries_one_defect_placement_per_defect():
    m = frame(0)
    d = Defect("crazing", 0.5, (0.0, 0.0, 1.0, 1.0), 1, "detection")
    with pytest.raises(ValueError, match="1 defects but 0 defect placements"):
        Verdict(m, "reject", place(LINE, m), [d])


def test_a_stretch_spans_from_its_first_frame_to_the_end_of_its_last_in_the_first_frames_coil():
    a, b = CoilMark("A", 0.2), CoilMark("B", 0.8)
    first, last = place(LINE, frame(1, a)), place(LINE, frame(4, b))
    span = StretchPlacement.spanning(first, last)
    assert (span.strip_start_m, span.strip_end_m) == pytest.approx((0.2, 1.0))
    assert (span.coil, span.coil_start_m, span.coil_end_m) == ("A", 0.0, pytest.approx(0.8))
    assert (span.gate_deadline_wall_ns, span.gate_until_wall_ns) == (first.gate_deadline_wall_ns, last.gate_until_wall_ns)
    none = StretchPlacement.spanning(place(LINE, frame(1)), place(LINE, frame(2, a)))
    assert (none.coil, none.coil_start_m, none.coil_end_m) == (None, None, None)
