"""Small real stand-ins for tests of the service: a backend whose speed the test controls, recordings.

The backend is a fake only in the sense the standards allow: nothing real can be made
deliberately slow. It finds bright square "defects" by thresholding, so verdicts depend on
the pixels and a test can check that the right frames are rejected.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from inspectd.backends.base import BackendDefaults

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
SEG_CLASSES = ["background", "inclusion", "patches", "scratches"]


class ThresholdBackend(BackendDefaults):
    """Pixels above ``level`` are 'inclusion' (a box over them, a mask under them)."""

    name = "threshold-stand-in"

    def __init__(self, input_size=(200, 200), channels: int = 1, delay_s: float = 0.0, level: int = 200):
        self.input_size = input_size
        self.channels = channels
        self.class_names = list(CLASSES)
        self.seg_class_names = list(SEG_CLASSES)
        self.delay_s = delay_s
        self.level = level
        self.calls = 0
        self.started = threading.Event()      # set once the first infer() began
        self.gate: threading.Event | None = None   # if set, infer() waits for it (a stalled model)
        self.closed = False

    def infer(self, tiles: np.ndarray):
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        self.calls += 1
        n, _, h, w = tiles.shape
        nc = len(self.class_names)
        det = np.zeros((n, 1, 5 + nc), np.float32)
        seg = np.zeros((n, len(self.seg_class_names), h, w), np.float32)
        seg[:, 0] = 1.0
        for i in range(n):
            mask = tiles[i, 0] > self.level
            if mask.any():
                ys, xs = np.nonzero(mask)
                det[i, 0, :4] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                det[i, 0, 4] = 0.95
                det[i, 0, 5 + 1] = 0.95          # inclusion
                seg[i, 0][mask] = 0.0
                seg[i, 1][mask] = 1.0
        return det, seg

    def close(self) -> None:
        self.closed = True


class FailingBackend(ThresholdBackend):
    """A model that fails for good from its ``fail_at``-th call on (a lost device)."""

    def __init__(self, fail_at: int, **kw):
        super().__init__(**kw)
        self.fail_at = fail_at
        self.attempts = 0

    def infer(self, tiles: np.ndarray):
        self.attempts += 1
        if self.attempts >= self.fail_at:
            raise RuntimeError("device lost")
        return super().infer(tiles)


def write_video(path: Path, frames: int, size=(320, 240), fps: float = 25.0,
                defect_every: int = 0) -> list[bool]:
    """A grey MJPG .avi of ``frames`` frames; every ``defect_every``-th frame has a bright square.

    Returns, per frame, whether it has a defect (the ground truth).
    """
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    truth = []
    for i in range(frames):
        img = np.clip(rng.normal(100, 8, (h, w)), 0, 255).astype(np.uint8)
        has = bool(defect_every) and i % defect_every == 0
        if has:
            img[100:130, 150:190] = 250
        cv2.putText(img, str(i), (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 60, 1)
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
        truth.append(has)
    writer.release()
    return truth


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """An untrained checkpoint of the smallest preset: a real model file, fast to run, no skill."""
    import torch

    from inspectd.model.checkpoint import save_checkpoint
    from inspectd.model.config import load_preset
    from inspectd.model.network import build_model

    torch.manual_seed(seed)
    return save_checkpoint(build_model(load_preset("n")).eval(), path)
