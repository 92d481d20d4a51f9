"""Detection metrics: hand-worked cases, then agreement with pycocotools on random data."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from inspectd.metrics.detection import (
    IOU_THRESHOLDS,
    DetectionEvaluator,
    ap_101_point,
    ap_all_point,
    box_iou,
)

NAMES = ["a", "b", "c"]
BOX = [10.0, 10.0, 60.0, 60.0]
FAR = [150.0, 150.0, 190.0, 190.0]


def run(images, names=NAMES, threshold=0.25):
    """images: list of (preds [(box, score, cls)], gts [(box, cls)])."""
    ev = DetectionEvaluator(names)
    for preds, gts in images:
        ev.add(
            np.array([p[0] for p in preds], float).reshape(-1, 4),
            np.array([p[1] for p in preds], float),
            np.array([p[2] for p in preds], int),
            np.array([g[0] for g in gts], float).reshape(-1, 4),
            np.array([g[1] for g in gts], int),
        )
    return ev.compute(threshold)


def test_box_iou_continuous_coordinates_no_plus_one():
    # 100x100 box vs the same box cut to 100x72: IoU 0.72 exactly (no +1 in widths).
    iou = box_iou(np.array([[0, 0, 100, 100]]), np.array([[0, 0, 100, 72], [100, 0, 200, 100], [5, 5, 5, 9]]))
    assert iou[0, 0] == pytest.approx(0.72)
    assert iou[0, 1] == 0.0  # touching edges do not overlap
    assert iou[0, 2] == 0.0  # zero-area box


def test_perfect_predictions_give_ap_one():
    m = run([([(BOX, 0.9, 0)], [(BOX, 0)]), ([(FAR, 0.8, 1)], [(FAR, 1)])], names=["a", "b"])
    assert m.ap50.tolist() == [1.0, 1.0]
    assert m.ap50_101.tolist() == [1.0, 1.0]
    assert m.map50 == m.map50_101 == m.map50_95 == 1.0
    assert m.precision.tolist() == [1.0, 1.0] and m.recall.tolist() == [1.0, 1.0]


def test_false_positive_ranked_above_true_positive():
    # One GT. Ranked: FP (0.9), TP (0.8) -> (R, P) = (0, 0), (1, 0.5).
    # All-point: envelope 0.5 over recall 0..1 -> AP 0.5.
    # 101-point: every recall point r >= 0 first reached at rank 2 -> 0.5 each -> AP 0.5.
    m = run([([(FAR, 0.9, 0), (BOX, 0.8, 0)], [(BOX, 0)])], names=["a"])
    assert m.ap50[0] == pytest.approx(0.5)
    assert m.ap50_101[0] == pytest.approx(0.5)
    assert m.tp[0] == 1 and m.fp[0] == 1
    assert m.precision[0] == pytest.approx(0.5) and m.recall[0] == pytest.approx(1.0)


def test_missed_ground_truth():
    # Two GTs, one found (score 0.9): (R, P) = (0.5, 1).
    # All-point: 0.5 * 1 + 0.5 * 0 = 0.5.
    # 101-point: r = 0.00..0.50 (51 points) -> 1, r = 0.51..1 (50 points) -> 0: AP = 51/101.
    m = run([([(BOX, 0.9, 0)], [(BOX, 0), (FAR, 0)])], names=["a"])
    assert m.ap50[0] == pytest.approx(0.5)
    assert m.ap50_101[0] == pytest.approx(51 / 101)
    assert m.recall[0] == pytest.approx(0.5) and m.precision[0] == pytest.approx(1.0)


def test_duplicate_detection_is_a_false_positive():
    # One GT, two detections on it: TP (0.9), FP (0.8). (R, P) = (1, 1), (1, 0.5): AP 1 both ways,
    # but precision at the operating threshold counts the duplicate.
    m = run([([(BOX, 0.9, 0), ([11, 10, 60, 61], 0.8, 0)], [(BOX, 0)])], names=["a"])
    assert m.ap50[0] == pytest.approx(1.0) and m.ap50_101[0] == pytest.approx(1.0)
    assert (m.tp[0], m.fp[0]) == (1, 1)
    assert m.precision[0] == pytest.approx(0.5)


def test_two_classes_and_a_class_without_ground_truth():
    # Class a: perfect -> 1.
    # Class b, 2 GTs in two images, ranked TP 0.9, FP 0.8, TP 0.7:
    #   (R, P) = (0.5, 1), (0.5, 0.5), (1, 2/3).
    #   All-point: 0.5 * 1 + 0.5 * 2/3 = 5/6.
    #   101-point: r <= 0.5 (51 points) -> 1, r > 0.5 (50 points) -> 2/3: (51 + 100/3) / 101.
    # Class c: one FP, no GT -> AP NaN, left out of the means; precision 0, recall NaN.
    images = [
        ([(BOX, 0.95, 0), (BOX, 0.9, 1)], [(BOX, 0), (BOX, 1)]),
        ([(BOX, 0.8, 1), (FAR, 0.7, 1), (BOX, 0.6, 2)], [(FAR, 1)]),
    ]
    m = run(images)
    assert m.num_gt.tolist() == [1, 2, 0]
    assert m.ap50[0] == pytest.approx(1.0)
    assert m.ap50[1] == pytest.approx(5 / 6)
    assert m.ap50_101[1] == pytest.approx((51 + 100 / 3) / 101)
    assert math.isnan(m.ap50[2]) and math.isnan(m.ap50_101[2]) and np.isnan(m.ap[2]).all()
    assert m.map50 == pytest.approx((1 + 5 / 6) / 2)
    assert m.map50_101 == pytest.approx((1 + (51 + 100 / 3) / 101) / 2)
    assert m.precision[2] == 0.0 and math.isnan(m.recall[2])
    # Pooled at 0.25: a 1 TP, b 2 TP + 1 FP, c 1 FP -> precision 3/5; recall 3 of 3 GT.
    assert m.precision_all == pytest.approx(3 / 5)
    assert m.recall_all == pytest.approx(3 / 3)
    d = m.to_dict()
    assert d["ap50"]["c"] is None and d["map50_interpolation"] == "all-point"
    json.dumps(d, allow_nan=False)


def test_wrong_class_is_a_false_positive_and_a_miss():
    m = run([([(BOX, 0.9, 1)], [(BOX, 0)])], names=["a", "b"])
    assert m.ap50[0] == 0.0 and math.isnan(m.ap50[1])
    assert m.fp[1] == 1 and m.recall[0] == 0.0


def test_iou_thresholds_average_for_map50_95():
    # IoU 0.72: a match at 0.50, 0.55, 0.60, 0.65, 0.70, a miss at 0.75..0.95 -> 5 of 10 -> 0.5.
    m = run([([([0, 0, 100, 72], 0.9, 0)], [([0, 0, 100, 100], 0)])], names=["a"])
    assert m.ap[0].tolist() == [1.0] * 5 + [0.0] * 5
    assert m.map50_95 == pytest.approx(0.5)
    assert m.map50 == 1.0


def test_greedy_matching_takes_best_unmatched_box_by_score_order():
    # GT g1 = [0,0,100,100], g2 = [0,20,100,120]. Detection d1 (0.9) = [0,15,100,115]:
    # IoU with g2 = 95/105 > with g1 = 85/115, so d1 takes g2. Detection d2 (0.8) = [0,18,100,118]:
    # g2 is taken; IoU with g1 = 82/118 = 0.695 >= 0.5, so d2 takes g1 at IoU 0.5 but not at 0.7,
    # although its IoU with the taken g2 is 98/102.
    g1, g2 = [0, 0, 100, 100], [0, 20, 100, 120]
    m = run([([([0, 15, 100, 115], 0.9, 0), ([0, 18, 100, 118], 0.8, 0)], [(g1, 0), (g2, 0)])], names=["a"])
    assert m.ap50[0] == pytest.approx(1.0)
    # At IoU 0.70..0.90 only d1 matches (95/105 = 0.905 >= 0.9): recall 0.5 -> 101-pt AP 51/101.
    assert m.ap[0, IOU_THRESHOLDS.round(2).tolist().index(0.7)] == pytest.approx(51 / 101)
    # At 0.95 d1 (0.905) is a false positive and leaves g2 free for d2 (IoU 98/102 = 0.96):
    # ranked FP, TP -> (R, P) = (0, 0), (0.5, 0.5) -> 51 recall points at 0.5.
    assert m.ap[0, -1] == pytest.approx(51 * 0.5 / 101)


def test_operating_threshold_excludes_low_scores():
    m = run([([(BOX, 0.9, 0), (FAR, 0.1, 0)], [(BOX, 0), (FAR, 0)])], names=["a"], threshold=0.5)
    assert (m.tp[0], m.fp[0]) == (1, 0)
    assert m.recall[0] == pytest.approx(0.5) and m.precision[0] == pytest.approx(1.0)
    assert m.ap50[0] == pytest.approx(1.0)  # AP uses every detection
    m = run([([(BOX, 0.1, 0)], [(BOX, 0)])], names=["a"], threshold=0.5)
    assert math.isnan(m.precision[0]) and m.recall[0] == 0.0


def test_no_detections_and_no_images():
    m = run([([], [(BOX, 0)]), ([], [])], names=["a", "b"])
    assert m.ap50[0] == 0.0 and m.ap50_101[0] == 0.0 and math.isnan(m.ap50[1])
    assert m.map50 == 0.0
    m = DetectionEvaluator(["a"]).compute()
    assert math.isnan(m.map50) and math.isnan(m.map50_95) and m.num_images == 0


def test_interpolation_helpers_on_hand_worked_curve():
    rec = np.array([0.25, 0.5, 0.5, 0.75])
    prec = np.array([1.0, 1.0, 2 / 3, 0.75])
    # Envelope: 1 up to recall 0.5, 0.75 up to 0.75, 0 beyond.
    assert ap_all_point(rec, prec) == pytest.approx(0.5 * 1 + 0.25 * 0.75)
    # 101-point: r = 0..0.50 -> 1 (51 points), 0.51..0.75 -> 0.75 (25 points), rest 0.
    assert ap_101_point(rec, prec) == pytest.approx((51 + 25 * 0.75) / 101)


def test_bad_input_is_rejected():
    ev = DetectionEvaluator(["a"])
    with pytest.raises(ValueError, match="out of range"):
        ev.add(np.zeros((1, 4)), np.ones(1), np.array([1]), np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="lengths differ"):
        ev.add(np.zeros((2, 4)), np.ones(1), np.array([0]), np.zeros((0, 4)), np.zeros(0))


# --- agreement with pycocotools -------------------------------------------------------------


def _random_set(rng: np.random.Generator, n_images: int, n_classes: int):
    """GT boxes per image, and detections: jittered GT (some with a wrong class), duplicates,
    and random false positives, all with random scores. The last class never has GT."""
    data = []
    for _ in range(n_images):
        m = rng.integers(0, 6)
        xy = rng.uniform(0, 160, size=(m, 2))
        wh = rng.uniform(8, 80, size=(m, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        gc = rng.integers(0, n_classes - 1, size=m)
        boxes, classes = [], []
        for b, c in zip(gt, gc):
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                w, h = b[2] - b[0], b[3] - b[1]
                j = rng.normal(0, 0.12, size=4) * np.array([w, h, w, h])
                boxes.append(b + j)
                classes.append(c if rng.random() > 0.1 else rng.integers(0, n_classes))
        for _ in range(rng.integers(0, 4)):
            xy = rng.uniform(0, 180, size=2)
            boxes.append(np.concatenate([xy, xy + rng.uniform(5, 60, size=2)]))
            classes.append(rng.integers(0, n_classes))
        pb = np.array(boxes, float).reshape(-1, 4)
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1.0)
        ps = rng.uniform(0.001, 1.0, size=len(pb))
        data.append((pb, ps, np.array(classes, int), gt, gc))
    return data


def _coco_eval(data, n_classes: int):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]  # noqa: E731
    images, anns, dets = [], [], []
    for i, (pb, ps, pc, gt, gc) in enumerate(data):
        images.append({"id": i + 1, "width": 256, "height": 256})
        for b, c in zip(gt, gc):
            bb = xywh(b)
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "bbox": bb,
                 "area": bb[2] * bb[3], "iscrowd": 0}
            )
        for b, s, c in zip(pb, ps, pc):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": xywh(b), "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": k + 1, "name": str(k)} for k in range(n_classes)],
        }
        gt_api.createIndex()
        dt_api = gt_api.loadRes(dets)
        ev = COCOeval(gt_api, dt_api, "bbox")
        # Default maxDets [1, 10, 100] (summarize() hard-codes 100 for stats[0]); no image here
        # has more than 100 detections, so COCO's per-image cap is inert, like DetectionEvaluator.
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_agrees_with_pycocotools_on_random_predictions():
    rng = np.random.default_rng(1234)
    n_classes = 4
    data = _random_set(rng, 400, n_classes)
    ev = DetectionEvaluator([f"c{k}" for k in range(n_classes)])
    for pb, ps, pc, gt, gc in data:
        ev.add(pb, ps, pc, gt, gc)
    m = ev.compute()
    assert max(len(d[0]) for d in data) < 100
    coco = _coco_eval(data, n_classes)

    assert m.map50_95 == pytest.approx(coco.stats[0], abs=1e-3)
    assert m.map50_101 == pytest.approx(coco.stats[1], abs=1e-3)
    # Per class and IoU threshold too (area range "all", the largest maxDets).
    prec = coco.eval["precision"][:, :, :, 0, -1]  # [T, R, K]
    for k in range(n_classes):
        if (prec[:, :, k] > -1).any():
            assert m.ap[k] == pytest.approx(prec[:, :, k].mean(axis=1), abs=1e-9)
        else:
            assert np.isnan(m.ap[k]).all()
    assert np.isnan(m.ap50[n_classes - 1])  # the class without GT
    # The data are not trivial: the metrics are well inside (0, 1), and the all-point AP is a
    # different number from the 101-point one (same curves, other interpolation).
    assert 0.05 < m.map50_95 < 0.9 and 0.2 < m.map50 < 0.95
    assert m.map50 != pytest.approx(m.map50_101, abs=1e-5)
    assert m.map50 == pytest.approx(m.map50_101, abs=0.02)
