"""Tile grid, tile cutting, box mapping, segmentation stitching and cross-tile fusion."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspectd.runtime.tiling import (
    SegStitcher, TileCutter, TileGrid, axis_owned, axis_starts, boxes_to_frame, connected_labels,
    fuse_cross_tile,
)

T = 224
SIZES = [(1, 1), (10, 7), (100, 500), (200, 200), (224, 224), (225, 448), (417, 1000), (600, 803), (2048, 300)]


def tile_view(grid: TileGrid, n: int) -> tuple[int, int]:
    x0, y0 = grid.origins[n]
    return int(x0), int(y0)


def split_box(box, grid: TileGrid):
    """What a perfect detector reports for ``box`` (frame px): the visible part in each tile,
    in that tile's own pixel coordinates."""
    x1, y1, x2, y2 = box
    out_boxes, out_tiles = [], []
    for n, (rx1, ry1, rx2, ry2) in enumerate(grid.rects):
        ix1, iy1, ix2, iy2 = max(x1, rx1), max(y1, ry1), min(x2, rx2), min(y2, ry2)
        if ix2 - ix1 >= 1 and iy2 - iy1 >= 1:
            ox, oy = tile_view(grid, n)
            out_boxes.append([ix1 - ox, iy1 - oy, ix2 - ox, iy2 - oy])
            out_tiles.append(n)
    return np.array(out_boxes, np.float32), np.array(out_tiles, np.int64)


def detect_and_fuse(true_boxes, classes, grid, jitter=0.0, seed=0, **kw):
    """Split every true box over the tiles, map back to the frame and fuse, as the stage does."""
    rng = np.random.default_rng(seed)
    bs, ts, cs = [], [], []
    for box, c in zip(true_boxes, classes):
        b, t = split_box(box, grid)
        b = b + rng.uniform(-jitter, jitter, b.shape).astype(np.float32)
        bs.append(b), ts.append(t), cs.append(np.full(len(t), c))
    b, t, c = np.concatenate(bs), np.concatenate(ts), np.concatenate(cs)
    frame_boxes = boxes_to_frame(b, t, grid)
    scores = rng.uniform(0.4, 0.9, len(t)).astype(np.float32)
    return fuse_cross_tile(frame_boxes, scores, c, t, grid, **kw), len(t)


# --- the grid ---------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", SIZES)
def test_grid_covers_frame_with_overlap(h, w):
    g = TileGrid.build(h, w, T, T, 32)
    cover = np.zeros((h, w), np.int32)
    for x1, y1, x2, y2 in g.rects:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    for starts, length in ((g.ys, h), (g.xs, w)):
        if length >= T:     # tiles lie inside the frame, first at 0, last ending at the edge
            assert starts[0] == 0 and starts[-1] + T == length and (starts >= 0).all()
            assert (np.diff(starts) <= T - 32).all()        # overlap at least as configured
        else:               # one tile, frame centred in it
            assert len(starts) == 1 and -starts[0] == (T - length) // 2
    # owned intervals partition each axis exactly
    for own, length in ((g.own_y, h), (g.own_x, w)):
        assert own[0, 0] == 0 and own[-1, 1] == length and (own[1:, 0] == own[:-1, 1]).all()
        assert (own[:, 1] > own[:, 0]).all()


def test_axis_starts_counts_and_errors():
    assert axis_starts(416, 224, 32).tolist() == [0, 192]
    assert len(axis_starts(417, 224, 32)) == 3
    with pytest.raises(ValueError):
        axis_starts(100, 224, 224)


def test_owned_split_is_middle_of_overlap():
    s = axis_starts(416, 224, 32)          # overlap [192, 224)
    assert axis_owned(s, 224, 416).tolist() == [[0, 208], [208, 416]]


# --- cutting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(300, 500), (224, 224), (600, 803)])
def test_cut_mono_puts_frame_pixels_in_tiles(h, w):
    img = np.random.default_rng(1).integers(0, 256, (h, w), dtype=np.uint8)
    g = TileGrid.build(h, w, T, T, 32)
    cutter = TileCutter(g, img.shape, channels=1)
    batch = cutter.cut(img)
    assert batch.shape == (g.n, 1, T, T) and batch.dtype == np.uint8
    for n in range(g.n):
        x0, y0 = tile_view(g, n)
        np.testing.assert_array_equal(batch[n, 0], img[y0:y0 + T, x0:x0 + T])
    # the batch is reused, not reallocated, for the next frame of the same size
    img2 = 255 - img
    assert cutter.cut(img2) is batch
    x0, y0 = tile_view(g, g.n - 1)
    np.testing.assert_array_equal(batch[-1, 0], img2[y0:y0 + T, x0:x0 + T])


def test_cut_channel_conversions():
    rng = np.random.default_rng(2)
    mono = rng.integers(0, 256, (300, 300), dtype=np.uint8)
    bgr = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    g = TileGrid.build(300, 300, T, T, 32)
    b = TileCutter(g, mono.shape, channels=3).cut(mono)      # Mono8 -> 3 equal channels
    assert (b[:, 0] == b[:, 1]).all() and (b[:, 0] == b[:, 2]).all()
    np.testing.assert_array_equal(b[0, 1], mono[:T, :T])
    b = TileCutter(g, bgr.shape, channels=3).cut(bgr)        # BGR stays BGR, channels first
    np.testing.assert_array_equal(b[0].transpose(1, 2, 0), bgr[:T, :T])
    b = TileCutter(g, bgr.shape, channels=3, rgb=True).cut(bgr)
    np.testing.assert_array_equal(b[0, 0], bgr[:T, :T, 2])
    b = TileCutter(g, bgr.shape, channels=1).cut(bgr)        # BGR -> grey
    np.testing.assert_array_equal(b[0, 0], cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:T, :T])


@pytest.mark.parametrize("pad", ["mean", "reflect", "constant"])
def test_cut_small_frame_is_centred_and_padded(pad):
    img = np.random.default_rng(3).integers(0, 200, (200, 150), dtype=np.uint8)
    g = TileGrid.build(200, 150, T, T, 32)
    b = TileCutter(g, img.shape, channels=1, pad=pad, pad_value=250).cut(img)
    assert b.shape == (1, 1, T, T)
    top, _, left, _ = g.pad
    assert (top, left) == (12, 37)
    np.testing.assert_array_equal(b[0, 0, top:top + 200, left:left + 150], img)
    if pad == "constant":
        assert (b[0, 0, :top] == 250).all() and (b[0, 0, :, :left] == 250).all()
    elif pad == "mean":
        fill = int(img.mean())
        assert fill != 250 and (b[0, 0, :top] == fill).all() and (b[0, 0, :, -left:] == fill).all()
    else:   # mirrored: the row above the frame is the frame's second row
        np.testing.assert_array_equal(b[0, 0, top - 1, left:left + 150], img[1])


def test_cut_tiny_frames():
    for shape in [(1, 1), (1, 5), (3, 300, 3)]:
        img = np.full(shape, 77, np.uint8)
        g = TileGrid.build(shape[0], shape[1], T, T, 32)
        for pad in ("mean", "reflect"):
            b = TileCutter(g, shape, channels=1, pad=pad).cut(img)
            assert (b == 77).all()      # padding a flat frame keeps it flat


# --- boxes --------------------------------------------------------------------------------------
def test_boxes_to_frame_offsets_and_clips():
    g = TileGrid.build(200, 416, T, T, 32)     # one row, centred vertically (12 px pad)
    b = boxes_to_frame(np.array([[10, 20, 30, 40], [0, 0, 224, 224]], np.float32), np.array([1, 0]), g)
    np.testing.assert_allclose(b[0], [192 + 10, 20 - 12, 192 + 30, 40 - 12])
    np.testing.assert_allclose(b[1], [0, 0, 224, 200])       # clipped to the frame


def test_box_across_vertical_seam_is_one_box():
    g = TileGrid.build(224, 416, T, T, 32)     # tiles at x = 0 and x = 192
    truth = [150.0, 60.0, 300.0, 120.0]
    parts, _ = split_box(truth, g)
    assert len(parts) == 2                     # really cut: each tile sees only a part
    assert parts[0][2] == 224 and parts[1][0] == 0
    fused, n_in = detect_and_fuse([truth], [5], g)
    assert n_in == 2 and len(fused.boxes) == 1
    np.testing.assert_allclose(fused.boxes[0], truth)
    assert fused.parts.tolist() == [2] and fused.classes.tolist() == [5]


def test_box_across_seam_with_imprecise_boxes_is_one_box():
    # Real detectors do not put a truncated box exactly on the tile edge.
    g = TileGrid.build(224, 416, T, T, 32)
    a = boxes_to_frame(np.array([[150, 60, 218, 121]], np.float32), np.array([0]), g)   # 6 px short of 224
    b = boxes_to_frame(np.array([[5, 58, 108, 119]], np.float32), np.array([1]), g)      # starts 5 px in
    fused = fuse_cross_tile(np.concatenate([a, b]), np.array([0.5, 0.7]), np.array([2, 2]), np.array([0, 1]), g)
    assert len(fused.boxes) == 1
    np.testing.assert_allclose(fused.boxes[0], [150, 58, 300, 121])
    assert fused.scores[0] == pytest.approx(0.7)


@pytest.mark.parametrize("truth", [
    [100.0, 150.0, 330.0, 260.0],      # across the corner of four tiles
    [20.0, 300.0, 780.0, 330.0],       # a long scratch across a whole row of tiles
    [400.0, 10.0, 420.0, 590.0],       # a vertical scratch across every row
])
def test_defect_across_many_tiles_is_one_box(truth):
    g = TileGrid.build(600, 803, T, T, 32)
    fused, n_in = detect_and_fuse([truth], [1], g, jitter=2.0)
    assert n_in >= 3
    assert len(fused.boxes) == 1
    np.testing.assert_allclose(fused.boxes[0], truth, atol=2.0)


def test_small_defect_in_overlap_seen_by_two_tiles_is_reported_once():
    g = TileGrid.build(224, 416, T, T, 32)
    truth = [203.0, 50.0, 214.0, 70.0]         # inside the overlap band [192, 224), near no edge
    fused, n_in = detect_and_fuse([truth], [0], g, jitter=1.0)
    assert n_in == 2 and len(fused.boxes) == 1
    np.testing.assert_allclose(fused.boxes[0], truth, atol=1.0)


def test_separate_defects_stay_separate():
    g = TileGrid.build(224, 640, T, T, 32)
    truths = [[150.0, 20.0, 300.0, 60.0],      # crosses the first seam
              [150.0, 150.0, 300.0, 200.0],    # same class, crosses the same seam lower down
              [190.0, 100.0, 230.0, 130.0],    # other class, in the overlap band
              [500.0, 20.0, 600.0, 60.0]]      # same class, far away
    fused, _ = detect_and_fuse(truths, [2, 2, 4, 2], g)
    assert len(fused.boxes) == 4
    order = np.lexsort((fused.boxes[:, 1], fused.boxes[:, 0]))
    got = fused.boxes[order]
    want = np.array(sorted(truths, key=lambda b: (b[0], b[1])), np.float32)
    np.testing.assert_allclose(got, want)


def test_boxes_from_one_tile_are_not_fused():
    g = TileGrid.build(224, 416, T, T, 32)
    boxes = np.array([[10, 10, 50, 50], [20, 20, 60, 60]], np.float32)   # overlapping, same tile
    fused = fuse_cross_tile(boxes, np.array([0.9, 0.8]), np.array([0, 0]), np.array([0, 0]), g)
    assert len(fused.boxes) == 2


def test_connected_labels_chain():
    adj = np.zeros((5, 5), bool)
    for i, j in [(0, 3), (3, 1), (2, 4)]:
        adj[i, j] = adj[j, i] = True
    assert connected_labels(adj).tolist() == [0, 0, 2, 0, 2]


# --- stitching ------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(200, 150), (417, 1000), (600, 803)])
def test_stitch_puts_pixels_back_where_they_were(h, w):
    rng = np.random.default_rng(4)
    s = 4
    truth = rng.integers(0, s, (h, w)).astype(np.uint8)
    g = TileGrid.build(h, w, T, T, 32)
    probs = rng.uniform(0, 0.2, (g.n, s, T, T)).astype(np.float32)    # garbage in padding
    for n in range(g.n):
        x0, y0 = tile_view(g, n)
        x1, y1, x2, y2 = g.rects[n]
        region = truth[y1:y2, x1:x2]
        onehot = (region[None] == np.arange(s)[:, None, None]).astype(np.float32) * 0.9 + 0.025
        probs[n, :, y1 - y0:y2 - y0, x1 - x0:x2 - x0] = onehot
    stitcher = SegStitcher(g)
    labels, conf = stitcher.stitch(probs)
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_allclose(conf, 0.925, rtol=1e-6)
    # the same from per-tile arg-max maps (a backend that reduces on the device)
    labels2, conf2 = SegStitcher(g).stitch_labels(probs.argmax(1).astype(np.uint8), probs.max(1))
    np.testing.assert_array_equal(labels2, truth)
    np.testing.assert_array_equal(conf2, conf)


def test_stitch_takes_each_pixel_from_the_tile_where_it_is_farther_from_the_edge():
    g = TileGrid.build(224, 416, T, T, 32)     # overlap columns 192..223
    probs = np.zeros((2, 3, T, T), np.float32)
    probs[0, 1] = 1.0                          # tile 0 says class 1 everywhere
    probs[1, 2] = 1.0                          # tile 1 says class 2
    stitcher = SegStitcher(g)
    labels, _ = stitcher.stitch(probs)
    cols = labels[0]
    for x in range(416):
        d0 = 224 - x if x < 224 else -1        # distance to tile 0's right edge
        d1 = x - 192 + 1 if x >= 192 else -1   # distance to tile 1's left edge
        assert cols[x] == (1 if d0 > d1 or (d0 == d1 and x < 208) else 2), x
    # the stitched maps are reused between frames
    assert stitcher.stitch(probs)[0] is labels


@pytest.mark.parametrize("pad", ["mean", "reflect", "constant"])
@pytest.mark.parametrize("shape", [(200, 200), (180, 224), (1, 1), (100, 37)])
def test_a_frame_padded_straight_into_the_batch_is_the_same_tile(pad, shape):
    # A Mono8 frame padded to one tile skips the canvas; the tile must be what the canvas gives.
    rng = np.random.default_rng(3)
    grid = TileGrid.build(shape[0], shape[1], 224, 224, 32)
    direct = TileCutter(grid, shape, 1, pad=pad)
    via_canvas = TileCutter(grid, shape, 1, pad=pad)
    assert direct._pad_into_batch
    via_canvas._pad_into_batch, via_canvas._canvas = False, np.empty((224, 224), np.uint8)
    for _ in range(3):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(direct.cut(image), via_canvas.cut(image))
