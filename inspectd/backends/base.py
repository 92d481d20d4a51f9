"""The interface every inference backend implements; the pipeline knows nothing else."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs the model's inference graph on a batch of tiles.

    ``infer`` takes uint8 tiles [N, C, H, W] (C = the model's input channels, H and W
    its input size) and returns:

    - det: float32 [N, A, 5 + nc]: per anchor x1, y1, x2, y2 in tile pixels,
      objectness probability, then per-class probabilities (before NMS);
    - seg: float32 [N, S, H, W]: per-pixel class probabilities (softmax over the
      S segmentation classes; index 0 is background).
    """

    name: str
    input_size: tuple[int, int]     # (H, W)
    channels: int
    class_names: list[str]          # detection classes, in model order
    seg_class_names: list[str]      # segmentation classes, index 0 = "background"

    def infer(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    # Optional: ``infer_labels(tiles) -> (det, labels uint8 [N, H, W], conf float32 [N, H, W])``,
    # the segmentation arg-max done by the backend (on a GPU it copies back 8x less data). The
    # inference stage uses it when present.
    #
    # Optional: ``output_generations: int | None``: a backend that returns views of buffers it
    # reuses says for how many calls an output stays valid (None or absent: fresh arrays every
    # call). The inference stage copies outputs when that is fewer than its frames in flight.
    #
    # Optional: ``concurrent_calls: int``: how many calls may run at once from different
    # threads (OpenVINO streams); 1 if absent.

    def close(self) -> None: ...
