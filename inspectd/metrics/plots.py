"""PNG plots of evaluation and training results.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting neither needs a
display nor touches matplotlib's global backend or figure registry of the calling program.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inspectd.metrics.detection import DetectionMetrics
from inspectd.metrics.segmentation import ConfusionMatrix


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def plot_pr_curves(metrics: DetectionMetrics, path: str | Path) -> Path:
    """Precision-recall curve at IoU 0.5 per class (raw curve and its envelope) in one PNG.

    Classes without ground truth have no curve (their AP is undefined) and are named in the
    legend as such.
    """
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(metrics.class_names))]
    for name, curve, ap, n_gt, color in zip(
        metrics.class_names, metrics.pr_curves, metrics.ap50, metrics.num_gt, colors
    ):
        if n_gt == 0:
            ax.plot([], [], color=color, label=f"{name}: no ground truth")
            continue
        label = f"{name}: AP50 {ap:.3f} ({int(n_gt)} boxes)"
        if curve.recall.size == 0:
            ax.plot([], [], color=color, label=label + ", no detections")
            continue
        envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
        ax.plot(curve.recall, curve.precision, color=color, alpha=0.3, linewidth=0.8)
        # The envelope (what the AP integrates) holds its first value back to recall 0.
        ax.step(np.concatenate(([0.0], curve.recall)), np.concatenate((envelope[:1], envelope)),
                where="pre", color=color, linewidth=1.6, label=label)
    mean = "n/a" if math.isnan(metrics.map50) else f"{metrics.map50:.3f}"
    ax.set_title(f"Precision-recall at IoU 0.5; mAP@0.5 {mean} (all-point interpolation)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_confusion_matrix(cm: ConfusionMatrix, path: str | Path, normalize: bool = True) -> Path:
    """Heat map of the segmentation confusion matrix (rows target, columns prediction).

    ``normalize`` colours each cell by its share of the target row (so a rare class is as
    readable as the background); each cell is labelled with the share and the pixel count.
    """
    n = cm.num_classes
    counts = cm.matrix
    shown = cm.normalized() if normalize else counts.astype(np.float64)
    fig = Figure(figsize=(1.6 * n + 2.5, 1.4 * n + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, shown.max()))
    fig.colorbar(image, ax=ax, label="share of target pixels" if normalize else "pixels")
    ax.set_xticks(range(n), cm.class_names, rotation=30, ha="right")
    ax.set_yticks(range(n), cm.class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("target")
    threshold = 0.5 * (1 if normalize else max(1, shown.max()))
    for t in range(n):
        for p in range(n):
            label = f"{shown[t, p]:.3f}\n{counts[t, p]:,}" if normalize else f"{counts[t, p]:,}"
            ax.text(p, t, label, ha="center", va="center", fontsize="small",
                    color="white" if shown[t, p] > threshold else "black")
    miou = cm.miou()
    ax.set_title(f"Pixel confusion matrix; mIoU {'n/a' if math.isnan(miou) else f'{miou:.3f}'}")
    return _save(fig, path)


_GROUPS = (
    (re.compile(r"(^|[_/])(lr|learning_rate)($|[_/])"), "learning rate"),
    (re.compile(r"loss|^train[_/]"), "loss"),
    (re.compile(r"(^|[_/])(map|ap\d*$)"), "mAP"),
    (re.compile(r"(^|[_/])ap\d*[_/]"), "AP per class"),
    (re.compile(r"(^|[_/])(miou|pixel_acc)"), "mIoU"),
    (re.compile(r"(^|[_/])iou[_/]"), "IoU per class"),
    (re.compile(r"precision|recall"), "precision / recall"),
    (re.compile(r"elapsed|(^|[_/])time($|[_/])"), "time"),
)


def metric_group(name: str) -> str:
    """Which subplot a training-log key goes to, by its name (first rule that fits):

    ``lr``/``learning_rate`` -> learning rate; ``...loss...`` or ``train_...`` (the trainer's
    loss parts) -> loss; ``map...``, ``ap50`` -> mAP; ``ap50_<class>`` -> AP per class;
    ``miou``, ``pixel_accuracy`` -> mIoU; ``iou_<class>`` -> IoU per class; precision, recall
    -> precision / recall; ``elapsed...``, ``time`` -> time. Each may follow a ``val_`` or
    ``val/`` prefix. Other keys go to the subplot of their ``group/`` prefix, else to one of
    their own.
    """
    for pattern, group in _GROUPS:
        if pattern.search(name):
            return group
    if "/" in name:
        return name.split("/", 1)[0]
    return name


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, x_key: str = "epoch",
                         stage_key: str = "stage") -> Path:
    """Training curves from one dict per epoch (``{"epoch": 3, "loss": 1.2, "val_map50": 0.4}``).

    The x axis is ``rows[i][x_key]`` where present, else ``i + 1``. Every other numeric key is
    a line in the subplot of its ``metric_group``; missing, non-numeric and non-finite values
    are skipped (validation may run only every few epochs). Where the string ``stage_key``
    changes from row to row, every subplot gets a dotted line labelled with the new stage.
    """
    series: dict[str, tuple[list[float], list[float]]] = {}
    stage_starts: list[tuple[float, str]] = []  # (x, name) where a training stage begins
    for i, row in enumerate(rows):
        x = row.get(x_key, i + 1)
        x = float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float(i + 1)
        stage = row.get(stage_key)
        if isinstance(stage, str) and (not stage_starts or stage_starts[-1][1] != stage):
            stage_starts.append((x, stage))
        for key, value in row.items():
            if key == x_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(x)
            ys.append(float(value))
    groups: dict[str, list[str]] = {}
    for key in series:
        groups.setdefault(metric_group(key), []).append(key)

    n = max(1, len(groups))
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig = Figure(figsize=(5 * cols, 3.6 * nrows), layout="constrained")
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no numeric values logged yet", ha="center", va="center")
        ax.set_axis_off()
    for index, (group, keys) in enumerate(groups.items()):
        ax = fig.add_subplot(nrows, cols, index + 1)
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        if group == "learning rate" and all(v > 0 for k in keys for v in series[k][1]):
            ax.set_yscale("log")
        if len(stage_starts) > 1:
            for x, stage in stage_starts:
                ax.axvline(x - 0.5, color="grey", linestyle=":", linewidth=1)
                ax.text(x - 0.5, 1.0, f" {stage}", transform=ax.get_xaxis_transform(), va="top",
                        fontsize="x-small", color="grey")
        ax.set_title(group)
        ax.set_xlabel(x_key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


__all__ = ["metric_group", "plot_confusion_matrix", "plot_pr_curves", "plot_training_curves"]
