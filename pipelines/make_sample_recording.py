#!/usr/bin/env python3
"""Make the bundled sample recording: NEU validation images laid out as a moving strip.

    python pipelines/make_sample_recording.py                       # samples/neu_strip.mkv + .json
    python pipelines/make_sample_recording.py --out /tmp/x.mkv --per-class 4 --seed 1

The strip: the chosen images (default: every stem of ``val.txt``, never seen in training,
shuffled with ``--seed``) are tiled ``--across`` images wide and as many rows long as
needed; the strip runs down the image (rows = strip length, first row = head of the
strip). The "camera": an area-scan camera looking at a fixed window of the line, triggered
every ``--advance`` rows of strip travel (as an encoder-triggered camera is), with the
window ``--frame-height`` rows tall. Consecutive frames therefore overlap by
``frame_height - advance`` rows: a real line is set up that way so that no strip escapes
between two frames and a defect cut by a frame edge is seen whole in the next one if it
is shorter than the overlap. The defaults (480-row frames every 384 rows: 20 % overlap)
cover the 60 rows of 200-px tiles exactly; otherwise the strip's tail is padded with
black rows (the empty roller table behind the strip's end).

Output: a lossless FFV1 video (``.mkv``; ``.avi`` writes MJPG at quality 95 instead, for
OpenCV builds without FFV1) with one grey channel, and a JSON ground truth beside it
(``<video>.json``): the layout, the tiles, every box in strip coordinates and, per frame,
the boxes visible in that frame in frame pixels. Boxes keep the numbers of the NEU VOC
annotations (xmin, ymin, xmax, ymax, as ``inspectd.data.neu.parse_voc`` reads them),
shifted to where the tile lies.

Seams between tiles are visible (the images come from different coils); the sample is for
showing and testing the daemon, not for judging the model (use ``inspectd evaluate``).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/work/shared/data/neu")
DEFAULT_OUT = ROOT / "samples" / "neu_strip.mkv"
TILE = 200
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
TRUTH_FORMAT = "inspectd-recording-truth"
TRUTH_VERSION = 1


class RecordingError(Exception):
    """Bad input to the recording maker; printed as one line by main()."""


# -- inputs ----------------------------------------------------------------------------
def read_boxes(xml_path: Path) -> list[dict[str, Any]]:
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise RecordingError(f"annotation {xml_path}: cannot be read: {exc}") from None
    out = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise RecordingError(f"annotation {xml_path}: unknown class {name!r}")
        bb = obj.find("bndbox")
        try:
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            raise RecordingError(f"annotation {xml_path}: object {name!r} has no valid bndbox") from None
        out.append({"class": name, "box": box})
    return out


def read_tile(data: Path, stem: str) -> np.ndarray:
    path = data / "images" / f"{stem}.jpg"
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RecordingError(f"image {path}: cannot be read")
    if img.shape != (TILE, TILE):
        raise RecordingError(f"image {path}: {img.shape[1]}x{img.shape[0]}, expected {TILE}x{TILE}")
    return img


def choose_stems(split: Path, per_class: int | None, seed: int) -> list[str]:
    """The split's stems, optionally ``per_class`` of each class, shuffled (so classes mix)."""
    try:
        stems = [s.strip() for s in split.read_text().splitlines() if s.strip()]
    except OSError as exc:
        raise RecordingError(f"split list {split}: cannot be read: {exc.strerror}") from None
    rng = random.Random(seed)
    if per_class is not None:
        by_prefix: dict[str, list[str]] = {}
        for s in stems:
            by_prefix.setdefault(s.rsplit("_", 1)[0], []).append(s)
        stems = [s for group in by_prefix.values() for s in rng.sample(group, min(per_class, len(group)))]
    rng.shuffle(stems)
    return stems


# -- the recording ---------------------------------------------------------------------
def make_recording(
    out_path: str | Path,
    stems: list[str],
    data_dir: str | Path = DEFAULT_DATA,
    *,
    across: int = 3,
    frame_height: int = 480,
    advance: int = 384,
    fps: float = 50.0,
    mm_per_px: float = 0.5,
    min_visible_px: int = 4,
    seed: int | None = None,
    progress: bool = False,
    verify: bool = True,
) -> dict[str, Any]:
    """Write the video ``out_path`` and its ground truth ``out_path + '.json'``; return the truth.

    ``stems`` are laid out in the given order, ``across`` per row (a short last row is
    filled with black). Small arguments make a recording of a few frames in well under a
    second, for tests: e.g. 6 stems, across=3, frame_height=200, advance=100 -> 3 frames.
    """
    out_path = Path(out_path)
    data = Path(data_dir)
    if not stems:
        raise RecordingError("no images to lay out")
    if not 0 < advance <= frame_height:
        raise RecordingError(f"advance {advance} must be between 1 and the frame height {frame_height}")
    rows = math.ceil(len(stems) / across)
    strip_h, strip_w = rows * TILE, across * TILE
    n_frames = max(1, math.ceil(max(0, strip_h - frame_height) / advance) + 1)
    padded_h = (n_frames - 1) * advance + frame_height
    strip = np.zeros((max(padded_h, strip_h), strip_w), np.uint8)
    tiles, strip_boxes = [], []
    for i, stem in enumerate(stems):
        x, y = (i % across) * TILE, (i // across) * TILE
        strip[y:y + TILE, x:x + TILE] = read_tile(data, stem)
        tiles.append({"stem": stem, "x": x, "y": y})
        for b in read_boxes(data / "annotations" / f"{stem}.xml"):
            x1, y1, x2, y2 = b["box"]
            strip_boxes.append({"class": b["class"], "stem": stem, "box": [x1 + x, y1 + y, x2 + x, y2 + y]})

    frames_truth = []
    for k in range(n_frames):
        y0 = k * advance
        visible = []
        for b in strip_boxes:
            x1, y1, x2, y2 = b["box"]
            top, bottom = max(y1, y0), min(y2, y0 + frame_height)
            if bottom - top < min(min_visible_px, y2 - y1):
                continue
            visible.append({
                "class": b["class"], "stem": b["stem"],
                "box": [x1, top - y0, x2, bottom - y0],
                "truncated": top > y1 or bottom < y2,
            })
        frames_truth.append({"frame": k, "y": y0, "boxes": visible})

    _write_video(out_path, strip, n_frames, advance, frame_height, fps, progress)
    max_err = _verify(out_path, strip, n_frames, advance, frame_height) if verify else None

    truth = {
        "format": TRUTH_FORMAT, "version": TRUTH_VERSION,
        "video": out_path.name,
        "codec": "FFV1" if out_path.suffix.lower() == ".mkv" else "MJPG",
        "max_abs_error": max_err,
        "made_from": {"data": data.name, "stems": len(stems), "seed": seed},
        "fps": fps, "frames": n_frames, "frame_width": strip_w, "frame_height": frame_height,
        "channels": 1,
        "advance_px": advance, "overlap_px": frame_height - advance,
        "mm_per_px": mm_per_px,
        "frame_length_m": advance * mm_per_px / 1000.0,          # strip travel per frame
        "line_speed_mps": advance * mm_per_px / 1000.0 * fps,
        "strip_height": strip_h, "strip_width": strip_w, "tile": TILE, "across": across,
        "box_convention": "[x1, y1, x2, y2] pixels as in the NEU VOC files (xmin, ymin, xmax, ymax)",
        "classes": CLASSES,
        "tiles": tiles,
        "strip_boxes": strip_boxes,
        "frames_truth": frames_truth,
    }
    truth_path = out_path.with_name(out_path.name + ".json")
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def _write_video(path: Path, strip: np.ndarray, n: int, advance: int, height: int, fps: float,
                 progress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (strip.shape[1], height)
    if path.suffix.lower() == ".mkv":
        # Lossless, one grey plane: the pixels the model sees are exactly the NEU pixels.
        writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), fps, size,
                                 [cv2.VIDEOWRITER_PROP_IS_COLOR, 0])
        colour = False
    elif path.suffix.lower() == ".avi":
        # OpenCV's own MJPEG writer: its grey mode decodes wrongly elsewhere, so write BGR.
        writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size,
                                 [cv2.VIDEOWRITER_PROP_QUALITY, 95])
        colour = True
    else:
        raise RecordingError(f"{path}: use .mkv (FFV1, lossless) or .avi (MJPG)")
    if not writer.isOpened():
        raise RecordingError(f"{path}: this OpenCV build cannot write it; try the other of .mkv / .avi")
    frames: Iterable[int] = range(n)
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, desc=f"writing {path.name}", unit="frame", file=sys.stderr)
    try:
        for k in frames:
            window = strip[k * advance:k * advance + height]
            writer.write(cv2.cvtColor(window, cv2.COLOR_GRAY2BGR) if colour else window)
    finally:
        writer.release()


def _verify(path: Path, strip: np.ndarray, n: int, advance: int, height: int) -> float:
    """Read the video back: right frame count, and how far the pixels are from the strip."""
    cap = cv2.VideoCapture(str(path))
    worst, k = 0.0, 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            if k < n:
                want = strip[k * advance:k * advance + height]
                worst = max(worst, float(np.abs(img[..., 0].astype(np.int16) - want).mean()))
            k += 1
    finally:
        cap.release()
    if k != n:
        raise RecordingError(f"{path}: reads back {k} frames, wrote {n}")
    return worst


# -- command line ----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NEU-style data folder (default: %(default)s)")
    p.add_argument("--split", type=Path, help="list of stems (default: DATA/val.txt)")
    p.add_argument("--per-class", type=int, help="use only this many images of each class (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output video, .mkv or .avi (default: %(default)s)")
    p.add_argument("--across", type=int, default=3, help="images across the strip (default: %(default)s)")
    p.add_argument("--frame-height", type=int, default=480, help="camera window height in rows (default: %(default)s)")
    p.add_argument("--advance", type=int, default=384, help="strip rows travelled between frames (default: %(default)s)")
    p.add_argument("--fps", type=float, default=50.0, help="nominal frame rate (default: %(default)s)")
    p.add_argument("--mm-per-px", type=float, default=0.5, help="pixel pitch on the strip (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="order of the images (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        stems = choose_stems(args.split or args.data / "val.txt", args.per_class, args.seed)
        missing = sorted(set(CLASSES) - {c for s in stems for c in CLASSES if s.startswith(c.split("_")[0])})
        if missing:
            raise RecordingError(f"no image of class {', '.join(missing)} among the chosen stems")
        truth = make_recording(
            args.out, stems, args.data, across=args.across, frame_height=args.frame_height,
            advance=args.advance, fps=args.fps, mm_per_px=args.mm_per_px, seed=args.seed,
            progress=not args.quiet,
        )
    except RecordingError as exc:
        print(f"make_sample_recording: {exc}", file=sys.stderr)
        return 2
    n_boxes = sum(len(f["boxes"]) for f in truth["frames_truth"])
    size_mb = args.out.stat().st_size / 1e6
    print(
        f"{args.out}: {truth['frames']} frames of {truth['frame_width']}x{truth['frame_height']} at "
        f"{truth['fps']:g} fps ({size_mb:.1f} MB, {truth['codec']}, max mean abs error "
        f"{truth['max_abs_error']:.2f}); {len(truth['tiles'])} images, {len(truth['strip_boxes'])} boxes "
        f"on the strip, {n_boxes} in frames; truth in {args.out.name}.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
