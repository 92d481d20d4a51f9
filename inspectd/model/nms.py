"""Class-aware non-maximum suppression without a per-box Python loop.

Greedy NMS keeps box i (boxes sorted by score) iff no *kept* higher-scored box overlaps it by
more than the threshold. That rule is a fixed point of ``keep = ~any(over & keep[:, None], 0)``;
iterating it from "keep all" settles one more prefix position per pass, and in practice
converges in a handful of passes (the depth of the longest suppression chain), each pass one
vectorised matrix operation. The result is exactly greedy NMS.
"""
from __future__ import annotations

import torch

from inspectd.model.boxes import box_iou


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept, highest score first. boxes [K, 4] xyxy, scores [K]."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order].float()
    over = box_iou(b, b).triu_(diagonal=1) > iou_threshold  # over[j, i]: j outranks and overlaps i
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        new_keep = ~(over & keep[:, None]).any(0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each class: boxes of different classes never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    # Shift each class into its own coordinate range so that cross-class IoU is 0.
    offset = classes.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)
