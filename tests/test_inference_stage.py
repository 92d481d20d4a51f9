"""The inference stage end to end: frames in, one verdict per frame out.

Two kinds of backend: deterministic test backends (real classes implementing the Backend
protocol) whose answers we know, to check tiling, frame coordinates, fusion and merge end
to end; and the real network (the "n" preset, random weights, saved and loaded as a real
checkpoint) for shapes, channels and wiring.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
from lively_model import lively_model

from inspectd.backends import create_backend
from inspectd.backends.base import BackendDefaults
from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.inference import InferenceConfig, InferenceStage
from inspectd.runtime.merge import MergeConfig
from inspectd.runtime.tiling import TileGrid

DET = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
SEG = ["background", "inclusion", "patches", "scratches"]
T = 224
A = 16   # anchors per tile the test backends return


def frame(image: np.ndarray, index: int = 0) -> Frame:
    return Frame(index=index, image=image, camera="cam-test", capture_ns=time.monotonic_ns(),
                 capture_wall_ns=time.time_ns())


class OneBoxBackend(BackendDefaults):
    """Says: one `patches` defect at a chosen box in one chosen tile, with a matching
    segmented region there; background everywhere else."""

    name = "one-box"
    input_size = (T, T)
    channels = 1
    class_names = DET
    seg_class_names = SEG

    def __init__(self, tile: int, box: tuple[int, int, int, int], score: float = 0.8):
        self.tile, self.box, self.score = tile, box, score
        self.calls: list[tuple[int, ...]] = []

    def infer(self, tiles):
        self.calls.append(tiles.shape)
        n = tiles.shape[0]
        det = np.zeros((n, A, 5 + len(DET)), np.float32)
        seg = np.zeros((n, len(SEG), T, T), np.float32)
        seg[:, 0] = 1.0
        x1, y1, x2, y2 = self.box
        det[self.tile, 0, :4] = self.box
        det[self.tile, 0, 4] = self.score
        det[self.tile, 0, 5 + DET.index("patches")] = 1.0
        seg[self.tile, 0, y1:y2, x1:x2] = 0.1
        seg[self.tile, SEG.index("patches"), y1:y2, x1:x2] = 0.9
        return det, seg

    def close(self):
        pass


class BrightBlobBackend(BackendDefaults):
    """A real, if simple, detector: every bright blob (> 200) a tile shows is a `scratches`
    defect, reported as its box in tile pixels and as its pixels in the segmentation.
    A blob cut by a tile edge is reported as the part that tile sees, as a network would."""

    name = "bright-blob"
    input_size = (T, T)
    channels = 1
    class_names = DET
    seg_class_names = SEG

    def infer(self, tiles):
        n = tiles.shape[0]
        det = np.zeros((n, A, 5 + len(DET)), np.float32)
        seg = np.zeros((n, len(SEG), T, T), np.float32)
        for i in range(n):
            mask = tiles[i, 0] > 200
            k, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
            for j, (x, y, w, h, _) in enumerate(stats[1:A + 1]):
                det[i, j, :4] = (x, y, x + w, y + h)
                det[i, j, 4] = 0.9
                det[i, j, 5 + DET.index("scratches")] = 1.0
            seg[i, 0] = ~mask
            seg[i, SEG.index("scratches")] = mask
        return det, seg

    def close(self):
        pass


def stage_with(backend, **cfg) -> InferenceStage:
    return InferenceStage(backend, InferenceConfig(**cfg), MergeConfig())


# --- frame coordinates end to end (test backends) ------------------------------------------------
def test_box_in_one_tile_comes_back_in_frame_coordinates():
    img = np.zeros((300, 500), np.uint8)
    grid = TileGrid.build(300, 500, T, T, 32)
    assert grid.n == 6 and grid.ys.tolist() == [0, 76] and grid.xs.tolist() == [0, 138, 276]
    backend = OneBoxBackend(tile=4, box=(80, 80, 120, 120))           # row 1, column 1: origin (138, 76)
    v = stage_with(backend).process(frame(img, index=7))
    assert backend.calls == [(6, 1, T, T)]                            # one batch for the whole frame
    assert len(v.defects) == 1
    d = v.defects[0]
    assert (d.cls, d.branch, d.area_px) == ("patches", "both", 1600)
    assert d.box == (218.0, 156.0, 258.0, 196.0)
    assert v.status == "reject" and d.rejects
    assert (v.meta.index, v.meta.height, v.meta.width, v.meta.camera) == (7, 300, 500, "cam-test")
    assert 0 < v.inference_start_ns <= v.inference_end_ns


def test_nothing_found_is_an_ok_verdict():
    v = stage_with(BrightBlobBackend()).process(frame(np.full((300, 500), 90, np.uint8)))
    assert v.status == "ok" and v.defects == []


@pytest.mark.parametrize("shape,rect", [
    ((224, 416), (150, 60, 300, 120)),          # across the vertical seam of two tiles
    ((500, 700), (150, 170, 330, 350)),         # across the corner of four tiles
    ((300, 900), (30, 140, 870, 146)),          # a long thin scratch across every tile of a row
    ((224, 416), (200, 100, 216, 110)),         # small, inside the overlap: seen whole twice
])
def test_defect_cut_by_tile_edges_is_reported_once(shape, rect):
    img = np.full(shape, 90, np.uint8)
    x1, y1, x2, y2 = rect
    img[y1:y2, x1:x2] = 255
    stage = stage_with(BrightBlobBackend())
    verdict, labels = stage.process_with_mask(frame(img))
    assert len(verdict.defects) == 1, verdict.defects
    d = verdict.defects[0]
    assert d.box == tuple(float(v) for v in rect)
    assert (d.cls, d.branch) == ("scratches", "both")
    assert d.area_px == (x2 - x1) * (y2 - y1)                          # stitched mask: each pixel once
    want = np.zeros(shape, np.uint8)
    want[y1:y2, x1:x2] = SEG.index("scratches")
    np.testing.assert_array_equal(labels, want)


def test_separate_defects_on_both_sides_of_a_seam_stay_separate():
    img = np.full((224, 416), 90, np.uint8)
    img[20:60, 150:300] = 255       # crosses the seam
    img[150:200, 40:80] = 255       # tile 0 only
    img[150:200, 330:380] = 255     # tile 1 only
    v = stage_with(BrightBlobBackend()).process(frame(img))
    assert sorted(d.box for d in v.defects) == [(40.0, 150.0, 80.0, 200.0), (150.0, 20.0, 300.0, 60.0),
                                                (330.0, 150.0, 380.0, 200.0)]


@pytest.mark.parametrize("shape", [(100, 150), (100, 150, 3), (224, 300, 3)])
def test_small_and_colour_frames_map_back(shape):
    img = np.full(shape, 90, np.uint8)
    img[30:50, 60:140] = 255
    v = stage_with(BrightBlobBackend()).process(frame(img))
    assert [d.box for d in v.defects] == [(60.0, 30.0, 140.0, 50.0)]
    assert (v.meta.height, v.meta.width) == shape[:2]


def test_mask_returned_is_the_callers_copy():
    img = np.full((224, 224), 90, np.uint8)
    img[10:20, 10:20] = 255
    stage = stage_with(BrightBlobBackend())
    _, labels = stage.process_with_mask(frame(img))
    stage.process(frame(np.full((224, 224), 90, np.uint8)))
    assert labels[15, 15] == SEG.index("scratches")


def test_stage_refuses_bad_frames_and_settings():
    with pytest.raises(InspectdError, match="tile_overlap_px"):
        stage_with(BrightBlobBackend(), tile_overlap_px=T)
    stage = stage_with(BrightBlobBackend())
    with pytest.raises(InspectdError, match="frame: expected a uint8"):
        stage.process(frame(np.zeros((100, 100), np.float32)))
    with pytest.raises(InspectdError, match="frame: expected a uint8"):
        stage.process(frame(np.zeros((100, 100, 4), np.uint8)))


# --- the real network --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from inspectd.model.checkpoint import save_checkpoint
    model, _ = lively_model()
    return save_checkpoint(model, tmp_path_factory.mktemp("model") / "random-n.safetensors")


@pytest.fixture(scope="module")
def real_stage(checkpoint):
    cfg = InferenceConfig(model=checkpoint, backend="torch", device="cpu", threads=1)
    stage = InferenceStage(create_backend(cfg), cfg, MergeConfig())
    yield stage
    stage.close()


def test_real_model_backend_attributes(real_stage):
    b = real_stage.backend
    assert b.name == "torch" and b.input_size == (224, 224) and b.channels == 1
    assert b.class_names == DET and b.seg_class_names == SEG


@pytest.mark.parametrize("shape", [(224, 300), (200, 200, 3), (100, 80)])
def test_real_model_one_verdict_per_frame(real_stage, shape):
    rng = np.random.default_rng(5)
    for i in range(2):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        v, labels = real_stage.process_with_mask(frame(img, index=i))
        assert v.meta.index == i and (v.meta.height, v.meta.width) == shape[:2]
        assert v.status in ("ok", "reject") and v.inference_start_ns <= v.inference_end_ns
        assert labels.shape == shape[:2] and labels.dtype == np.uint8 and labels.max() < len(SEG)
        for d in v.defects:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0]
            assert d.cls in DET and 0 <= d.score <= 1 and d.area_px > 0


def test_real_model_single_tile_matches_the_graph(real_stage):
    """A frame of exactly one tile: the stitched map is the network's own arg-max."""
    img = np.random.default_rng(6).integers(0, 256, (224, 224), dtype=np.uint8)
    v, labels = real_stage.process_with_mask(frame(img))
    _, seg = real_stage.backend.infer(img[None, None].copy())
    np.testing.assert_array_equal(labels, seg[0].argmax(0))
    assert len(np.unique(labels)) > 1          # the test is not vacuous
    assert len(v.defects) > 0


def test_real_model_labels_reduced_in_backend_equal_argmax(real_stage):
    tiles = np.random.default_rng(7).integers(0, 256, (2, 1, 224, 224), dtype=np.uint8)
    det, seg = real_stage.backend.infer(tiles)
    det2, labels, conf = real_stage.backend.infer_labels(tiles)
    np.testing.assert_array_equal(det2, det)
    assert labels.dtype == np.uint8 and conf.dtype == np.float32
    np.testing.assert_array_equal(labels, seg.argmax(1))
    np.testing.assert_array_equal(conf, seg.max(1))


# --- backend creation errors ---------------------------------------------------------------------
def test_missing_model_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(InspectdError, match=rf"^inference.model: model file {missing} not found$"):
        create_backend(InferenceConfig(model=missing, device="cpu"))


def test_not_a_checkpoint_gives_the_loaders_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(InspectdError, match=rf"model file {bad}") as e:
        create_backend(InferenceConfig(model=bad, device="cpu"))
    assert "\n" not in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_a_device_is_refused_and_auto_picks_cpu(checkpoint):
    with pytest.raises(InspectdError, match="^inference.device: cuda requested but no CUDA device is available$"):
        create_backend(InferenceConfig(model=checkpoint, backend="torch", device="cuda"))
    b = create_backend(InferenceConfig(model=checkpoint, backend="torch", device="auto", threads=1))
    assert b.device.type == "cpu" and not b.half
    b.close()
