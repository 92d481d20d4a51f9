"""Numpy per-tile decoding + NMS gives what the model's own postprocess gives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inspectd.model.decode import postprocess
from inspectd.runtime.tile_detections import _MATRIX_MAX, decode_tiles, nms_sorted


def random_det(n: int, a: int, nc: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    det = np.zeros((n, a, 5 + nc), np.float32)
    # clustered boxes so that NMS has real work: jittered copies of a few centres
    centres = rng.uniform(20, 200, (n, 6, 2))
    pick = rng.integers(0, 6, (n, a))
    c = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 6, (n, a, 2))
    wh = rng.uniform(8, 60, (n, a, 2))
    det[..., :2] = c - wh / 2
    det[..., 2:4] = c + wh / 2
    det[..., 4] = rng.uniform(0, 1, (n, a)) ** 2
    det[..., 5:] = rng.dirichlet(np.ones(nc), (n, a))
    return det


@pytest.mark.parametrize("seed,max_det,max_nms,tiles", [(0, 300, 3000, 4), (1, 5, 3000, 4), (2, 300, 40, 4),
                                                        (3, 300, 3000, 1), (4, 3, 20, 1)])
def test_same_as_model_postprocess(seed, max_det, max_nms, tiles):
    det = random_det(tiles, 400, 6, seed)
    ref = postprocess(torch.from_numpy(det), 0.1, 0.45, max_det, max_nms)
    got = decode_tiles(det, 0.1, 0.45, max_det, max_nms)
    assert len(got) >= min(20, max_det * tiles)
    for i, r in enumerate(ref):
        r = r.numpy()
        mine = got.tiles == i
        assert mine.sum() == len(r)
        want = r[np.lexsort((r[:, 0], r[:, 4]))]
        have = np.concatenate([got.boxes[mine], got.scores[mine, None], got.classes[mine, None]], 1)
        have = have[np.lexsort((have[:, 0], have[:, 4]))]
        np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-4)


def test_nms_is_greedy_not_one_pass():
    # 0 suppresses 1, 1 would suppress 2, but 1 is gone so 2 stays (one-pass "fast NMS" drops 2).
    b = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]], np.float32)
    assert nms_sorted(b, 0.2).tolist() == [True, False, True]


def _greedy(boxes: np.ndarray, iou_thres: float) -> list[bool]:
    """Greedy NMS written out box by box, as its definition reads."""
    from inspectd.model.box_ops import box_iou
    iou = box_iou(boxes, boxes)
    keep: list[bool] = []
    for i in range(len(boxes)):
        keep.append(not any(keep[j] and iou[j, i] > iou_thres for j in range(i)))
    return keep


def test_nms_of_many_boxes_row_by_row_matches_the_definition():
    # Above _MATRIX_MAX boxes, each kept box computes its own row instead of the whole matrix.
    rng = np.random.default_rng(11)
    n = _MATRIX_MAX + 88
    xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2)).astype(np.float32)], 1)
    groups = rng.integers(0, 2, n)
    for t in (0.3, 0.6):
        assert nms_sorted(boxes, t).tolist() == _greedy(boxes, t)
        want = np.zeros(n, bool)
        for g in range(2):
            want[groups == g] = _greedy(boxes[groups == g], t)
        assert nms_sorted(boxes, t, groups).tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_box_by_box_definition(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        xy = rng.uniform(0, 60, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (n, 2)).astype(np.float32)], 1)
        if n > 2:
            boxes[n - 1] = boxes[0]                   # an exact duplicate, and zero-area boxes
            boxes[1, 2:] = boxes[1, :2]
        t = float(rng.uniform(0.05, 0.9))
        assert nms_sorted(boxes, t).tolist() == _greedy(boxes, t)
        groups = rng.integers(0, 3, n)                # within groups: each group on its own
        want = np.zeros(n, bool)
        for g in range(3):
            want[groups == g] = _greedy(boxes[groups == g], t)
        assert nms_sorted(boxes, t, groups).tolist() == want.tolist()


def test_nothing_above_threshold():
    det = random_det(2, 50, 6, 3)
    det[..., 4] = 0.05
    assert len(decode_tiles(det, 0.1, 0.45, 100)) == 0
