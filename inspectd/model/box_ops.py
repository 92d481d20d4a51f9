"""Box geometry on numpy arrays of xyxy boxes in continuous pixel coordinates (no +1): the one
IoU that the runtime (per-tile NMS, cross-tile fusion, merge) and the metrics use.
``model/boxes.py`` holds the torch versions that the exported graph and the loss need."""
from __future__ import annotations

import numpy as np


def box_area(b: np.ndarray) -> np.ndarray:
    """Areas of boxes ``b`` [..., 4]; an inverted box has area 0."""
    # np.maximum, not np.clip: the same values, without clip's Python-level argument handling.
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def pairwise_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Ka, Kb] intersection areas of boxes a [Ka, 4] and b [Kb, 4]."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.maximum(w, 0) * np.maximum(h, 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Ka, Kb] IoU of boxes a [Ka, 4] and b [Kb, 4], in their dtype; 0 where both are empty."""
    inter = pairwise_intersection(a, b)
    return inter / np.maximum(box_area(a)[:, None] + box_area(b)[None, :] - inter, 1e-9)
