"""CIoU against values worked out by hand (boxes as cx, cy, w, h)."""
import math

import pytest
import torch

from inspectd.model.boxes import box_iou, ciou


def c(a, b):
    return float(ciou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0])


def test_identical_boxes():
    assert c([5, 5, 4, 2], [5, 5, 4, 2]) == pytest.approx(1.0, abs=1e-6)


def test_disjoint_boxes():
    # Two 2x2 boxes centred 4 apart on x: IoU 0; rho^2 = 16; enclosing box 6 x 2 -> c^2 = 40;
    # same aspect -> v = 0. CIoU = 0 - 16/40 = -0.4.
    assert c([1, 1, 2, 2], [5, 1, 2, 2]) == pytest.approx(-0.4, abs=1e-6)


def test_nested_boxes():
    # 2x2 inside 4x4, same centre: IoU = 4/16; rho = 0; same aspect -> CIoU = 0.25.
    assert c([0, 0, 4, 4], [0, 0, 2, 2]) == pytest.approx(0.25, abs=1e-6)


def test_different_aspect_ratios():
    # 2x1 and 1x2, same centre: inter 1, union 3 -> IoU 1/3; rho = 0;
    # v = 4/pi^2 (atan(1/2) - atan(2))^2 = 0.405285 * 0.414094 = 0.167826;
    # alpha = v / (1 - 1/3 + v) = 0.201111; alpha v = 0.033752;
    # CIoU = 1/3 - alpha v = 0.299582.
    v = 4 / math.pi**2 * (math.atan(0.5) - math.atan(2)) ** 2
    assert v == pytest.approx(0.167826, abs=1e-6)
    assert c([0, 0, 2, 1], [0, 0, 1, 2]) == pytest.approx(0.299582, abs=1e-5)


def test_offset_overlap():
    # 4x4 at (2,2) and 4x4 at (4,2): inter 2x4 = 8, union 24 -> IoU 1/3; rho^2 = 4;
    # enclosing 6 x 4 -> c^2 = 52; v = 0 -> CIoU = 1/3 - 4/52 = 0.256410.
    assert c([2, 2, 4, 4], [4, 2, 4, 4]) == pytest.approx(1 / 3 - 4 / 52, abs=1e-6)


def test_gradient_flows():
    a = torch.tensor([[2.0, 2.0, 4.0, 4.0]], requires_grad=True)
    (1 - ciou(a, torch.tensor([[4.0, 2.0, 4.0, 3.0]]))).sum().backward()
    assert a.grad is not None and float(a.grad[0, 0]) < 0  # moving right reduces the loss


def test_box_iou_pairwise():
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 4, 4.0]])
    b = torch.tensor([[1, 1, 3, 3], [10, 10, 11, 11.0]])
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[1, 0] == pytest.approx(4 / 16)
    assert float(iou[:, 1].abs().max()) == 0
