"""Detection metrics: average precision at IoU 0.5 and 0.50:0.05:0.95, precision and recall.

Conventions (follow COCO where they differ from elsewhere, so the numbers can be checked
against pycocotools):

- Boxes are ``[x1, y1, x2, y2]`` in continuous pixel coordinates: width is ``x2 - x1`` (no
  ``+ 1`` as in the old Pascal VOC devkit). A box with zero or negative size has IoU 0 with
  everything.
- Matching, per image and class, at each IoU threshold: detections in descending score order
  each take the unmatched ground-truth box of their class with the highest IoU, if that IoU
  is at least the threshold; every ground-truth box is matched at most once. A second
  detection of an already matched box is a false positive. Like COCO, the threshold test is
  ``IoU >= t``. Unlike COCO, no per-image cap on detections is applied (the decoder's
  ``max_det`` is the cap) and there are no "crowd" or ignored ground-truth boxes.
- Detections of all images are ranked together by score per class (stable sort, images in
  the order they were added) to build the precision/recall curve.
- A class with no ground-truth box in the whole set has AP ``NaN`` (there is nothing to
  recall) and is left out of every mean, as COCO does; a class with ground truth but no
  detections has AP 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspectd.model import box_ops

# Exactly COCOeval's thresholds (including their floating-point values) so that matches at
# IoU values on a threshold agree with pycocotools.
IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
# COCO's 101 recall points 0, 0.01, ..., 1.
RECALL_POINTS: np.ndarray = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of xyxy boxes in continuous coordinates (no +1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return box_ops.box_iou(a, b)


def ap_all_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, every recall step counted (Pascal VOC 2010+).

    ``recall``/``precision`` are the raw cumulative values in score order. The envelope at
    recall r is the highest precision at any recall >= r; AP is the sum over recall steps of
    the step width times the envelope there.
    """
    if recall.size == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def interpolated_precision_101(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Envelope precision at COCO's 101 recall points (0 where the recall is never reached)."""
    out = np.zeros(RECALL_POINTS.size)
    if recall.size == 0:
        return out
    env = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    ok = idx < recall.size
    out[ok] = env[idx[ok]]
    return out


def ap_101_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's AP: mean envelope precision at recall 0, 0.01, ..., 1."""
    return float(interpolated_precision_101(recall, precision).mean())


@dataclass
class PRCurve:
    """Raw precision/recall at IoU 0.5 for one class, one point per detection in score order."""

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(x: float) -> float | None:
    """JSON has no NaN: undefined values become null."""
    x = float(x)
    return None if math.isnan(x) else x


@dataclass
class DetectionMetrics:
    """Detection results over a whole set. Arrays are indexed by class (model order).

    Values that are undefined are ``NaN`` (``null`` in JSON): AP and recall of a class with no
    ground truth, precision where nothing scored at or above the operating threshold.
    """

    class_names: list[str]
    num_gt: np.ndarray = field(metadata={"doc": "ground-truth boxes per class"})
    num_images: int = field(metadata={"doc": "images added"})
    ap50: np.ndarray = field(metadata={"doc": "AP at IoU 0.5, all-point interpolation (Pascal VOC 2010+)"})
    ap50_101: np.ndarray = field(metadata={"doc": "AP at IoU 0.5, COCO 101-point interpolation"})
    ap: np.ndarray = field(
        metadata={"doc": "[classes, 10] AP at IoU 0.50, 0.55, ..., 0.95, COCO 101-point interpolation"}
    )
    map50: float = field(metadata={"doc": "mean of ap50 over classes with ground truth (all-point)"})
    map50_101: float = field(metadata={"doc": "mean of ap50_101 over classes with ground truth (101-point)"})
    map50_95: float = field(
        metadata={
            "doc": "mean over classes with ground truth of AP averaged over IoU 0.50:0.05:0.95, "
            "COCO 101-point interpolation (pycocotools' stats[0])"
        }
    )
    score_threshold: float = field(metadata={"doc": "operating threshold of precision/recall"})
    precision: np.ndarray = field(metadata={"doc": "per class, IoU 0.5, detections scoring >= score_threshold"})
    recall: np.ndarray = field(metadata={"doc": "per class, IoU 0.5, detections scoring >= score_threshold"})
    precision_all: float = field(metadata={"doc": "precision pooled over all classes (micro average)"})
    recall_all: float = field(metadata={"doc": "recall pooled over all classes (micro average)"})
    tp: np.ndarray = field(metadata={"doc": "true positives per class at the operating threshold, IoU 0.5"})
    fp: np.ndarray = field(metadata={"doc": "false positives per class at the operating threshold, IoU 0.5"})
    pr_curves: list[PRCurve] = field(metadata={"doc": "raw PR curve per class at IoU 0.5"})

    @property
    def iou_thresholds(self) -> np.ndarray:
        return IOU_THRESHOLDS

    @property
    def ap50_95(self) -> np.ndarray:
        """Per class AP averaged over IoU 0.50:0.05:0.95 (101-point)."""
        return self.ap.mean(axis=1)

    def to_dict(self, curves: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict; per-class values are keyed by class name.

        ``curves=True`` adds each class's envelope precision at the 101 recall points.
        """
        names = self.class_names
        per = lambda arr: {n: _json_float(v) for n, v in zip(names, arr)}  # noqa: E731
        out: dict[str, Any] = {
            "map50": _json_float(self.map50),
            "map50_interpolation": "all-point",
            "map50_101": _json_float(self.map50_101),
            "map50_95": _json_float(self.map50_95),
            "map50_95_interpolation": "101-point",
            "ap50": per(self.ap50),
            "ap50_101": per(self.ap50_101),
            "ap50_95": per(self.ap50_95),
            "ap_per_iou": {
                "iou_thresholds": [round(float(t), 2) for t in IOU_THRESHOLDS],
                "interpolation": "101-point",
                "ap": {n: [_json_float(v) for v in row] for n, row in zip(names, self.ap)},
            },
            "score_threshold": float(self.score_threshold),
            "precision": per(self.precision),
            "recall": per(self.recall),
            "precision_all": _json_float(self.precision_all),
            "recall_all": _json_float(self.recall_all),
            "tp": {n: int(v) for n, v in zip(names, self.tp)},
            "fp": {n: int(v) for n, v in zip(names, self.fp)},
            "num_gt": {n: int(v) for n, v in zip(names, self.num_gt)},
            "num_images": int(self.num_images),
        }
        if curves:
            out["pr_curves"] = {
                "recall": [round(float(r), 2) for r in RECALL_POINTS],
                "precision": {
                    n: [float(p) for p in interpolated_precision_101(c.recall, c.precision)]
                    for n, c in zip(names, self.pr_curves)
                },
            }
        return out


class DetectionEvaluator:
    """Accumulates detections and ground truth image by image; ``compute`` gives the metrics.

    Matching happens in ``add`` (only a score, a class and ten match flags per detection are
    kept), so ``compute`` is cheap and may be called at several operating thresholds.
    """

    def __init__(self, class_names: list[str]):
        if not class_names:
            raise ValueError("DetectionEvaluator needs at least one class name")
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self._scores: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self._matched: list[np.ndarray] = []  # [K, T] bool per image
        self._num_gt = np.zeros(self.num_classes, dtype=np.int64)
        self.num_images = 0

    def _check_classes(self, cls: np.ndarray, what: str) -> None:
        if cls.size and (cls.min() < 0 or cls.max() >= self.num_classes):
            raise ValueError(f"{what} class index out of range 0..{self.num_classes - 1}: {cls.min()}..{cls.max()}")

    def add(
        self,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        pred_classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
    ) -> None:
        """Add one image: predictions ``[K,4]`` xyxy, ``[K]`` scores, ``[K]`` class indices;
        ground truth ``[M,4]`` xyxy, ``[M]`` class indices (numpy or anything ``np.asarray`` takes)."""
        pb = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
        ps = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        pc = np.asarray(pred_classes).reshape(-1).astype(np.int64)
        gb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gc = np.asarray(gt_classes).reshape(-1).astype(np.int64)
        if not (len(pb) == len(ps) == len(pc)):
            raise ValueError(f"prediction lengths differ: boxes {len(pb)}, scores {len(ps)}, classes {len(pc)}")
        if len(gb) != len(gc):
            raise ValueError(f"ground-truth lengths differ: boxes {len(gb)}, classes {len(gc)}")
        self._check_classes(pc, "prediction")
        self._check_classes(gc, "ground-truth")

        # Score order within the image (stable, like COCO's mergesort) so that the
        # cross-image ranking in compute() breaks ties the same way.
        order = np.argsort(-ps, kind="mergesort")
        pb, ps, pc = pb[order], ps[order], pc[order]
        nt = IOU_THRESHOLDS.size
        matched = np.zeros((len(pb), nt), dtype=bool)
        if len(pb) and len(gb):
            iou = box_iou(pb, gb)
            iou[pc[:, None] != gc[None, :]] = -1.0  # only same-class pairs can match
            # A detection whose best IoU is below the lowest threshold can neither match nor
            # take a box from another detection, so only the rest go through the greedy loop.
            candidates = np.flatnonzero(iou.max(axis=1) >= IOU_THRESHOLDS[0])
            taken = np.zeros((nt, len(gb)), dtype=bool)
            rows = np.arange(nt)
            for k in candidates:  # ascending index = descending score
                eligible = ~taken & (iou[k][None, :] >= IOU_THRESHOLDS[:, None])  # [T, M]
                masked = np.where(eligible, iou[k][None, :], -1.0)
                best = masked.argmax(axis=1)
                hit = eligible[rows, best]
                matched[k, hit] = True
                taken[rows[hit], best[hit]] = True
        self._scores.append(ps)
        self._classes.append(pc)
        self._matched.append(matched)
        self._num_gt += np.bincount(gc, minlength=self.num_classes)
        self.num_images += 1

    def compute(self, score_threshold: float = 0.25) -> DetectionMetrics:
        """Metrics over every image added so far; precision/recall at ``score_threshold``."""
        nc, nt = self.num_classes, IOU_THRESHOLDS.size
        if self._scores:
            scores = np.concatenate(self._scores)
            classes = np.concatenate(self._classes)
            matched = np.concatenate(self._matched)
        else:
            scores, classes, matched = np.zeros(0), np.zeros(0, np.int64), np.zeros((0, nt), bool)

        ap50 = np.full(nc, math.nan)
        ap = np.full((nc, nt), math.nan)
        precision = np.full(nc, math.nan)
        recall = np.full(nc, math.nan)
        tp_at = np.zeros(nc, dtype=np.int64)
        fp_at = np.zeros(nc, dtype=np.int64)
        curves: list[PRCurve] = []
        for c in range(nc):
            sel = np.flatnonzero(classes == c)
            order = sel[np.argsort(-scores[sel], kind="mergesort")]
            s = scores[order]
            tp = np.cumsum(matched[order], axis=0)  # [K, T]
            fp = np.cumsum(~matched[order], axis=0)
            n_gt = int(self._num_gt[c])
            with np.errstate(divide="ignore", invalid="ignore"):
                rec = tp / n_gt if n_gt else np.full(tp.shape, math.nan)
                prec = tp / np.maximum(tp + fp, 1)
            curves.append(PRCurve(recall=rec[:, 0].copy(), precision=prec[:, 0].copy(), scores=s.copy()))
            if n_gt:
                ap50[c] = ap_all_point(rec[:, 0], prec[:, 0])
                ap[c] = [ap_101_point(rec[:, t], prec[:, t]) for t in range(nt)]
            n_above = int(np.searchsorted(-s, -score_threshold, side="right"))  # s >= threshold
            if n_above:
                tp_at[c], fp_at[c] = tp[n_above - 1, 0], fp[n_above - 1, 0]
                precision[c] = tp_at[c] / n_above
            if n_gt:
                recall[c] = tp_at[c] / n_gt
        n_pred = int(tp_at.sum() + fp_at.sum())
        n_gt_all = int(self._num_gt.sum())
        return DetectionMetrics(
            class_names=list(self.class_names),
            num_gt=self._num_gt.copy(),
            num_images=self.num_images,
            ap50=ap50,
            ap50_101=ap[:, 0].copy(),
            ap=ap,
            map50=_nanmean(ap50),
            map50_101=_nanmean(ap[:, 0]),
            map50_95=_nanmean(ap.mean(axis=1)),
            score_threshold=float(score_threshold),
            precision=precision,
            recall=recall,
            precision_all=float(tp_at.sum() / n_pred) if n_pred else math.nan,
            recall_all=float(tp_at.sum() / n_gt_all) if n_gt_all else math.nan,
            tp=tp_at,
            fp=fp_at,
            pr_curves=curves,
        )


__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_POINTS",
    "DetectionEvaluator",
    "DetectionMetrics",
    "PRCurve",
    "ap_101_point",
    "ap_all_point",
    "box_iou",
    "interpolated_precision_101",
]
