"""Drawing verdicts onto frames and writing them as a video (``inspectd replay --annotate``).

Boxes carry class and score, the segmentation label map is laid over the frame in the
class colours, a banner says OK (green) or REJECT (red) with the frame index. Writing runs
in its own thread behind a small bounded queue so that encoding does not sit in the
inference loop; the loop hands over a copy of the pixels because the ring-buffer slot is
reused as soon as it is released.
"""
from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import structlog

from inspectd.domain.verdicts import Verdict
from inspectd.errors import InspectdError

log = structlog.get_logger("inspectd.annotate")

OK_COLOUR = (40, 170, 40)
REJECT_COLOUR = (30, 30, 220)


def class_colour(name: str, class_names: list[str] | None = None) -> tuple[int, int, int]:
    """A BGR colour for any class name, the same on every run and machine, saturated and
    bright so that it stands out on grey steel. With the model's ``class_names``, the hue steps
    by the golden angle along that list (any number of classes, neighbours far apart); a name
    outside it gets a hue from a hash of the name."""
    h = hashlib.md5(name.encode()).digest()
    if class_names and name in class_names:
        hue = int((class_names.index(name) * 0.618034) % 1.0 * 180)   # OpenCV's hue runs 0..179
    else:
        hue = int.from_bytes(h[:2], "big") % 180
    hsv = np.array([[[hue, 190 + h[2] % 66, 235]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image.copy()


def draw_verdict(
    image: np.ndarray,
    verdict: Verdict,
    label_map: np.ndarray | None = None,
    seg_class_names: list[str] | None = None,
    mask_alpha: float = 0.45,
    class_names: list[str] | None = None,
) -> np.ndarray:
    """A BGR copy of ``image`` with the mask overlay, boxes, labels and the verdict banner."""
    out = _to_bgr(image)
    h, w = out.shape[:2]
    if label_map is not None and label_map.size and label_map.max() > 0:
        if label_map.shape[:2] != (h, w):
            label_map = cv2.resize(label_map.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        # One colour table through cv2.LUT, blended where a class is: a numpy pass per class
        # cost ~30 ms a 600 x 480 frame, enough to hold back the demo (inference waits for
        # this thread's queue); this costs ~5 ms, with the same pixels.
        label_map = label_map.astype(np.uint8, copy=False)
        n = len(seg_class_names) if seg_class_names else int(label_map.max()) + 1
        lut = np.zeros((256, 1, 3), np.uint8)
        for k in range(1, min(n, 256)):
            name = seg_class_names[k] if seg_class_names and k < len(seg_class_names) else f"class{k}"
            lut[k, 0] = class_colour(name, class_names)
        overlay = cv2.LUT(cv2.merge([label_map, label_map, label_map]), lut)
        blended = cv2.addWeighted(overlay, mask_alpha, out, 1 - mask_alpha, 0)
        cv2.copyTo(blended, (label_map > 0).view(np.uint8), out)

    scale = max(0.4, min(w, h) / 600)
    thick = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    reject = verdict.status == "reject"
    banner = f"{'REJECT' if reject else 'OK'}  frame {verdict.meta.index}  defects {len(verdict.defects)}"
    (bw, bh), bbase = cv2.getTextSize(banner, font, scale * 0.7, thick)
    banner_box = (bw + 12, bh + bbase + 10)      # top-left corner, drawn last so it stays readable
    for d in verdict.defects:
        colour = class_colour(d.cls, class_names)
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick + (1 if d.rejects else 0))
        label = f"{d.cls} {d.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, font, scale * 0.5, thick)
        ty = y1 - 3
        under_banner = x1 < banner_box[0] and ty - th - 3 < banner_box[1]
        if ty - th - 6 < 0 or under_banner:
            ty = min(h - 1, max(y1, banner_box[1] if under_banner else 0) + th + 3)
        cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 1), colour, -1)
        cv2.putText(out, label, (x1 + 2, ty - 1), font, scale * 0.5, (0, 0, 0), thick, cv2.LINE_AA)

    cv2.rectangle(out, (0, 0), banner_box, REJECT_COLOUR if reject else OK_COLOUR, -1)
    cv2.putText(out, banner, (6, bh + 5), font, scale * 0.7, (255, 255, 255), thick, cv2.LINE_AA)
    return out


class VideoSink:
    """Writes BGR frames to ``path``: mp4 (mp4v) if this OpenCV can, else .avi (MJPG).

    The video is written under a ``.partial`` name beside ``path`` and renamed to ``path`` only
    once it is closed and reads back with every frame written: a disk that fills up (OpenCV's
    writer does not report failed writes) or any other write error never leaves a broken file
    under the name the user asked for. Writing stops, with one error, as soon as the folder's
    free space falls under what the next frames and the file's index need.
    """

    def __init__(self, path: str | Path, fps: float):
        self.requested = Path(path)
        self.path = self.requested
        self.fps = fps if fps and fps > 0 else 10.0
        self.frames = 0
        self.partial: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        suffix = self.requested.suffix.lower()
        if suffix not in (".mp4", ".avi"):
            raise InspectdError(f"--annotate {self.requested}: the file name must end in .mp4 or .avi")
        if not self.requested.parent.is_dir():
            raise InspectdError(f"--annotate {self.requested}: folder {self.requested.parent} does not exist")

    @staticmethod
    def _partial_of(path: Path) -> Path:
        # The container is chosen from the suffix, so it stays last.
        return path.with_name(f"{path.stem}.partial{path.suffix}")

    def _open(self, size: tuple[int, int]) -> None:
        tries = [("mp4v", self.requested)] if self.requested.suffix.lower() == ".mp4" else []
        tries.append(("MJPG", self.requested.with_suffix(".avi")))
        for fourcc, path in tries:
            partial = self._partial_of(path)
            writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                if path != self.requested:
                    log.warning(
                        "annotate_fallback", requested=str(self.requested), path=str(path),
                        reason="this OpenCV build cannot write mp4 (mp4v); writing MJPG .avi instead",
                    )
                self._writer, self.path, self.partial = writer, path, partial
                return
            writer.release()
            partial.unlink(missing_ok=True)
        raise InspectdError(f"--annotate {self.requested}: OpenCV cannot write this file (tried mp4v and MJPG)")

    def _fail(self, what: str) -> InspectdError:
        self.abort()
        return InspectdError(f"--annotate {self.path}: {what}; the incomplete video was removed", exit_code=1)

    def _check_space(self) -> None:
        """Stop before the disk is full: OpenCV would go on 'writing' frames that never land."""
        assert self.partial is not None
        free = shutil.disk_usage(self.partial.parent).free
        size = self.partial.stat().st_size if self.partial.exists() else 0
        per_frame = size / self.frames if self.frames else 0
        # Two more frames, the muxer's buffer and the index written at the end.
        need = 2 * per_frame + 64 * 1024 + 32 * self.frames
        if free < need:
            raise self._fail(f"no space left on the device ({free} bytes free in {self.partial.parent}, "
                             f"{self.frames} frames written)")

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._open((image.shape[1], image.shape[0]))
        assert self._writer is not None         # _open raised otherwise
        self._writer.write(image)
        self.frames += 1
        self._check_space()

    def close(self) -> None:
        """Finish the file, check that it reads back whole, and give it its name."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        assert self.partial is not None
        cap = cv2.VideoCapture(str(self.partial))
        try:
            found = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        finally:
            cap.release()
        if found != self.frames:
            free = shutil.disk_usage(self.partial.parent).free
            raise self._fail(f"the written video holds {max(found, 0)} of the {self.frames} frames "
                             f"(a write failed; {free} bytes free)")
        os.replace(self.partial, self.path)
        self.partial = None

    def abort(self) -> None:
        """Drop the video: release the writer and remove the partial file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)
            self.partial = None


_END = object()


class Annotator:
    """Draws and writes frames in a background thread; ``submit`` blocks when it falls behind."""

    def __init__(self, path: str | Path, fps: float, seg_class_names: list[str] | None = None, depth: int = 8):
        self.sink = VideoSink(path, fps)
        self.seg_class_names = seg_class_names
        self.class_names: list[str] | None = None       # the model's, for the colours
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name="annotate", daemon=True)
        self._thread.start()

    def set_stream(self, fps: float | None, class_names: list[str], seg_class_names: list[str]) -> None:
        """What is known once the source and the model are open (the annotator is built first, so
        that a bad file name fails before the model loads): the recording's frame rate (None:
        keep the default) and the model's classes, for the colours. Before the first ``submit``."""
        if fps:
            self.sink.fps = float(fps)
        self.class_names = list(class_names)
        self.seg_class_names = list(seg_class_names)

    @property
    def path(self) -> Path:
        return self.sink.path

    def submit(self, image: np.ndarray, verdict: Verdict, label_map: np.ndarray | None = None) -> None:
        """Queue a frame; ``image`` and ``label_map`` must not change afterwards (pass copies)."""
        if self.error is not None:
            raise self.error
        self._queue.put((image, verdict, label_map))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self.error is not None:
                continue   # keep draining so that submit() never blocks forever
            try:
                image, verdict, label_map = item
                self.sink.write(draw_verdict(image, verdict, label_map, self.seg_class_names,
                                             class_names=self.class_names))
            except BaseException as exc:  # noqa: BLE001 - handed to the pipeline as a fatal error
                self.error = exc

    def close(self, complete: bool = True) -> None:
        """Finish the video (renamed to its path once whole); after a write error (or with
        ``complete=False``) the partial file is removed instead."""
        self._queue.put(_END)
        self._thread.join()
        if self.error is not None or not complete:
            self.sink.abort()
            if self.error is not None:
                raise self.error
            return
        self.sink.close()
