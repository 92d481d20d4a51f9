"""The start-up self-test: a known tile through the whole inference stage, its result checked.

A model can load and still be broken: weights that overflow to NaN or inf in some layer, a
runtime that miscomputes at the chosen precision, a file whose weights were zeroed. Such a
model passes every frame as ``ok`` or rejects every one, silently. Before the first frame,
the service therefore runs one frame made of a known strip image (``selftest_tile.png``:
NEU ``patches_155``, bright and dark regions) and of its negative through the backend call
the stage itself uses, and the first frame through decode and merge, and checks:

- the raw outputs: the shapes the Backend protocol promises, every value finite,
  probabilities within [0, 1] (segmentation summing to 1 per pixel);
- that the outputs depend on the input: a picture and its negative give different outputs
  (a constant model, whatever its weights, does not);
- the verdict: scores within [0, 1], boxes finite and inside the frame, label map of the
  frame's size with known classes.

The frame has the source's own size, so the test also compiles and warms the runtime for
the batch the real frames give (the first real frame is then not slow). Any failure is one
line naming the model and the backend; the status is 78 (a configuration problem: the model
file, or the backend and precision the config chose, fails the same way every time).
"""
from __future__ import annotations

import time
from importlib import resources

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame

EXIT_CONFIG = 78
_PROB_TOL = 2e-2       # bf16 and fp16 round probabilities by up to ~1 %


def known_tile() -> np.ndarray:
    """The self-test's strip image: 200 x 200 Mono8."""
    data = resources.files("inspectd.runtime").joinpath("selftest_tile.png").read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:     # the package itself is damaged
        raise InspectdError("self-test: inspectd's selftest_tile.png cannot be decoded; reinstall inspectd")
    return img


def test_frame(shape: tuple[int, ...], negative: bool = False) -> np.ndarray:
    """A frame of ``shape`` (H x W or H x W x 3) tiled with the known image (or its negative)."""
    tile = known_tile()
    if negative:
        tile = 255 - tile
    h, w = shape[:2]
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]))
    img = np.ascontiguousarray(np.tile(tile, reps)[:h, :w])
    if len(shape) == 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img


def _fail(where: str, what: str) -> InspectdError:
    return InspectdError(f"{where}: self-test failed: {what}", exit_code=EXIT_CONFIG)


def _check_probs(where: str, name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.isfinite(a).sum())
        raise _fail(where, f"{bad} of {a.size} values of its {name} output are NaN or infinite")
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    if lo < -_PROB_TOL or hi > 1 + _PROB_TOL:
        raise _fail(where, f"its {name} probabilities run from {lo:.3g} to {hi:.3g}, outside [0, 1]")


def check_outputs(where: str, out: tuple, n: int, backend) -> None:
    """The Backend protocol's promises on one call's outputs for ``n`` tiles."""
    nc, ns = len(backend.class_names), len(backend.seg_class_names)
    h, w = (int(s) for s in backend.input_size)
    det = np.asarray(out[0])
    if det.ndim != 3 or det.shape[0] != n or det.shape[2] != 5 + nc:
        raise _fail(where, f"detection output has shape {det.shape}, expected [{n}, anchors, {5 + nc}]")
    if not np.isfinite(det[..., :4]).all():
        raise _fail(where, "its boxes hold NaN or infinite values")
    _check_probs(where, "detection", det[..., 4:])
    if len(out) == 2:
        seg = np.asarray(out[1])
        if seg.shape != (n, ns, h, w):
            raise _fail(where, f"segmentation output has shape {seg.shape}, expected {(n, ns, h, w)}")
        _check_probs(where, "segmentation", seg)
        total = seg.sum(axis=1)
        if np.abs(total - 1).max() > 3 * _PROB_TOL:
            raise _fail(where, f"its segmentation probabilities sum to {float(total.min()):.3g}..."
                               f"{float(total.max()):.3g} per pixel, not 1")
    else:
        labels, conf = np.asarray(out[1]), np.asarray(out[2])
        if labels.shape != (n, h, w) or conf.shape != (n, h, w):
            raise _fail(where, f"label outputs have shapes {labels.shape} and {conf.shape}, expected {(n, h, w)}")
        if labels.size and int(labels.max()) >= ns:
            raise _fail(where, f"it labels pixels with class {int(labels.max())}; the model has {ns}")
        _check_probs(where, "segmentation confidence", conf)


def _differ(a: tuple, b: tuple) -> bool:
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype == np.uint8:
            if (x != y).any():
                return True
        elif x.size and float(np.abs(x.astype(np.float32) - y.astype(np.float32)).max()) > 1e-4:
            return True
    return False


def run_self_test(stage, frame_shape: tuple[int, ...], where: str) -> dict:
    """Check ``stage`` (an ``InferenceStage`` with its backend) on the known image; returns
    what it found (for the start-up log); raises ``InspectdError`` (exit 78) on a failure."""
    t0 = time.monotonic()
    image, negative = test_frame(frame_shape), test_frame(frame_shape, negative=True)
    outs = []
    for img in (image, negative):
        try:
            n, out = stage.call_model(img)
        except InspectdError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run the model at all
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise _fail(where, f"the model call raised {type(exc).__name__}: {first}") from None
        out = tuple(np.array(a, copy=True) for a in out)    # a backend may reuse its buffers
        check_outputs(where, out, n, stage.backend)
        outs.append(out)
    if not _differ(outs[0], outs[1]):
        raise _fail(where, "its outputs are the same for a strip image and its negative: the model does "
                           "not respond to its input (zeroed or saturated weights)")
    h, w = frame_shape[:2]
    t_frame = time.monotonic()
    verdict, labels = stage.process_with_mask(Frame(index=0, image=image, camera="self-test",
                                                    capture_ns=time.monotonic_ns(), capture_wall_ns=time.time_ns()))
    known = set(stage.class_names) | set(stage.seg_class_names)
    for d in verdict.defects:
        box = np.asarray(d.box, np.float64)
        if not (np.isfinite(box).all() and np.isfinite(d.score)):
            raise _fail(where, f"a {d.cls} defect with a non-finite box or score")
        if not 0 <= d.score <= 1 + _PROB_TOL:
            raise _fail(where, f"a {d.cls} defect scored {d.score:.3g}")
        if box[0] < -1 or box[1] < -1 or box[2] > w + 1 or box[3] > h + 1 or box[2] < box[0] or box[3] < box[1]:
            raise _fail(where, f"a {d.cls} defect box {box.round(1).tolist()} outside the {w} x {h} frame")
        if d.cls not in known:
            raise _fail(where, f"a defect of unknown class {d.cls!r}")
    if labels.shape != (h, w):
        raise _fail(where, f"label map of {labels.shape}, the frame is {(h, w)}")
    return {"status": verdict.status, "defects": len(verdict.defects),
            "classes": sorted({d.cls for d in verdict.defects}), "ms": round((time.monotonic() - t0) * 1e3),
            "frame_ms": round((time.monotonic() - t_frame) * 1e3, 1)}     # one warm frame, end to end
