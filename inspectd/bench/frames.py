"""The bench's frames: a lossless recording cut from the NEU sample strip (or a synthetic
texture), and the frames read back from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inspectd.errors import InspectdError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "neu_strip.mkv"


def _texture_pool() -> list[np.ndarray]:
    """Grey strip frames to cut bench frames from: the NEU sample recording, else noise."""
    import cv2

    pool: list[np.ndarray] = []
    if SAMPLE.is_file():
        cap = cv2.VideoCapture(str(SAMPLE))
        while True:
            ok, img = cap.read()
            if not ok:
                break
            pool.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        cap.release()
    if not pool:
        rng = np.random.default_rng(0)
        for _ in range(8):
            img = cv2.GaussianBlur(rng.normal(120, 25, (480, 640)).astype(np.float32), (0, 0), 2)
            pool.append(np.clip(img, 0, 255).astype(np.uint8))
    return pool


def write_recording(path: Path, frames: int, size: tuple[int, int], fps: float = 50.0) -> str:
    """``frames`` grey frames of ``size`` (H, W) as lossless FFV1; returns where the pixels came from."""
    import cv2

    h, w = size
    pool = _texture_pool()
    source = f"cut from {SAMPLE.name}" if SAMPLE.is_file() else "synthetic texture"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), fps, (w, h), False)
    if not writer.isOpened():
        raise InspectdError(f"bench: OpenCV cannot write an FFV1 recording at {path}")
    try:
        for i in range(frames):
            base = pool[i % len(pool)]
            ph, pw = base.shape
            if ph < h or pw < w:   # larger frames than the sample: mirror-tile it
                base = np.pad(base, ((0, max(0, h - ph)), (0, max(0, w - pw))), mode="symmetric")
                ph, pw = base.shape
            y = (i * 37) % (ph - h + 1)
            x = (i * 53) % (pw - w + 1)
            writer.write(np.ascontiguousarray(base[y:y + h, x:x + w]))
    finally:
        writer.release()
    return source


def read_frames(path: Path, camera: str = "bench") -> list:
    """Every frame of the recording as owned ``Frame`` objects, read by the source the pipeline
    opens for it (``open_source``)."""
    from inspectd.runtime.sources import SourceConfig, open_source

    src = open_source(SourceConfig(kind="video", path=str(path), channels=1), camera)
    out = []
    try:
        while (f := src.read()) is not None:
            f.image = f.image.copy()
            out.append(f)
    finally:
        src.stop()
    return out
