#!/usr/bin/env python3
"""Fit the detection anchors to a dataset's boxes (k-means on width/height, YOLOv5's metric).

    python pipelines/fit_anchors.py --data ../shared/data/neu --split train.txt
    python pipelines/fit_anchors.py --data my-yolo-export          # data.yaml's train:

`inspectd train` does this on its own when fewer than 98 % of the training boxes fit the
preset's anchors (inspectd/training/anchors.py); this script shows the fit for any folder.

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

from inspectd.data.layout import open_layout  # noqa: E402
from inspectd.training.anchors import fit, ratio_metric  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/neu", help="data folder, NEU or YOLO layout")
    p.add_argument("--split", help="a list file (or YOLO folder) instead of the folder's own train split")
    p.add_argument("--thr", type=float, default=4.0, help="anchor ratio threshold (loss anchor_t)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    layout = open_layout(a.data)
    names = layout.class_names()
    wh = []
    for item in layout.items("train", a.split):
        b = layout.load(item, names, 1).boxes
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
