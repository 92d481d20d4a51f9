"""The torch backend on CUDA gives what it gives on the CPU (fp32 and fp16). Needs a CUDA
device; skipped cleanly without one."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from inspectd.backends.torch_backend import TorchBackend
from inspectd.runtime.frame import Frame
from inspectd.runtime.inference import InferenceConfig, InferenceStage
from inspectd.runtime.merge import MergeConfig
from lively_model import lively_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def model_cfg():
    return lively_model()


@pytest.fixture(scope="module")
def tiles():
    return np.random.default_rng(0).integers(0, 256, (3, 1, 224, 224), dtype=np.uint8)


@pytest.fixture(scope="module")
def cpu_out(model_cfg, tiles):
    model, cfg = model_cfg
    b = TorchBackend.from_model(copy.deepcopy(model), cfg, device="cpu")
    det, seg = b.infer(tiles)
    return det.copy(), seg.copy()


def backend(model_cfg, half: bool) -> TorchBackend:
    model, cfg = model_cfg
    return TorchBackend.from_model(copy.deepcopy(model), cfg, device="cuda", half=half)


def compare(det, seg, ref_det, ref_seg, box_px: float, prob: float, argmax_agree: float):
    assert det.dtype == np.float32 and seg.dtype == np.float32
    assert det.shape == ref_det.shape and seg.shape == ref_seg.shape
    np.testing.assert_allclose(det[..., :4], ref_det[..., :4], atol=box_px)
    np.testing.assert_allclose(det[..., 4:], ref_det[..., 4:], atol=prob)
    np.testing.assert_allclose(seg, ref_seg, atol=prob)
    assert (seg.argmax(1) == ref_seg.argmax(1)).mean() >= argmax_agree


@pytest.fixture
def no_tf32():
    """True fp32 on the device: cuDNN's default TF32 convolutions round like fp16."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_fp32_matches_cpu(model_cfg, tiles, cpu_out, no_tf32):
    b = backend(model_cfg, half=False)
    compare(*b.infer(tiles), *cpu_out, box_px=0.5, prob=5e-3, argmax_agree=0.995)
    b.close()


def test_fp16_matches_cpu(model_cfg, tiles, cpu_out):
    b = backend(model_cfg, half=True)
    assert b.half and next(b.graph.parameters()).dtype == torch.float16
    compare(*b.infer(tiles), *cpu_out, box_px=2.0, prob=3e-2, argmax_agree=0.98)
    b.close()


def test_cuda_path_uses_own_stream_and_pinned_reused_buffers(model_cfg, tiles, cpu_out, no_tf32):
    b = backend(model_cfg, half=False)
    assert b._stream != torch.cuda.default_stream(b.device)
    det1, _ = b.infer(tiles)
    host_in = b._in_host
    assert host_in.is_pinned() and all(t.is_pinned() for t in b._host_out[("probs", 0)])
    first = det1.copy()
    det2, _ = b.infer(tiles)
    assert b._in_host is host_in                         # reused for the same batch shape
    np.testing.assert_allclose(det2, first, atol=1e-4)    # and the answer is the same
    # a different batch size gets new buffers and still the right answer
    det_one, seg_one = b.infer(tiles[1:2].copy())
    assert det_one.shape[0] == 1
    np.testing.assert_allclose(seg_one[0], cpu_out[1][1], atol=5e-3)
    b.close()


@pytest.mark.parametrize("half", [False, True])
def test_labels_reduced_on_the_device_match_cpu(model_cfg, tiles, cpu_out, no_tf32, half):
    b = backend(model_cfg, half=half)
    det, labels, conf = b.infer_labels(tiles)
    ref_det, ref_seg = cpu_out
    assert labels.dtype == np.uint8 and conf.dtype == np.float32 and labels.shape == (3, 224, 224)
    assert all(t.is_pinned() for t in b._host_out[("labels", 0)])
    np.testing.assert_allclose(det[..., 4:], ref_det[..., 4:], atol=3e-2 if half else 5e-3)
    assert (labels == ref_seg.argmax(1)).mean() >= (0.98 if half else 0.995)
    np.testing.assert_allclose(conf, ref_seg.max(1), atol=3e-2 if half else 5e-3)
    b.close()


def test_stage_on_cuda_matches_cpu(model_cfg, no_tf32):
    model, cfg = model_cfg
    img = np.random.default_rng(1).integers(0, 256, (300, 500), dtype=np.uint8)
    fr = Frame(index=0, image=img, camera="c", capture_ns=time.monotonic_ns(), capture_wall_ns=time.time_ns())
    icfg = InferenceConfig(device="cuda", half=False)
    out = {}
    for dev in ("cpu", "cuda"):
        b = TorchBackend.from_model(copy.deepcopy(model), cfg, device=dev)
        stage = InferenceStage(b, icfg, MergeConfig())
        out[dev] = stage.process_with_mask(fr)
        stage.close()
    (v_cpu, lab_cpu), (v_gpu, lab_gpu) = out["cpu"], out["cuda"]
    assert (lab_cpu == lab_gpu).mean() >= 0.995
    assert abs(len(v_cpu.defects) - len(v_gpu.defects)) <= max(2, len(v_cpu.defects) // 10)


def test_output_sets_rotate_so_an_output_survives_the_next_call(model_cfg, tiles):
    """With frames in flight the stage reads frame i's outputs while the model runs frame
    i + 1: with two output sets, the second call must not overwrite the first call's arrays."""
    model, cfg = model_cfg
    b = TorchBackend.from_model(copy.deepcopy(model), cfg, device="cuda", output_sets=2)
    assert b.output_generations == 2
    first = b.infer(tiles[:1])
    keep = [a.copy() for a in first]
    b.infer(tiles[1:2])                          # another frame: other pixels, other outputs
    for a, k in zip(first, keep):
        np.testing.assert_array_equal(a, k)
    third = b.infer(tiles[2:3])
    assert np.shares_memory(third[0], first[0])  # the third call reuses the first set
