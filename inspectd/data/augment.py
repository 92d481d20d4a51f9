"""Training augmentations that keep image, boxes and segmentation target consistent.

Everything draws from the numpy Generator it is given, so a (seed, epoch, index) triple always
yields the same sample: training is reproducible whatever the data-loader worker layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspectd.configtools import doc

IGNORE = 255


@dataclass
class AugmentConfig:
    mosaic: float = doc(
        "probability of a 2x2 mosaic of four images, randomly cropped to the input size: the model "
        "then sees real texture to every tile edge and defects cut by edges, as in camera tiles", default=0.5)
    hflip: float = doc("probability of a horizontal flip", default=0.5)
    vflip: float = doc("probability of a vertical flip", default=0.5)
    rot90: float = doc("probability of a random 90/180/270-degree rotation (square inputs only)", default=0.5)
    brightness: float = doc("maximum brightness shift, in grey levels", default=20.0)
    contrast: float = doc("maximum relative contrast change (0.2 = x0.8 to x1.2)", default=0.2)
    noise: float = doc("probability of Gaussian noise", default=0.3)
    noise_sigma: float = doc("maximum noise standard deviation, in grey levels", default=6.0)
    min_box_fraction: float = doc(
        "a box cut by a crop is kept when at least this fraction of its area remains", default=0.25)


def pad_to(image, boxes, classes, seg, size, offset):
    """Place the image at ``offset`` (y, x) on a canvas of ``size`` filled with its mean grey."""
    h, w = image.shape[:2]
    H, W = size
    oy, ox = offset
    fill = int(image.mean())
    canvas = np.full((H, W) + image.shape[2:], fill, np.uint8)
    seg_c = np.full((H, W), IGNORE, np.uint8)
    hh, ww = min(h, H - oy), min(w, W - ox)
    canvas[oy:oy + hh, ox:ox + ww] = image[:hh, :ww]
    seg_c[oy:oy + hh, ox:ox + ww] = seg[:hh, :ww]
    b = boxes.copy()
    b[:, [0, 2]] += ox
    b[:, [1, 3]] += oy
    return _clip(canvas, b, classes, seg_c, 0.0)


def _clip(image, boxes, classes, seg, min_fraction):
    H, W = image.shape[:2]
    if len(boxes) == 0:
        return image, boxes.reshape(0, 4), classes, seg
    area0 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    b = boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, W)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, H)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (bw > 2) & (bh > 2) & (bw * bh >= min_fraction * np.maximum(area0, 1e-6))
    return image, b[keep], classes[keep], seg


def _mosaic(sample, pool, rng, size):
    others = [pool[j] for j in rng.integers(0, len(pool), 3)]
    tiles = [sample] + others
    order = rng.permutation(4)
    ch, cw = max(t.image.shape[0] for t in tiles), max(t.image.shape[1] for t in tiles)
    canvas = np.zeros((2 * ch, 2 * cw) + sample.image.shape[2:], np.uint8)
    seg = np.full((2 * ch, 2 * cw), IGNORE, np.uint8)
    boxes, classes = [], []
    for slot, t in zip(order, tiles):
        oy, ox = (slot // 2) * ch, (slot % 2) * cw
        h, w = t.image.shape[:2]
        canvas[oy:oy + h, ox:ox + w] = t.image
        seg[oy:oy + h, ox:ox + w] = t.seg
        b = t.boxes.copy()
        b[:, [0, 2]] += ox
        b[:, [1, 3]] += oy
        boxes.append(b)
        classes.append(t.classes)
    H, W = size
    y0 = int(rng.integers(0, max(2 * ch - H, 0) + 1))
    x0 = int(rng.integers(0, max(2 * cw - W, 0) + 1))
    img = canvas[y0:y0 + H, x0:x0 + W]
    sg = seg[y0:y0 + H, x0:x0 + W]
    b = np.concatenate(boxes) - np.array([x0, y0, x0, y0], np.float32)
    return img, b, np.concatenate(classes), sg


class Augment:
    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, sample, pool, rng: np.random.Generator, size: tuple[int, int]):
        c = self.cfg
        H, W = size
        if rng.random() < c.mosaic and len(pool) > 1:
            img, boxes, classes, seg = _mosaic(sample, pool, rng, size)
            img, boxes, classes, seg = _clip(img, boxes, classes, seg, c.min_box_fraction)
        else:
            img, boxes, classes, seg = sample.image, sample.boxes, sample.classes, sample.seg
            h, w = img.shape[:2]
            if h > H or w > W:      # larger than the input: a random window, as the daemon's tiles see it
                y0, x0 = int(rng.integers(0, max(h - H, 0) + 1)), int(rng.integers(0, max(w - W, 0) + 1))
                img, seg = img[y0:y0 + H, x0:x0 + W], seg[y0:y0 + H, x0:x0 + W]
                img, boxes, classes, seg = _clip(img, boxes - np.array([x0, y0, x0, y0], np.float32), classes,
                                                 seg, c.min_box_fraction)
                h, w = img.shape[:2]
            off = (int(rng.integers(0, max(H - h, 0) + 1)), int(rng.integers(0, max(W - w, 0) + 1)))
            img, boxes, classes, seg = pad_to(img, boxes, classes, seg, size, off)
        img, seg, boxes = img.copy(), seg.copy(), boxes.copy()
        if rng.random() < c.hflip:
            img, seg = img[:, ::-1], seg[:, ::-1]
            boxes[:, [0, 2]] = W - boxes[:, [2, 0]]
        if rng.random() < c.vflip:
            img, seg = img[::-1], seg[::-1]
            boxes[:, [1, 3]] = H - boxes[:, [3, 1]]
        if H == W and rng.random() < c.rot90:
            for _ in range(int(rng.integers(1, 4))):
                # np.rot90 turns counter-clockwise: (x, y) -> (y, W - x)
                img, seg = np.rot90(img), np.rot90(seg)
                boxes = np.stack((boxes[:, 1], W - boxes[:, 2], boxes[:, 3], W - boxes[:, 0]), 1)
        img = img.astype(np.float32)
        alpha = 1.0 + rng.uniform(-c.contrast, c.contrast)
        beta = rng.uniform(-c.brightness, c.brightness)
        mean = img.mean()
        img = (img - mean) * alpha + mean + beta
        if rng.random() < c.noise:
            img += rng.normal(0, rng.uniform(0, c.noise_sigma), img.shape).astype(np.float32)
        img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img), boxes.astype(np.float32).reshape(-1, 4), classes, np.ascontiguousarray(seg)
