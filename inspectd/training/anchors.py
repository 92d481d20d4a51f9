"""Detection anchors for a data set's boxes: YOLOv5's ratio metric, its check and k-means refit.

A box can only be learned by an anchor whose width and height ratios to it are both within the
loss's ``anchor_t`` (4 by default). The presets' anchors were fitted to NEU's boxes; a plant's own
defects may be far smaller, longer or flatter, so training checks the share of training boxes
some anchor can learn (YOLOv5's "best possible recall") and refits the nine anchors when it is
below ``MIN_RECALL``, as YOLOv5's autoanchor does.
"""
from __future__ import annotations

import numpy as np

MIN_RECALL = 0.98


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)  # [n, k]: worst side ratio of each box to each anchor


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, thr: float) -> float:
    """Share of boxes that fit at least one anchor within ratio ``thr``."""
    return float((ratio_metric(wh, anchors).max(1) > 1 / thr).mean()) if len(wh) else 1.0


def fit(wh: np.ndarray, k: int = 9, iters: int = 300, seed: int = 0) -> np.ndarray:
    """k-means on the ratio metric (geometric means as centres), sorted by area."""
    rng = np.random.default_rng(seed)
    anchors = wh[rng.choice(len(wh), k, replace=len(wh) < k)].astype(np.float64)
    for _ in range(iters):
        assign = ratio_metric(wh, anchors).argmax(1)
        new = np.array([np.exp(np.log(wh[assign == j]).mean(0)) if (assign == j).any() else anchors[j]
                        for j in range(k)])
        if np.allclose(new, anchors):
            break
        anchors = new
    return anchors[np.argsort(anchors.prod(1))]


def check_anchors(wh: np.ndarray, anchors: list[list[int]], thr: float,
                  seed: int = 0) -> tuple[list[list[int]], str]:
    """The anchors to train with (the given ones, or refitted ones when too few boxes fit them)
    and a line saying which and why. ``anchors``: 3 lists of 3 (w, h) pairs, strides 8/16/32."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2).clip(2)
    current = np.asarray(anchors, np.float64).reshape(-1, 2)
    bpr = best_possible_recall(wh, current, thr)
    if bpr >= MIN_RECALL or len(wh) < len(current):
        return anchors, f"anchors kept: {bpr:.1%} of {len(wh)} training boxes fit one"
    new = fit(wh, k=len(current), seed=seed)
    rows = np.round(new).astype(int).clip(1).reshape(3, -1).tolist()
    new_bpr = best_possible_recall(wh, np.asarray(rows, np.float64).reshape(-1, 2), thr)
    if new_bpr <= bpr:
        return anchors, f"anchors kept: {bpr:.1%} of {len(wh)} training boxes fit one (a refit did no better)"
    return rows, f"anchors refitted to the data: {bpr:.1%} -> {new_bpr:.1%} of {len(wh)} training boxes fit one"
