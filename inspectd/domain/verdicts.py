"""The result of inspecting one frame, before it is serialised for the wire."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from inspectd.domain.frames import FrameMeta

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
    defects: list[Defect] = field(default_factory=list)
    inference_start_ns: int = 0   # monotonic ns when the inference stage took the frame (tiling included)
    inference_end_ns: int = 0     # monotonic ns when merge finished
