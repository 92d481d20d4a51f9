"""The YOLO layout that labelling tools export: data.yaml, images/, labels/*.txt, optional masks/.

``data.yaml`` names the classes (``names:`` a list, or a mapping from index to name) and the
splits (``train:``, ``val:``, optionally ``test:``; each a folder of images, a text file listing
image paths, or a list of either), relative to ``path:`` if given, else to data.yaml's folder.
An image's labels are found as YOLOv5 finds them: the last ``images`` folder of its path
replaced by ``labels`` and the extension by ``.txt``; a missing label file is an image without
defects. Each line is ``class cx cy w h``, normalised to 0..1 (a line with more numbers is a
segmentation polygon ``class x1 y1 x2 y2 ...``: its extent is the box and its inside the mask).

Masks (optional) follow the same rule with ``masks`` and ``.png``: 8-bit, one channel, the size
of the image; 0 = background, k = the class at index k - 1 of ``names``, 255 = unknown (not
scored, not trained). docs/datasets.md describes the layout for users.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspectd.data.samples import RawSample
from inspectd.errors import InspectdError
from inspectd.model.loss import IGNORE_INDEX

DATA_YAML = ("data.yaml", "data.yml")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_data_yaml(root: Path) -> Path | None:
    return next((root / n for n in DATA_YAML if (root / n).is_file()), None)


def _sibling(image: Path, folder: str, suffix: str) -> Path:
    """images/a/b.jpg -> <folder>/a/b<suffix>, replacing the last 'images' part of the path."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = folder
            return Path(*parts).with_suffix(suffix)
    return image.with_suffix(suffix)   # no images/ folder: the label sits beside the image


def label_path(image: Path) -> Path:
    return _sibling(image, "labels", ".txt")


def mask_path(image: Path) -> Path:
    return _sibling(image, "masks", ".png")


class YoloData:
    """A parsed data.yaml: class names and the image paths of each split."""

    def __init__(self, yaml_path: Path):
        import yaml

        self.yaml_path = yaml_path
        try:
            doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InspectdError(f"{yaml_path}: cannot be read as YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(doc, dict):
            raise InspectdError(f"{yaml_path}: expected a mapping with names:, train: and val:")
        self.doc = doc
        base = yaml_path.parent
        if doc.get("path"):
            p = Path(str(doc["path"])).expanduser()
            base = p if p.is_absolute() else (yaml_path.parent / p)
        self.base = base.resolve()
        self.class_names = self._names(doc.get("names"), doc.get("nc"))

    def _names(self, names: Any, nc: Any) -> list[str]:
        where = f"{self.yaml_path}: names"
        if isinstance(names, dict):
            try:
                keys = sorted(int(k) for k in names)
            except (TypeError, ValueError):
                raise InspectdError(f"{where}: a mapping's keys must be class indices 0, 1, ...") from None
            if keys != list(range(len(keys))):
                raise InspectdError(f"{where}: class indices must run 0..{len(keys) - 1} without gaps, got {keys}")
            out = [str(names[k] if k in names else names[str(k)]).strip() for k in keys]
        elif isinstance(names, list):
            out = [str(n).strip() for n in names]
        else:
            raise InspectdError(f"{where}: missing; expected a list of class names or a mapping index -> name")
        if not out:
            raise InspectdError(f"{where}: no classes")
        if len(set(out)) != len(out):
            dup = next(n for n in out if out.count(n) > 1)
            raise InspectdError(f"{where}: class {dup!r} is named twice")
        if nc is not None and nc != len(out):
            raise InspectdError(f"{self.yaml_path}: nc is {nc} but names lists {len(out)} classes")
        return out

    def _resolve(self, entry: str, key: str) -> Path:
        p = Path(entry).expanduser()
        if p.is_absolute():
            return p
        q = self.base / p
        if not q.exists() and entry.startswith("../"):
            # Roboflow exports write '../train/images' for a folder beside data.yaml.
            alt = self.base / entry[3:]
            if alt.exists():
                return alt
        return q

    def split(self, key: str, value: Any = None) -> list[Path]:
        """The image paths of split ``key`` (data.yaml's entry, or ``value`` in its place)."""
        entry = self.doc.get(key) if value is None else value
        if entry is None:
            raise InspectdError(f"{self.yaml_path}: no {key}: split (a folder of images or a list file)")
        entries = entry if isinstance(entry, list) else [entry]
        images: list[Path] = []
        for e in entries:
            path = self._resolve(str(e), key)
            if path.is_dir():
                images.extend(sorted(q for q in path.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES))
            elif path.is_file():
                images.extend(self._list_file(path))
            else:
                raise InspectdError(f"{self.yaml_path}: {key}: {e} not found (looked for {path})")
        if not images:
            raise InspectdError(f"{self.yaml_path}: {key}: no images in {entry}")
        return images

    def _list_file(self, path: Path) -> list[Path]:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line).expanduser()
            if not p.is_absolute():
                # YOLOv5 takes './x' relative to the list file; plain 'x' relative to the dataset.
                p = (path.parent / p) if line.startswith("./") or not (self.base / p).exists() else self.base / p
            out.append(p)
        return out


def _parse_labels(path: Path, width: int, height: int, nc: int, names: list[str],
                  ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]]:
    boxes, classes, polygons = [], [], []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InspectdError(f"labels {path}: cannot be read ({exc.strerror})") from None
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            c = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise InspectdError(f"labels {path} line {n}: expected 'class cx cy w h' numbers, got {line.strip()!r}") from None
        if not 0 <= c < nc:
            raise InspectdError(f"labels {path} line {n}: class {c}, but data.yaml names {nc} classes (0..{nc - 1})")
        if len(values) == 4:
            cx, cy, w, h = values
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        elif len(values) >= 6 and len(values) % 2 == 0:
            pts = np.array(values, np.float32).reshape(-1, 2)
            x1, y1 = pts.min(0)
            x2, y2 = pts.max(0)
            polygons.append((c, pts * np.array([width, height], np.float32)))
        else:
            raise InspectdError(
                f"labels {path} line {n}: expected 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), "
                f"got {len(values)} numbers after the class")
        if min(x1, y1) < -0.01 or max(x2, y2) > 1.01 or x2 <= x1 or y2 <= y1:
            raise InspectdError(f"labels {path} line {n}: box ({x1:.3g}, {y1:.3g})-({x2:.3g}, {y2:.3g}) is not "
                                "inside the image in normalised 0..1 coordinates")
        boxes.append((max(x1, 0) * width, max(y1, 0) * height, min(x2, 1) * width, min(y2, 1) * height))
        classes.append(c)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64), polygons


def load_raw(image_path: Path, stem: str, data_names: list[str], class_names: list[str],
             in_channels: int) -> RawSample:
    """One image with its labels, classes as indices into ``class_names`` (the model's), which
    must hold every name of ``data_names`` (data.yaml's)."""
    flag = cv2.IMREAD_GRAYSCALE if in_channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imread(str(image_path), flag) if image_path.is_file() else None
    if image is None:
        raise InspectdError(f"image {image_path} is missing or unreadable")
    h, w = image.shape[:2]
    lp = label_path(image_path)
    if lp.is_file():
        boxes, data_classes, polygons = _parse_labels(lp, w, h, len(data_names), data_names)
    else:
        boxes, data_classes, polygons = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), []
    to_model = np.array([class_names.index(n) for n in data_names], np.int64)
    classes = to_model[data_classes] if len(data_classes) else data_classes
    mask_values = {k + 1: name for k, name in enumerate(data_names)}
    mp = mask_path(image_path)
    mask = None
    if mp.is_file():
        mask = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
            raise InspectdError(f"mask {mp}: expected an 8-bit one-channel PNG")
        if mask.shape != (h, w):
            raise InspectdError(f"mask {mp} is {mask.shape[1]}x{mask.shape[0]}, its image {w}x{h}")
        bad = np.setdiff1d(np.unique(mask), [0, IGNORE_INDEX, *mask_values])
        if len(bad):
            raise InspectdError(f"mask {mp}: value {int(bad[0])} is no class (0 = background, 1..{len(data_names)} "
                                f"= the classes of data.yaml in order, 255 = unknown)")
    elif polygons:
        mask = np.zeros((h, w), np.uint8)
        for c, pts in polygons:
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], int(c) + 1)
    return RawSample(stem, image, boxes, classes, mask, mask_values if mask is not None else {})


def masked_classes(images: list[Path], names: list[str]) -> set[str]:
    """Classes with mask pixels in the PNG masks of ``images``, or with polygon labels."""
    found: set[str] = set()
    for image in images:
        mp = mask_path(image)
        if mp.is_file():
            mask = cv2.imread(str(mp), cv2.IMREAD_UNCHANGED)
            if mask is not None:
                found.update(names[int(v) - 1] for v in np.unique(mask) if 1 <= int(v) <= len(names))
            continue
        lp = label_path(image)
        if lp.is_file():
            for line in lp.read_text(encoding="utf-8").splitlines():
                f = line.split()
                if len(f) > 5 and f[0].isdigit() and int(f[0]) < len(names):
                    found.add(names[int(f[0])])
    return found
