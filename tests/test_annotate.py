"""Annotated video: boxes, mask overlay and banner drawn; the file is a readable video."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspectd.domain.frames import FrameMeta
from inspectd.domain.verdicts import Defect, Verdict
from inspectd.errors import InspectdError
from inspectd.line import LineConfig
from inspectd.runtime.annotate import OK_COLOUR, REJECT_COLOUR, Annotator, class_colour, draw_verdict
from inspectd.runtime.placement import place


def _verdict(index: int, defects: list[Defect]) -> Verdict:
    meta = FrameMeta(index=index, camera="cam0", capture_ns=0, capture_wall_ns=0, height=240, width=320)
    return Verdict(meta=meta, status="reject" if defects else "ok", placement=place(LineConfig(), meta, defects),
                   defects=defects)


def test_draw_marks_box_mask_and_banner():
    image = np.full((240, 320), 128, np.uint8)
    defect = Defect(cls="scratches", score=0.9, box=(100, 100, 200, 180), area_px=500, branch="both", rejects=True)
    labels = np.zeros((240, 320), np.uint8)
    labels[120:160, 120:180] = 3
    out = draw_verdict(image, _verdict(7, [defect]), labels, ["background", "inclusion", "patches", "scratches"])
    assert out.shape == (240, 320, 3) and out.dtype == np.uint8
    assert tuple(out[140, 100]) == class_colour("scratches")          # box edge in the class colour
    inside = out[140, 150].astype(int)
    assert np.abs(inside - 128).max() > 20                              # mask tints the pixels
    assert tuple(out[2, 2]) == REJECT_COLOUR                             # red banner
    assert tuple(out[230, 300]) == (128, 128, 128)                       # elsewhere untouched
    ok = draw_verdict(image, _verdict(8, []))
    assert tuple(ok[2, 2]) == OK_COLOUR


def test_annotator_writes_readable_video(tmp_path):
    out = tmp_path / "annotated.mp4"
    ann = Annotator(out, fps=10)
    for i in range(6):
        img = np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        ann.submit(img, _verdict(i, []))
    ann.close()
    assert ann.path.exists()
    cap = cv2.VideoCapture(str(ann.path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 6


def test_bad_annotate_names(tmp_path):
    with pytest.raises(InspectdError, match="must end in .mp4 or .avi"):
        Annotator(tmp_path / "x.mkv", fps=10)
    with pytest.raises(InspectdError, match="does not exist"):
        Annotator(tmp_path / "missing" / "x.mp4", fps=10)
