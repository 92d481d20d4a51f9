"""Segmentation confusion matrix: hand-worked counts, ignored pixels, undefined classes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inspectd.metrics.segmentation import ConfusionMatrix

NAMES = ["background", "inclusion", "patches", "scratches"]
X = 255  # ignored


def test_hand_worked_matrix_with_ignored_pixels():
    target = np.array(
        [
            [0, 0, 0, 1],
            [0, 1, 1, X],
            [2, 2, X, X],
        ]
    )
    pred = np.array(
        [
            [0, 0, 1, 1],
            [0, 1, 0, 3],  # the 3 sits on an ignored pixel: not counted
            [2, 0, 3, 0],  # so do these
        ]
    )
    cm = ConfusionMatrix(NAMES)
    cm.update(pred, target)
    # rows target, columns prediction
    expected = np.array(
        [
            [3, 1, 0, 0],  # background: 3 right, 1 called inclusion
            [1, 2, 0, 0],  # inclusion: 2 right, 1 called background
            [1, 0, 1, 0],  # patches: 1 right, 1 called background
            [0, 0, 0, 0],  # scratches: nowhere (the predicted 3s were on ignored pixels)
        ]
    )
    assert cm.matrix.tolist() == expected.tolist()
    iou = cm.iou()
    # background: TP 3, FP (column) 2, FN (row) 1 -> 3/6; inclusion: 2 / (2+1+1) = 1/2;
    # patches: 1 / (1+0+1) = 1/2; scratches: 0/0 -> NaN, left out of the mean.
    assert iou[:3] == pytest.approx([0.5, 0.5, 0.5])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx(0.5)
    assert cm.pixel_accuracy() == pytest.approx(6 / 9)
    d = cm.to_dict()
    assert d["iou"]["scratches"] is None and d["miou"] == pytest.approx(0.5)
    json.dumps(d, allow_nan=False)


def test_one_matrix_over_the_set_not_a_mean_of_images():
    cm = ConfusionMatrix(["background", "defect"])
    # Image 1: 1 defect pixel in 100, found. Image 2: 99 defect pixels, 49 found.
    t1 = np.zeros((10, 10), int)
    t1[0, 0] = 1
    cm.update(t1.copy(), t1)
    t2 = np.ones((10, 10), int)
    t2[0, 0] = 0
    p2 = t2.copy()
    p2.flat[1:51] = 0  # 50 defect pixels called background
    cm.update(p2, t2)
    # defect: TP 1 + 49 = 50, FN 50, FP 0 -> 0.5 (a per-image mean would say (1 + 49/99) / 2).
    assert cm.iou()[1] == pytest.approx(0.5)


def test_batch_and_single_updates_agree():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, size=(3, 8, 9))
    target[rng.random(target.shape) < 0.2] = X
    pred = rng.integers(0, 4, size=(3, 8, 9))
    a, b = ConfusionMatrix(NAMES), ConfusionMatrix(NAMES)
    a.update(pred, target)
    for p, t in zip(pred, target):
        b.update(p, t)
    assert a.matrix.tolist() == b.matrix.tolist()
    assert a.matrix.sum() == int((target != X).sum())


def test_predicted_but_absent_class_has_iou_zero():
    cm = ConfusionMatrix(["background", "defect"])
    cm.update(np.array([0, 1]), np.array([0, 0]))
    assert cm.iou().tolist() == [0.5, 0.0]
    assert cm.miou() == pytest.approx(0.25)


def test_empty_matrix_and_bad_values():
    cm = ConfusionMatrix(NAMES)
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())
    cm.update(np.zeros((2, 2), int), np.full((2, 2), X))  # all ignored: nothing counted
    assert cm.matrix.sum() == 0
    with pytest.raises(ValueError, match="target values"):
        cm.update(np.zeros(2, int), np.array([0, 7]))
    with pytest.raises(ValueError, match="prediction values"):
        cm.update(np.array([0, 4]), np.zeros(2, int))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros(3, int), np.zeros(2, int))
