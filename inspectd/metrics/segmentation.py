"""Segmentation metrics from one confusion matrix accumulated over a whole set.

IoU per class is ``TP / (TP + FP + FN)`` read off the summed matrix, not a mean of per-image
IoUs: small defects in many images then weigh by their pixels, as in the NEU-Seg papers.
Pixels whose target is ``ignore_index`` are left out entirely (whatever was predicted there).
A class that appears neither in the targets nor in the predictions has IoU ``NaN`` (0/0, no
evidence either way) and is left out of the mean IoU; a class that is predicted but never
present has IoU 0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


class ConfusionMatrix:
    """``matrix[t, p]``: pixels of target class ``t`` predicted as class ``p`` (int64)."""

    def __init__(self, class_names: list[str], ignore_index: int = 255):
        if not class_names:
            raise ValueError("ConfusionMatrix needs at least one class name")
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add class-index maps ``[H,W]`` or ``[N,H,W]`` of the same shape (numpy or torch)."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
        t = target.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        keep = t != self.ignore_index
        t, p = t[keep], p[keep]
        n = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= n):
            raise ValueError(f"target values must be 0..{n - 1} or {self.ignore_index}: found {t.min()}..{t.max()}")
        if p.size and (p.min() < 0 or p.max() >= n):
            raise ValueError(f"prediction values must be 0..{n - 1}: found {p.min()}..{p.max()}")
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix over the same classes (e.g. from another worker)."""
        if other.class_names != self.class_names:
            raise ValueError("cannot merge confusion matrices over different classes")
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Per class ``TP / (TP + FP + FN)``; ``NaN`` where the class is in neither pred nor target."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / denom, math.nan)

    def miou(self) -> float:
        """Mean IoU over classes whose IoU is defined; ``NaN`` if none is."""
        iou = self.iou()
        ok = ~np.isnan(iou)
        return float(iou[ok].mean()) if ok.any() else math.nan

    def pixel_accuracy(self) -> float:
        """Correct pixels over all counted (non-ignored) pixels; ``NaN`` if none."""
        total = int(self.matrix.sum())
        return float(np.trace(self.matrix) / total) if total else math.nan

    def normalized(self) -> np.ndarray:
        """Each row divided by its sum (the fraction of a target class predicted as each class)."""
        rows = self.matrix.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rows > 0, self.matrix / np.maximum(rows, 1), 0.0)

    def to_dict(self) -> dict[str, Any]:
        nan_to_none = lambda x: None if math.isnan(x) else float(x)  # noqa: E731
        return {
            "miou": nan_to_none(self.miou()),
            "iou": {n: nan_to_none(v) for n, v in zip(self.class_names, self.iou())},
            "pixel_accuracy": nan_to_none(self.pixel_accuracy()),
            "confusion_matrix": {
                "classes": list(self.class_names),
                "rows": "target",
                "columns": "prediction",
                "pixels": self.matrix.tolist(),
            },
            "ignore_index": self.ignore_index,
        }


__all__ = ["ConfusionMatrix"]
