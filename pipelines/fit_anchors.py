#!/usr/bin/env python3
"""Fit the detection anchors to a dataset's boxes (k-means on width/height, YOLOv5's metric).

    python pipelines/fit_anchors.py --data ../shared/data/neu --split train.txt

The metric is YOLOv5's: a box fits an anchor when both side ratios are within --thr (the
loss's anchor_t); k-means runs on 1 - best-ratio, then the anchors are sorted by area and split
three per stride (8, 16, 32). Prints the YAML `anchors:` value and the share of boxes fitted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspectd.data.neu import parse_voc, read_stems  # noqa: E402
from inspectd.model.config import NEU_CLASSES  # noqa: E402


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    r = wh[:, None] / anchors[None]
    return np.minimum(r, 1 / r).min(2)  # [n, k]: worst side ratio of each box to each anchor


def fit(wh: np.ndarray, k: int = 9, iters: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    anchors = wh[rng.choice(len(wh), k, replace=False)].astype(np.float64)
    for _ in range(iters):
        assign = ratio_metric(wh, anchors).argmax(1)
        new = np.array([np.exp(np.log(wh[assign == j]).mean(0)) if (assign == j).any() else anchors[j]
                        for j in range(k)])
        if np.allclose(new, anchors):
            break
        anchors = new
    return anchors[np.argsort(anchors.prod(1))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/neu", help="NEU-style folder")
    p.add_argument("--split", default="train.txt", help="stem list inside --data")
    p.add_argument("--thr", type=float, default=4.0, help="anchor ratio threshold (loss anchor_t)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    root = Path(a.data)
    wh = []
    for s in read_stems(root / a.split):
        b, _ = parse_voc(root / "annotations" / f"{s}.xml", NEU_CLASSES)
        wh.append(b[:, 2:] - b[:, :2])
    wh = np.concatenate(wh).clip(2)
    anchors = fit(wh, seed=a.seed)
    best = ratio_metric(wh, anchors).max(1)
    fitted = (best > 1 / a.thr).mean()
    rows = np.round(anchors).astype(int).reshape(3, 6).tolist()
    print(f"# {len(wh)} boxes; {fitted:.1%} fit an anchor within ratio {a.thr}; mean best ratio {best.mean():.3f}")
    print(f"anchors: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
