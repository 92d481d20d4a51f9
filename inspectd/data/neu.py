"""NEU-style data: images/, annotations/ (Pascal VOC XML) and masks/ (PNG), plus stem lists.

Segmentation targets follow what the labels actually say (shared/data/neu/README.md):
mask pixels are their class; pixels inside a box whose class has no mask pixels in that box are
unknown (IGNORE_INDEX), not background; everything outside every box is background.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from inspectd.errors import InspectdError
from inspectd.data.augment import Augment, pad_to
from inspectd.model.loss import IGNORE_INDEX

# NEU-Seg mask values (the README): 1 inclusion, 2 patches, 3 scratches.
MASK_VALUES = {1: "inclusion", 2: "patches", 3: "scratches"}


@dataclass
class Sample:
    stem: str
    image: np.ndarray      # H x W (1 channel) or H x W x 3, uint8
    boxes: np.ndarray      # [M, 4] float32 xyxy pixels
    classes: np.ndarray    # [M] int64 detection class index
    seg: np.ndarray        # H x W uint8 segmentation class index, IGNORE_INDEX = unknown


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
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise InspectdError(f"annotation {path}: object {name!r} has no valid bndbox") from None
        boxes.append((x1, y1, x2, y2))
        classes.append(class_names.index(name))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)


def seg_target(mask: np.ndarray | None, shape: tuple[int, int], boxes: np.ndarray, classes: np.ndarray,
               class_names: list[str], seg_class_names: list[str]) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    if mask is not None:
        for value, name in MASK_VALUES.items():
            if name in seg_class_names:
                seg[mask == value] = seg_class_names.index(name)
    for (x1, y1, x2, y2), c in zip(boxes, classes):
        xa, ya = int(np.floor(x1)), int(np.floor(y1))
        xb, yb = int(np.ceil(x2)) + 1, int(np.ceil(y2)) + 1
        region = seg[ya:yb, xa:xb]
        name = class_names[c]
        has_mask = name in seg_class_names and bool((region == seg_class_names.index(name)).any())
        if not has_mask:  # truth inside this box is unknown
            region[region == 0] = IGNORE_INDEX
    return seg


def load_sample(root: Path, stem: str, class_names: list[str], seg_class_names: list[str],
                in_channels: int) -> Sample:
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
    seg = seg_target(mask, image.shape[:2], boxes, classes, class_names, seg_class_names)
    return Sample(stem, image, boxes, classes, seg)


class NeuDataset(Dataset):
    """Items: dict(image uint8 [C, H, W] at input size, boxes float [M, 4], classes long [M],
    seg long [H, W] (255 = ignore, including padding), stem, valid (h, w) of the original)."""

    def __init__(self, root: str | Path, stems: list[str], class_names: list[str],
                 seg_class_names: list[str], in_channels: int = 1,
                 input_size: tuple[int, int] = (224, 224), augment: Augment | None = None, seed: int = 0):
        self.root = Path(root)
        if not (self.root / "images").is_dir():
            raise InspectdError(f"data folder {self.root} has no images/ folder")
        self.input_size = tuple(input_size)
        self.in_channels = in_channels
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.samples = [load_sample(self.root, s, class_names, seg_class_names, in_channels) for s in stems]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, boxes, classes, seg = self.augment(s, self.samples, rng, self.input_size)
        else:
            image, boxes, classes, seg = pad_to(s.image, s.boxes, s.classes, s.seg, self.input_size, (0, 0))
        if image.ndim == 2:
            image = image[None]
        else:
            image = image.transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "classes": torch.from_numpy(classes.astype(np.int64)),
            "seg": torch.from_numpy(seg.astype(np.int64)),
            "stem": s.stem,
            "valid": s.image.shape[:2],
        }


def collate(batch: list[dict]) -> dict:
    """Stack images and seg targets; detection targets as [nt, 6] (image, class, cx, cy, w, h)."""
    targets = []
    for i, b in enumerate(batch):
        bx = b["boxes"]
        if len(bx):
            cxcy = (bx[:, :2] + bx[:, 2:]) / 2
            wh = bx[:, 2:] - bx[:, :2]
            idx = torch.full((len(bx), 1), float(i))
            targets.append(torch.cat((idx, b["classes"][:, None].float(), cxcy, wh), 1))
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "seg": torch.stack([b["seg"] for b in batch]),
        "targets": torch.cat(targets) if targets else torch.zeros(0, 6),
        "boxes": [b["boxes"] for b in batch],
        "classes": [b["classes"] for b in batch],
        "stems": [b["stem"] for b in batch],
        "valid": [b["valid"] for b in batch],
    }
