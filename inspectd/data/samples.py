"""Labelled images in memory, whatever folder layout they came from, and the torch Dataset over them.

A layout (``inspectd.data.layout``) reads one image into a ``RawSample``: pixels, boxes with
class indices, and an optional mask whose pixel values the layout names. ``build_sample``
turns it into training targets. Segmentation targets follow what the labels actually say
(shared/data/neu/README.md): mask pixels are their class; pixels inside a box whose class has no
mask pixels in that box are unknown (IGNORE_INDEX), not background; everything outside every
box is background.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from inspectd.data.augment import Augment, pad_to
from inspectd.errors import InspectdError
from inspectd.model.loss import IGNORE_INDEX


@dataclass
class RawSample:
    stem: str
    image: np.ndarray      # H x W (1 channel) or H x W x 3, uint8
    boxes: np.ndarray      # [M, 4] float32 xyxy pixels
    classes: np.ndarray    # [M] int64 index into the class names it was loaded with
    mask: np.ndarray | None = None                              # H x W uint8 label values
    mask_values: dict[int, str] = field(default_factory=dict)   # mask value -> class name


@dataclass
class Sample:
    stem: str
    image: np.ndarray      # H x W (1 channel) or H x W x 3, uint8
    boxes: np.ndarray      # [M, 4] float32 xyxy pixels
    classes: np.ndarray    # [M] int64 detection class index
    seg: np.ndarray        # H x W uint8 segmentation class index, IGNORE_INDEX = unknown


def seg_target(mask: np.ndarray | None, mask_values: dict[int, str], shape: tuple[int, int],
               boxes: np.ndarray, classes: np.ndarray, class_names: list[str],
               seg_class_names: list[str]) -> np.ndarray:
    seg = np.zeros(shape, np.uint8)
    if mask is not None:
        for value, name in mask_values.items():
            if name in seg_class_names:
                seg[mask == value] = seg_class_names.index(name)
        seg[mask == IGNORE_INDEX] = IGNORE_INDEX       # a mask may mark pixels it does not know
    for (x1, y1, x2, y2), c in zip(boxes, classes):
        xa, ya = int(np.floor(x1)), int(np.floor(y1))
        xb, yb = int(np.ceil(x2)) + 1, int(np.ceil(y2)) + 1
        region = seg[ya:yb, xa:xb]
        name = class_names[c]
        has_mask = name in seg_class_names and bool((region == seg_class_names.index(name)).any())
        if not has_mask:  # truth inside this box is unknown
            region[region == 0] = IGNORE_INDEX
    return seg


def build_sample(raw: RawSample, class_names: list[str], seg_class_names: list[str]) -> Sample:
    seg = seg_target(raw.mask, raw.mask_values, raw.image.shape[:2], raw.boxes, raw.classes,
                     class_names, seg_class_names)
    return Sample(raw.stem, raw.image, raw.boxes, raw.classes, seg)


class DefectDataset(Dataset):
    """Items: dict(image uint8 [C, H, W] at input size, boxes float [M, 4], classes long [M],
    seg long [H, W] (255 = ignore, including padding), stem, valid (h, w) of the original)."""

    def __init__(self, samples: list[Sample], input_size: Sequence[int] = (224, 224),
                 augment: Augment | None = None, seed: int = 0):
        self.samples = samples
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if augment is None:
            # Scored whole: a larger image would lose what lies past the input (training crops).
            for s in samples:
                h, w = s.image.shape[:2]
                if h > input_size[0] or w > input_size[1]:
                    raise InspectdError(
                        f"image {s.stem} is {w}x{h}, larger than the model input {input_size[1]}x{input_size[0]}; "
                        "train with an input_size at least that large (model_overrides), or cut the images into tiles")
        self.augment = augment
        self.seed = seed
        self.epoch = 0

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
