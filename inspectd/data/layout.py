"""Which layout a data folder is in, and one interface over both (docs/datasets.md).

- NEU layout (``shared/data/neu``): ``images/*.jpg``, ``annotations/*.xml`` (Pascal VOC),
  optional ``masks/*.png`` (NEU-Seg values), splits as stem lists ``train.txt``/``val.txt``.
  The classes are the names the annotations use, sorted.
- YOLO layout (labelling-tool exports): ``data.yaml`` naming classes and splits,
  ``images/``, ``labels/*.txt``, optional ``masks/*.png`` (``inspectd.data.yolo``).

A folder with a data.yaml is YOLO; one with annotations/ is NEU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from inspectd.data import neu, yolo
from inspectd.data.samples import RawSample
from inspectd.errors import InspectdError
from inspectd.model.config import check_class_name


class DataLayout(Protocol):
    root: Path
    kind: str                       # "neu" or "yolo"

    def class_names(self) -> list[str]:
        """The dataset's detection classes, in index order."""

    def items(self, split: str, override: str | None = None) -> list[str]:
        """Ids of the images of ``split`` ("train", "val", "test"), or of ``override`` (a list
        file, or for the YOLO layout also a folder) in its place."""

    def load(self, item: str, class_names: list[str], in_channels: int) -> RawSample:
        """One image and its labels, classes as indices into ``class_names``."""

    def masked_classes(self) -> set[str]:
        """Classes with mask pixels anywhere in the folder: what a model of this data segments
        (the same whichever subset a run trains on)."""


def _path(root: Path, p: str) -> Path:
    q = Path(p).expanduser()
    if q.is_absolute() or not (root / q).exists():
        return q            # as given (relative to the working folder), or not found as given
    return root / q


class NeuLayout:
    kind = "neu"

    def __init__(self, root: Path):
        self.root = root
        self._names: list[str] | None = None

    def class_names(self) -> list[str]:
        if self._names is None:
            self._names = neu.voc_class_names(self.root)
            if not self._names:
                raise InspectdError(f"data folder {self.root}: annotations/ names no classes")
            for n in self._names:
                check_class_name(n, f"data folder {self.root}: annotations/")
        return self._names

    def items(self, split: str, override: str | None = None) -> list[str]:
        return neu.read_stems(_path(self.root, override or f"{split}.txt"))

    def load(self, item: str, class_names: list[str], in_channels: int) -> RawSample:
        return neu.load_raw(self.root, item, class_names, in_channels)

    def masked_classes(self) -> set[str]:
        values: set[int] = set()
        for path in sorted((self.root / "masks").glob("*.png")):
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if mask is not None:
                values.update(int(v) for v in np.unique(mask))
        return {neu.MASK_VALUES[v] for v in values if v in neu.MASK_VALUES}


class YoloLayout:
    kind = "yolo"

    def __init__(self, root: Path, data_yaml: Path):
        self.root = root
        self.data = yolo.YoloData(data_yaml)
        for n in self.data.class_names:
            check_class_name(n, f"{data_yaml}: names")

    def class_names(self) -> list[str]:
        return self.data.class_names

    def items(self, split: str, override: str | None = None) -> list[str]:
        images = self.data.split(split, override)
        return [str(p) for p in images]

    def load(self, item: str, class_names: list[str], in_channels: int) -> RawSample:
        path = Path(item)
        try:
            stem = path.relative_to(self.data.base).with_suffix("").as_posix()
        except ValueError:
            stem = path.with_suffix("").as_posix()
        return yolo.load_raw(path, stem, self.data.class_names, class_names, in_channels)

    def masked_classes(self) -> set[str]:
        images: set[Path] = set()
        for split in ("train", "val", "test"):
            if self.data.doc.get(split):
                images.update(self.data.split(split))
        return yolo.masked_classes(sorted(images), self.data.class_names)


def open_layout(root: str | Path, what: str = "data folder") -> DataLayout:
    """The layout of ``root``, detected from what is in it; one-line errors otherwise."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InspectdError(f"{what} {root} not found")
    data_yaml = yolo.find_data_yaml(root)
    if data_yaml is not None:
        return YoloLayout(root, data_yaml)
    if (root / "annotations").is_dir():
        if not (root / "images").is_dir():
            raise InspectdError(f"{what} {root}: has annotations/ but no images/ folder (NEU layout)")
        return NeuLayout(root)
    if (root / "labels").is_dir():
        raise InspectdError(f"{what} {root}: has labels/ but no data.yaml naming the classes and splits "
                            "(YOLO layout; docs/datasets.md)")
    raise InspectdError(f"{what} {root}: neither layout: expected data.yaml, images/ and labels/ (YOLO) or "
                        "images/ and annotations/ (NEU, as shared/data/neu); docs/datasets.md")


def check_model_knows(layout: DataLayout, model_classes: list[str], model: str) -> None:
    """Evaluating a model on data with classes it does not detect would score nonsense."""
    missing = [n for n in layout.class_names() if n not in model_classes]
    if missing:
        raise InspectdError(
            f"data folder {layout.root} has classes the model {model} does not detect: {', '.join(missing)} "
            f"(the model's: {', '.join(model_classes)})")


def load_raws(layout: DataLayout, items: list[str], class_names: list[str], in_channels: int) -> list[RawSample]:
    return [layout.load(i, class_names, in_channels) for i in items]
