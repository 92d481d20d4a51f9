"""Markdown report and PNG plots of the metrics."""
from __future__ import annotations

import math

import numpy as np

from inspectd.metrics.detection import DetectionEvaluator
from inspectd.metrics.plots import metric_group, plot_confusion_matrix, plot_pr_curves, plot_training_curves
from inspectd.metrics.report import render_markdown
from inspectd.metrics.segmentation import ConfusionMatrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics():
    ev = DetectionEvaluator(["inclusion", "patches", "crazing"])
    box = np.array([[10.0, 10.0, 60.0, 60.0]])
    ev.add(box, [0.9], [0], box, [0])  # inclusion: AP 1
    ev.add(np.array([[100.0, 100, 150, 150], [10, 10, 60, 60]]), [0.8, 0.3], [1, 1], box, [1])  # patches: 0.5
    m = ev.compute(0.5)
    cm = ConfusionMatrix(["background", "inclusion"])
    cm.update(np.array([[0, 0], [1, 0]]), np.array([[0, 0], [1, 1]]))  # bg 2/3, inclusion 1/2
    return m, cm


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_markdown_report_rows_and_labels():
    m, cm = _metrics()
    text = render_markdown(m, cm, {"batch 1": 12.34}, title="val")
    lines = text.splitlines()
    assert lines[0] == "## val"
    row = lambda name: next(line for line in lines if line.startswith(f"| {name} "))  # noqa: E731
    cells = lambda name: [c.strip() for c in row(name).strip("|").split("|")]  # noqa: E731
    assert "AP@0.5 all-point" in text and "AP@0.5 101-point" in text and "AP@0.5:0.95 101-point" in text
    assert cells("inclusion")[1:3] == ["1", "100.00"]
    assert cells("patches")[2] == "50.00"  # FP above TP: AP 0.5
    assert cells("crazing")[2] == "-"  # no ground truth: undefined, not 0
    assert cells("**mean**")[2] == "75.00"
    seg_mean = [c.strip() for c in [line for line in lines if line.startswith("| **mean**")][-1].strip("|").split("|")]
    assert cells("background")[1] == "66.67" and seg_mean == ["**mean**", "58.33", "4"]  # (2/3 + 1/2) / 2
    assert "| batch 1" in text and "12.3" in text


def test_plots_write_png_files(tmp_path):
    m, cm = _metrics()
    w, h = _png_size(plot_pr_curves(m, tmp_path / "pr.png"))
    assert w > 300 and h > 300
    _png_size(plot_confusion_matrix(cm, tmp_path / "sub" / "cm.png"))
    _png_size(plot_confusion_matrix(cm, tmp_path / "cm_counts.png", normalize=False))
    rows = [
        {"epoch": e, "loss": 1 / e, "loss_seg": 0.5 / e, "lr": 1e-3, "stage": "seg",
         "val_map50": e / 10 if e % 2 else math.nan}
        for e in range(1, 6)
    ]
    _png_size(plot_training_curves(rows, tmp_path / "train.png"))
    _png_size(plot_training_curves([], tmp_path / "empty.png"))


def test_training_curve_groups():
    # The trainer's row keys (inspectd/training/loop.py) and a few other spellings.
    assert metric_group("train_box") == metric_group("train_seg") == metric_group("loss_det") == "loss"
    assert metric_group("train/loss_seg") == "loss"
    assert metric_group("val_map50") == metric_group("val_map50_95") == metric_group("ap50") == "mAP"
    assert metric_group("val_ap50_crazing") == metric_group("ap50_rolled-in_scale") == "AP per class"
    assert metric_group("val_miou") == metric_group("val/miou") == "mIoU"
    assert metric_group("val_iou_inclusion") == "IoU per class"
    assert metric_group("val_precision") == metric_group("val_recall") == "precision / recall"
    assert metric_group("lr") == metric_group("lr_pg0") == "learning rate"
    assert metric_group("elapsed_s") == "time"
    assert metric_group("grad/norm") == "grad" and metric_group("val_fitness") == "val_fitness"
