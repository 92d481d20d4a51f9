"""A folder of still images, in file-name order: for tests and for frames saved by other tools."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.sources.base import CorruptFrames, PositionFn
from inspectd.runtime.sources.jpeg_check import jpeg_damage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")


class FolderSource:
    """The images of one folder (not its subfolders), sorted by file name.

    Every image must have the size of the first; an image that cannot be read or has
    another size is an error naming the file.
    """

    live = False

    def __init__(self, path: str | Path, camera: str, channels: int = 1, loop: bool = False,
                 fps: float | None = None, position: PositionFn | None = None) -> None:
        self.path = Path(path)
        self.camera = camera
        self.channels = channels
        self.loop = loop
        self.nominal_fps = fps
        self.position = position
        if not self.path.exists():
            raise InspectdError(f"image folder {self.path}: not found")
        if not self.path.is_dir():
            raise InspectdError(f"image folder {self.path}: not a folder")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise InspectdError(
                f"image folder {self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in it"
            )
        self._flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
        self._shape: tuple[int, ...] | None = None      # the first image's, once read
        first = self._load(self.files[0])
        self.frame_shape: tuple[int, ...] = tuple(first.shape)
        self._shape = self.frame_shape
        self._next: np.ndarray | None = first
        self._index = 0
        self._passes = 0

    def _load(self, file: Path) -> np.ndarray:
        """The image's pixels. A damaged file is an error for the first image (it sets the
        size), ``CorruptFrames`` for any later one: reported uninspected, the folder read on."""
        try:
            data = np.fromfile(file, np.uint8)
        except OSError as exc:
            raise InspectdError(f"image {file}: cannot be read ({exc.strerror})") from None
        # libjpeg decodes a truncated JPEG without an error (grey where data is missing).
        damage = jpeg_damage(data) if file.suffix.lower() in (".jpg", ".jpeg") else None
        img = cv2.imdecode(data, self._flag) if damage is None else None
        if img is None:
            what = f"{damage} JPEG" if damage else "not an image, or corrupt"
            if self._shape is not None:
                self._index += 1
                raise CorruptFrames(self._index - 1, 1, f"image {file}: cannot be read whole ({what})")
            raise InspectdError(f"image {file}: cannot be read ({what})")
        if img.dtype != np.uint8:
            raise InspectdError(f"image {file}: {img.dtype} pixels, expected 8-bit")
        if self._shape is not None and img.shape != self._shape:
            raise InspectdError(
                f"image {file}: {' x '.join(map(str, img.shape))}, but the folder's first image is "
                f"{' x '.join(map(str, self._shape))}; all images must have one size"
            )
        return img

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._next is not None:
            img, self._next = self._next, None
        else:
            pos = self._index - self._passes * len(self.files)
            if pos >= len(self.files):
                if not self.loop:
                    return None
                self._passes += 1
                pos = 0
            img = self._load(self.files[pos])
        index = self._index
        self._index += 1
        return Frame(
            index=index, image=img, camera=self.camera,
            capture_ns=time.monotonic_ns(), capture_wall_ns=time.time_ns(),
            strip_position_m=self.position(index) if self.position else None,
        )

    def stop(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "folder", "path": str(self.path), "frames": self._index, "passes": self._passes,
            "images": len(self.files), "frame_id_gaps": 0, "frames_lost": 0,
        }
