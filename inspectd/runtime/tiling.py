"""Cutting frames of any size into model-sized tiles, and putting the results back.

A frame is covered by a grid of tiles of the model's input size that overlap by a
configured number of pixels; the last row and column are shifted back so that every
tile lies inside the frame. An axis shorter than a tile gets one tile, centred, with the
frame padded around it. Everything here is numpy (plus OpenCV for colour conversion and
padding) so that any backend can use it.

The pieces, in the order the inference stage uses them:

- ``TileGrid``: where the tiles are, which frame pixels each tile *owns* for stitching.
- ``TileCutter``: cuts a frame into a preallocated uint8 [N, C, H, W] batch, reused for
  every frame of the same size (no allocation per frame on the hot path).
- ``boxes_to_frame``: tile-pixel boxes -> frame-pixel boxes.
- ``SegStitcher``: per-tile segmentation probabilities -> one frame-sized label map and
  confidence map. In overlaps each pixel is taken from the tile in which it lies farther
  from the cut (see ``TileGrid.owned``), not averaged.
- ``fuse_cross_tile``: boxes of one defect cut by a tile edge, or seen whole by two
  overlapping tiles, become one box.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.model.box_ops import box_area, pairwise_intersection

PadMode = Literal["mean", "reflect", "constant"]


def axis_starts(length: int, tile: int, overlap: int) -> np.ndarray:
    """Tile start positions along one axis of ``length`` pixels (frame coordinates).

    The fewest tiles whose consecutive overlap is at least ``overlap``, the first starting
    at 0 and the last ending exactly at ``length``, spaced evenly in between. An axis
    shorter than a tile gets a single tile that starts before 0 (the frame is centred in
    it and padded on both sides).
    """
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile}), got {overlap}")
    if length <= 0:
        raise ValueError(f"frame length must be positive, got {length}")
    if length <= tile:
        return np.array([-((tile - length) // 2)], dtype=np.int64)
    stride = tile - overlap
    n = -(-(length - tile) // stride) + 1          # ceil division: fewest tiles that fit
    # Spread the n tiles evenly rather than shifting only the last one back: the same
    # number of tiles, every overlap >= ``overlap``, and no near-duplicate last tile.
    return np.round(np.linspace(0, length - tile, n)).astype(np.int64)


def axis_owned(starts: np.ndarray, tile: int, length: int) -> np.ndarray:
    """[n, 2] half-open frame intervals each tile owns along one axis.

    A pixel inside the overlap of tiles i and i+1 belongs to the tile in which it is
    farther from the tile's edge, i.e. the overlap is split at its middle. Convolutional
    outputs are least reliable near a tile border (padding, missing context), so the
    pixel is taken from the tile that saw more of its surroundings. The intervals cover
    [0, length) exactly once.
    """
    ends = starts + tile
    cuts = (starts[1:] + ends[:-1]) // 2            # middle of each overlap
    lo = np.concatenate([[0], cuts])
    hi = np.concatenate([cuts, [length]])
    return np.stack([lo, hi], axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class TileGrid:
    """The tiles covering one frame size. Tiles are numbered row-major."""

    frame_h: int
    frame_w: int
    tile_h: int
    tile_w: int
    overlap: int
    ys: np.ndarray          # [ny] tile top rows (frame coordinates; < 0 when padded)
    xs: np.ndarray          # [nx] tile left columns
    own_y: np.ndarray       # [ny, 2] rows each tile row owns for stitching
    own_x: np.ndarray       # [nx, 2] columns each tile column owns

    @classmethod
    def build(cls, frame_h: int, frame_w: int, tile_h: int, tile_w: int, overlap: int) -> TileGrid:
        ys = axis_starts(frame_h, tile_h, overlap)
        xs = axis_starts(frame_w, tile_w, overlap)
        return cls(frame_h, frame_w, tile_h, tile_w, overlap, ys, xs,
                   axis_owned(ys, tile_h, frame_h), axis_owned(xs, tile_w, frame_w))

    @property
    def n(self) -> int:
        return len(self.ys) * len(self.xs)

    # Computed once per grid (a grid lives as long as the frame size) and read-only: every
    # frame's boxes are mapped with them.
    @cached_property
    def origins(self) -> np.ndarray:
        """[N, 2] (x0, y0) of each tile's top-left corner in frame pixels."""
        yy, xx = np.meshgrid(self.ys, self.xs, indexing="ij")
        return _frozen(np.stack([xx.ravel(), yy.ravel()], axis=1))

    @cached_property
    def rects(self) -> np.ndarray:
        """[N, 4] x1, y1, x2, y2 of the frame region each tile sees (padding excluded)."""
        o = self.origins
        x1 = np.maximum(o[:, 0], 0)
        y1 = np.maximum(o[:, 1], 0)
        x2 = np.minimum(o[:, 0] + self.tile_w, self.frame_w)
        y2 = np.minimum(o[:, 1] + self.tile_h, self.frame_h)
        return _frozen(np.stack([x1, y1, x2, y2], axis=1))

    @cached_property
    def box_offsets(self) -> np.ndarray:
        """[N, 4] float32 (x0, y0, x0, y0): what maps a tile's xyxy box into the frame."""
        return _frozen(self.origins[:, [0, 1, 0, 1]].astype(np.float32))

    @cached_property
    def box_limits(self) -> np.ndarray:
        """[4] float32 (w, h, w, h): the frame's far edges, which boxes are clipped to."""
        return _frozen(np.array([self.frame_w, self.frame_h, self.frame_w, self.frame_h], np.float32))

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """top, bottom, left, right padding that makes the frame at least one tile big."""
        top = max(0, -int(self.ys[0]))
        left = max(0, -int(self.xs[0]))
        bottom = max(0, self.tile_h - self.frame_h - top)
        right = max(0, self.tile_w - self.frame_w - left)
        return top, bottom, left, right


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class TileCutter:
    """Cuts frames of one size and layout into a reused uint8 [N, C, H, W] batch.

    ``channels`` is what the model takes: Mono8 frames are repeated into 3 channels for a
    3-channel model, BGR frames are converted to grey for a 1-channel model, and for a
    3-channel model passed in the order ``rgb`` asks for. Frames smaller than a tile are
    padded (``pad``: "mean" fills the frame's mean grey, as training pads its 200 x 200
    images; "reflect" mirrors the strip's own texture; "constant" fills ``pad_value``).
    The returned batch is overwritten by the next ``cut``.
    """

    def __init__(self, grid: TileGrid, frame_shape: tuple[int, ...], channels: int,
                 rgb: bool = False, pad: PadMode = "mean", pad_value: int = 114):
        if channels not in (1, 3):
            raise InspectdError(f"model channels: expected 1 or 3, got {channels}")
        if len(frame_shape) not in (2, 3) or (len(frame_shape) == 3 and frame_shape[2] != 3):
            raise InspectdError(f"frame: expected H x W (Mono8) or H x W x 3 (BGR), got shape {frame_shape}")
        if tuple(frame_shape[:2]) != (grid.frame_h, grid.frame_w):
            raise ValueError(f"frame shape {frame_shape} does not match grid {grid.frame_h}x{grid.frame_w}")
        self.grid = grid
        self.frame_shape = tuple(frame_shape)
        self.channels = channels
        self.rgb = rgb
        self.pad_mode = pad
        self.pad_value = pad_value
        self.batch = np.empty((grid.n, channels, grid.tile_h, grid.tile_w), dtype=np.uint8)
        colour = len(frame_shape) == 3
        # Grey conversion buffer for colour frames going into a 1-channel model.
        self._grey = np.empty(frame_shape[:2], np.uint8) if colour and channels == 1 else None
        plane_shape = frame_shape if not (colour and channels == 1) else frame_shape[:2]
        top, bottom, left, right = grid.pad
        self._padded = any((top, bottom, left, right))
        self._canvas = (np.empty((plane_shape[0] + top + bottom, plane_shape[1] + left + right)
                                 + tuple(plane_shape[2:]), np.uint8) if self._padded else None)
        # Tile slices in the (possibly padded) plane, computed once.
        oy, ox = (top, left)
        self._slices = [(slice(int(y) + oy, int(y) + oy + grid.tile_h), slice(int(x) + ox, int(x) + ox + grid.tile_w))
                        for y in grid.ys for x in grid.xs]
        # A Mono8 frame padded to one grey tile (a 200 x 200 frame, the usual case) is padded
        # straight into the batch, with no second copy of the tile.
        self._pad_into_batch = (self._canvas is not None and not colour and channels == 1
                                and self._slices == [(slice(0, grid.tile_h), slice(0, grid.tile_w))]
                                and self._canvas.shape == (grid.tile_h, grid.tile_w))
        if self._pad_into_batch:
            self._canvas = self.batch[0, 0]

    def cut(self, image: np.ndarray) -> np.ndarray:
        if image.shape != self.frame_shape or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 frame of shape {self.frame_shape}, got {image.dtype} {image.shape}")
        plane = image
        if self._grey is not None:
            cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._grey)
            plane = self._grey
        if self._canvas is not None:
            top, bottom, left, right = self.grid.pad
            value = self.pad_value
            border = cv2.BORDER_REFLECT_101 if self.pad_mode == "reflect" else cv2.BORDER_CONSTANT
            if self.pad_mode == "reflect" and min(plane.shape[:2]) < 2:
                border = cv2.BORDER_REPLICATE          # nothing to mirror in a 1-pixel frame
            elif self.pad_mode == "mean":
                means = cv2.mean(plane)[:1 if plane.ndim == 2 else 3]
                value = int(sum(means) / len(means))   # one grey level, as training's pad_to
            cv2.copyMakeBorder(plane, top, bottom, left, right, border, dst=self._canvas,
                               value=(value,) * 4)
            if self._pad_into_batch:
                return self.batch
            plane = self._canvas
        batch = self.batch
        if plane.ndim == 2:
            for n, (sy, sx) in enumerate(self._slices):
                batch[n, :] = plane[sy, sx]          # broadcasts Mono8 into 1 or 3 channels
        else:
            for n, (sy, sx) in enumerate(self._slices):
                hwc = plane[sy, sx]
                batch[n] = (hwc[:, :, ::-1] if self.rgb else hwc).transpose(2, 0, 1)
        return batch


def boxes_to_frame(boxes: np.ndarray, tile_idx: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Tile-pixel boxes [K, 4] (x1, y1, x2, y2) of tiles ``tile_idx`` [K] -> frame pixels.

    Boxes are clipped to the frame, so a box reaching into the padding of a frame smaller
    than a tile ends at the frame's edge.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    out = boxes.astype(np.float32, copy=False) + grid.box_offsets[tile_idx]
    return np.minimum(np.maximum(out, 0), grid.box_limits, out=out)


class SegStitcher:
    """Per-tile segmentation probabilities -> frame label map and confidence map.

    ``stitch(probs [N, S, H, W])`` writes, for every frame pixel, the arg-max class
    (uint8, 0 = background) and its probability (float32), taken from the tile that owns
    the pixel (``TileGrid.own_y``/``own_x``: the one in which the pixel is farther from the
    tile's edge). The arg-max is computed only over owned pixels, and the two output maps
    are reused: they are overwritten by the next ``stitch``.
    """

    def __init__(self, grid: TileGrid):
        self.grid = grid
        self.labels = np.zeros((grid.frame_h, grid.frame_w), dtype=np.uint8)
        self.conf = np.zeros((grid.frame_h, grid.frame_w), dtype=np.float32)
        self._copies = []
        nx = len(grid.xs)
        for n in range(grid.n):
            r, c = divmod(n, nx)
            (fy0, fy1), (fx0, fx1) = grid.own_y[r], grid.own_x[c]
            ty0, tx0 = fy0 - int(grid.ys[r]), fx0 - int(grid.xs[c])
            frame_sl = (slice(int(fy0), int(fy1)), slice(int(fx0), int(fx1)))
            tile_sl = (slice(int(ty0), int(ty0 + fy1 - fy0)), slice(int(tx0), int(tx0 + fx1 - fx0)))
            self._copies.append((n, frame_sl, tile_sl))

    def stitch_labels(self, labels: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like ``stitch`` for a backend that already reduced each tile to its arg-max class
        (labels [N, H, W]) and that class's probability (conf [N, H, W]), e.g. on the GPU."""
        g = self.grid
        if labels.shape != (g.n, g.tile_h, g.tile_w) or conf.shape != labels.shape:
            raise ValueError(f"expected seg labels and conf [{g.n}, {g.tile_h}, {g.tile_w}], "
                             f"got {labels.shape} and {conf.shape}")
        for n, fsl, tsl in self._copies:
            self.labels[fsl] = labels[n][tsl]
            self.conf[fsl] = conf[n][tsl]
        return self.labels, self.conf

    def stitch(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        if probs.ndim != 4 or probs.shape[0] != g.n or probs.shape[2:] != (g.tile_h, g.tile_w):
            raise ValueError(f"expected seg probabilities [{g.n}, S, {g.tile_h}, {g.tile_w}], got {probs.shape}")
        for n, fsl, tsl in self._copies:
            p = probs[n, :, tsl[0], tsl[1]]
            self.labels[fsl] = p.argmax(axis=0)
            p.max(axis=0, out=self.conf[fsl])
        return self.labels, self.conf


def connected_labels(adj: np.ndarray) -> np.ndarray:
    """Component label (smallest member index) of each node of a symmetric bool graph."""
    k = adj.shape[0]
    labels = np.arange(k)
    big = np.full_like(adj, k, dtype=labels.dtype)
    while True:   # min-label propagation; converges in (graph diameter) rounds
        nb = np.where(adj, labels[None, :], big).min(axis=1) if k else labels
        new = np.minimum(labels, nb)
        new = new[new]  # pointer jumping speeds up long chains
        if np.array_equal(new, labels):
            return labels
        labels = new


@dataclass(slots=True)
class FusedBoxes:
    boxes: np.ndarray      # [M, 4] float32 frame pixels
    scores: np.ndarray     # [M] float32 (max over the fused parts)
    classes: np.ndarray    # [M] int64
    parts: np.ndarray      # [M] int64 number of tile boxes fused into each


def fuse_cross_tile(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, tile_idx: np.ndarray,
                    grid: TileGrid, edge_px: float = 8.0, dup_ios: float = 0.6) -> FusedBoxes:
    """Fuse boxes (frame pixels, already NMS'd within each tile) that are one defect.

    Two boxes of the same class from different tiles are fused into their union when
    either

    - one is *cut* by its tile's edge (lies within ``edge_px`` of an inner tile edge,
      where the other tile continues) and the two boxes overlap or come within
      ``edge_px`` of each other: the two halves of a defect split by a seam (each tile
      sees the part in the shared overlap band, so the halves meet there); or
    - they are the same defect seen twice: intersection over the smaller box >= ``dup_ios``
      (a defect lying inside an overlap band is seen whole by both tiles).

    Fusion is transitive, so a long scratch crossing several tiles becomes one box. The
    union is taken rather than the higher-scoring box because plain NMS between tiles can
    keep the truncated half, reporting a defect smaller than it is.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    tile_idx = np.asarray(tile_idx, dtype=np.int64).reshape(-1)
    k = len(boxes)
    parts = np.ones(k, dtype=np.int64)
    if k < 2 or grid.n < 2:
        return FusedBoxes(boxes, scores, classes, parts)

    rects = grid.rects.astype(np.float32)
    # Only boxes within reach of some *other* tile can take part; with many boxes this keeps
    # the pairwise matrices small.
    near_rect = ((boxes[:, None, 0] <= rects[None, :, 2] + edge_px) & (boxes[:, None, 2] >= rects[None, :, 0] - edge_px)
                 & (boxes[:, None, 1] <= rects[None, :, 3] + edge_px) & (boxes[:, None, 3] >= rects[None, :, 1] - edge_px))
    near_rect[np.arange(k), tile_idx] = False
    cand = np.flatnonzero(near_rect.any(axis=1))
    if len(cand) < 2:
        return FusedBoxes(boxes, scores, classes, parts)

    b, c, t = boxes[cand], classes[cand], tile_idx[cand]
    r = rects[t]
    fw, fh = grid.frame_w, grid.frame_h
    # Sides of each box cut by an inner edge of its own tile (frame borders are not cuts).
    cut_l = (r[:, 0] > 0) & (b[:, 0] <= r[:, 0] + edge_px)
    cut_t = (r[:, 1] > 0) & (b[:, 1] <= r[:, 1] + edge_px)
    cut_r = (r[:, 2] < fw) & (b[:, 2] >= r[:, 2] - edge_px)
    cut_b = (r[:, 3] < fh) & (b[:, 3] >= r[:, 3] - edge_px)
    # i is cut on a side beyond which tile j goes on.
    cut_into = ((cut_l[:, None] & (r[None, :, 0] < r[:, None, 0]))
                | (cut_t[:, None] & (r[None, :, 1] < r[:, None, 1]))
                | (cut_r[:, None] & (r[None, :, 2] > r[:, None, 2]))
                | (cut_b[:, None] & (r[None, :, 3] > r[:, None, 3])))
    touch = ((b[:, None, 0] <= b[None, :, 2] + edge_px) & (b[None, :, 0] <= b[:, None, 2] + edge_px)
             & (b[:, None, 1] <= b[None, :, 3] + edge_px) & (b[None, :, 1] <= b[:, None, 3] + edge_px))
    inter = pairwise_intersection(b, b)
    area = box_area(b)
    smaller = np.minimum(area[:, None], area[None, :])
    dup = inter >= dup_ios * np.maximum(smaller, 1e-6)
    adj = (c[:, None] == c[None, :]) & (t[:, None] != t[None, :]) & ((touch & (cut_into | cut_into.T)) | dup)
    if not adj.any():
        return FusedBoxes(boxes, scores, classes, parts)

    lab_c = connected_labels(adj)
    labels = np.arange(k)
    labels[cand] = cand[lab_c]              # component representative, as an index into all boxes
    reps, inverse = np.unique(labels, return_inverse=True)
    m = len(reps)
    out = np.empty((m, 4), dtype=np.float32)
    out[:, :2] = np.inf
    out[:, 2:] = -np.inf
    np.minimum.at(out[:, 0], inverse, boxes[:, 0])
    np.minimum.at(out[:, 1], inverse, boxes[:, 1])
    np.maximum.at(out[:, 2], inverse, boxes[:, 2])
    np.maximum.at(out[:, 3], inverse, boxes[:, 3])
    sc = np.full(m, -np.inf, dtype=np.float32)
    np.maximum.at(sc, inverse, scores)
    return FusedBoxes(out, sc, classes[reps], np.bincount(inverse, minlength=m).astype(np.int64))
