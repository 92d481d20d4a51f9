"""Class-aware NMS: suppression, class separation, empty input, thousands of boxes."""
import numpy as np
import torch

from inspectd.model.boxes import box_iou
from inspectd.model.nms import batched_nms, nms


def reference_nms(boxes, scores, classes, thr):
    """Textbook greedy NMS with a Python loop, for comparison only."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        ok = True
        for j in kept:
            if classes[i] == classes[j] and float(box_iou(boxes[i:i + 1], boxes[j:j + 1])) > thr:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def test_overlapping_same_class_suppressed():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5)
    assert keep.tolist() == [0, 2]


def test_other_classes_kept():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11.0]])
    scores = torch.tensor([0.9, 0.8])
    keep = batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5)
    assert sorted(keep.tolist()) == [0, 1]


def test_chain_is_greedy_not_fast_nms():
    # A suppresses B, B would suppress C, but C overlaps A too little: greedy keeps A and C.
    boxes = torch.tensor([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]


def test_empty_input():
    keep = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert keep.numel() == 0


def test_thousands_of_boxes_match_reference():
    rng = np.random.default_rng(0)
    n = 2000
    xy = rng.uniform(0, 400, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32)
    classes = torch.tensor(rng.integers(0, 3, n))
    keep = batched_nms(boxes, scores, classes, 0.45)
    assert keep.tolist() == reference_nms(boxes, scores, classes, 0.45)
