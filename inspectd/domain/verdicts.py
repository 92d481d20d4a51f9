"""What inspection concluded about frames, before it is serialised for the wire: a ``Verdict``
per inspected frame, an ``Uninspected`` report per stretch of frames that were not inspected.
Both carry their placement on the strip and at the reject gate (``domain.placement``), made by
the runtime; the bus only encodes them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from inspectd.domain.frames import FrameMeta
from inspectd.domain.placement import Placement, StretchPlacement

Branch = Literal["detection", "segmentation", "both"]
Status = Literal["ok", "reject"]


@dataclass(slots=True)
class Defect:
    cls: str                                  # class name as in shared/data/neu
    score: float                              # 0..1
    box: tuple[float, float, float, float]    # x1, y1, x2, y2 in frame pixels
    area_px: int                              # segmented pixels, or box area if no mask
    branch: Branch                            # which branch of the network saw it
    rejects: bool = False                     # whether this defect alone makes the frame a reject


@dataclass(slots=True)
class Verdict:
    meta: FrameMeta
    status: Status
    placement: Placement          # the frame's and each defect's strip and gate window (runtime.placement)
    defects: list[Defect] = field(default_factory=list)
    inference_start_ns: int = 0   # monotonic ns when the inference stage took the frame (tiling included)
    inference_end_ns: int = 0     # monotonic ns when merge finished

    def __post_init__(self) -> None:
        if len(self.placement.defects) != len(self.defects):
            raise ValueError(f"verdict of frame {self.meta.index}: {len(self.defects)} defects but "
                             f"{len(self.placement.defects)} defect placements")


@dataclass(slots=True)
class Uninspected:
    """Frames ``first.index .. last.index`` (``count`` of them) were not inspected, for ``reason``
    (a token of ``bus.messages.UNINSPECTED_REASONS``)."""

    first: FrameMeta
    last: FrameMeta
    count: int
    reason: str
    placement: StretchPlacement
