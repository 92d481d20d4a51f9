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
    # Coordinates as contiguous rows first: broadcasting the strided columns of a [K, 4] array
    # makes numpy copy them through its buffers for every operation (most of the cost here).
    ax1, ay1, ax2, ay2 = np.ascontiguousarray(a.T)[:, :, None]
    bx1, by1, bx2, by2 = np.ascontiguousarray(b.T)
    w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    return np.maximum(w, 0) * np.maximum(h, 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Ka, Kb] IoU of boxes a [Ka, 4] and b [Kb, 4], in their dtype; 0 where both are empty."""
    inter = pairwise_intersection(a, b)
    area_a = box_area(a)
    area_b = area_a if b is a else box_area(b)      # NMS: boxes against themselves
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
