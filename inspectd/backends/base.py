"""The interface every inference backend implements; the pipeline knows nothing else."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

#: ``infer_labels``: tiles -> (det, labels uint8 [N, H, W], conf float32 [N, H, W]).
InferLabels = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


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

    def close(self) -> None: ...

    # Capabilities a backend may lack: every backend declares them, ``BackendDefaults`` holds
    # the values that say "not offered". Read-only here, so a plain attribute or a method serves.

    @property
    def precision(self) -> str | None:
        """What the model computes in ("fp32", "bf16", "int8+bf16", ...), for logs and bench;
        None where the backend does not say."""
        ...

    @property
    def infer_labels(self) -> InferLabels | None:
        """``infer`` with the segmentation arg-max done by the backend (on a GPU it copies back
        8x less data); None: the inference stage stitches ``infer``'s probabilities itself."""
        ...

    @property
    def output_generations(self) -> int | None:
        """A backend that returns views of buffers it reuses says for how many calls an output
        stays valid (None: fresh arrays every call). The inference stage copies outputs when
        that is fewer than its frames in flight."""
        ...

    @property
    def concurrent_calls(self) -> int:
        """How many calls may run at once from different threads (OpenVINO streams)."""
        ...


def backend_label(backend: Backend) -> str:
    """The backend as logs and errors name it: "openvino bf16", "torch fp32"."""
    return f"{backend.name} {backend.precision}" if backend.precision else backend.name


class BackendDefaults:
    """The "not offered" value of every optional capability, for a backend (or a stand-in in
    the tests) that has none of them: subclass it and define ``infer`` and the model fields."""

    precision: str | None = None
    infer_labels: InferLabels | None = None
    output_generations: int | None = None
    concurrent_calls: int = 1

    def close(self) -> None:
        pass
