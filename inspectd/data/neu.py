"""The NEU layout: images/, annotations/ (Pascal VOC XML) and masks/ (PNG), plus stem lists.

How boxes and masks become targets (unknown pixels ignored) is ``inspectd.data.samples``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from inspectd.data.augment import Augment
from inspectd.data.samples import (  # noqa: F401
    DefectDataset,
    RawSample,
    Sample,
    build_sample,
    collate,
)
from inspectd.errors import InspectdError

# The NEU layout's mask values are NEU-Seg's (shared/data/neu/README.md): 1 inclusion,
# 2 patches, 3 scratches. Masks of other classes need the YOLO layout (docs/datasets.md).
MASK_VALUES = {1: "inclusion", 2: "patches", 3: "scratches"}


def read_stems(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"split list {path} not found")
    stems = [s.strip() for s in path.read_text().splitlines() if s.strip() and not s.startswith("#")]
    if not stems:
        raise InspectdError(f"split list {path} holds no stems")
    return stems


def parse_voc(path: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InspectdError(f"annotation {path} cannot be read: {exc}") from None
    boxes, classes = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_names:
            raise InspectdError(f"annotation {path}: unknown class {name!r} (known: {', '.join(class_names)})")
        bb = obj.find("bndbox")
        try:
            if bb is None:
                raise ValueError("no bndbox")
            x1, y1, x2, y2 = (float(bb.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise InspectdError(f"annotation {path}: object {name!r} has no valid bndbox") from None
        boxes.append((x1, y1, x2, y2))
        classes.append(class_names.index(name))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def voc_class_names(root: Path) -> list[str]:
    """The classes the annotations name, sorted: the NEU layout lists them nowhere else."""
    names: set[str] = set()
    for path in sorted((root / "annotations").glob("*.xml")):
        try:
            names.update((o.findtext("name") or "").strip() for o in ET.parse(path).getroot().iter("object"))
        except (ET.ParseError, OSError) as exc:
            raise InspectdError(f"annotation {path} cannot be read: {exc}") from None
    names.discard("")
    return sorted(names)


def load_raw(root: Path, stem: str, class_names: list[str], in_channels: int) -> RawSample:
    img_path = root / "images" / f"{stem}.jpg"
    flag = cv2.IMREAD_GRAYSCALE if in_channels == 1 else cv2.IMREAD_COLOR
    image = cv2.imread(str(img_path), flag) if img_path.exists() else None
    if image is None:
        raise InspectdError(f"image {img_path} is missing or unreadable")
    ann = root / "annotations" / f"{stem}.xml"
    if not ann.exists():
        raise InspectdError(f"annotation {ann} is missing")
    boxes, classes = parse_voc(ann, class_names)
    mask_path = root / "masks" / f"{stem}.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED) if mask_path.exists() else None
    if mask is not None and mask.shape[:2] != image.shape[:2]:
        raise InspectdError(f"mask {mask_path} is {mask.shape[:2]}, its image {image.shape[:2]}")
    return RawSample(stem, image, boxes, classes, mask, MASK_VALUES if mask is not None else {})


def load_sample(root: Path, stem: str, class_names: list[str], seg_class_names: list[str],
                in_channels: int) -> Sample:
    return build_sample(load_raw(Path(root), stem, class_names, in_channels), class_names, seg_class_names)


class NeuDataset(DefectDataset):
    """``DefectDataset`` over stems of a NEU-layout folder."""

    def __init__(self, root: str | Path, stems: list[str], class_names: list[str],
                 seg_class_names: list[str], in_channels: int = 1,
                 input_size: tuple[int, int] = (224, 224), augment: Augment | None = None, seed: int = 0):
        self.root = Path(root)
        if not (self.root / "images").is_dir():
            raise InspectdError(f"data folder {self.root} has no images/ folder")
        self.in_channels = in_channels
        samples = [load_sample(self.root, s, class_names, seg_class_names, in_channels) for s in stems]
        super().__init__(samples, input_size, augment, seed)
