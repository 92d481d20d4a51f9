"""The network's configuration: everything needed to rebuild it, stored in every checkpoint."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inspectd.configtools import doc, fail, from_mapping, load_yaml, to_mapping
from inspectd.errors import InspectdError

# Class names are fields of the event topics (defect/<camera>/<class>) and JSON keys of reports.
CLASS_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")

# The shipped model's classes (shared/data/neu); a model trained on other data names its own.
NEU_CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
# Only these classes have pixel masks in the data (shared/data/neu/README.md); the segmentation
# head predicts them and background. Predicting the other three would train channels that never
# see a positive pixel.
NEU_SEG_CLASSES = ["background", "inclusion", "patches", "scratches"]


def check_class_name(name: str, where: str) -> None:
    if not CLASS_NAME.match(name):
        raise InspectdError(
            f"{where}: class name {name!r}: use letters, digits, '_', '-' or '.' (it becomes a field of the "
            f"event topics), e.g. {name.strip().replace(' ', '_').replace('/', '-')!r}")


def check_model_classes(class_names: list[str], seg_class_names: list[str], model: str) -> None:
    """Any class a model names is judged by its merge rule or ``merge.default``, but the names
    become fields of the event topics: a model (an ONNX file, say) naming a class that cannot be
    one is refused. Rules naming classes the model lacks: ``merge.check_rules_against_model``."""
    from inspectd.configtools import ConfigError

    for c in [*class_names, *seg_class_names[1:]]:
        if not CLASS_NAME.match(c):
            raise ConfigError(f"model {model}: class name {c!r} cannot be a field of the event topics "
                              "(letters, digits, '_', '-' or '.')")


PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


def _default_anchors() -> list[list[int]]:
    # Fitted to the NEU train boxes by `pipelines/fit_anchors.py` (k-means on the YOLOv5 ratio
    # metric; every box within ratio 4 of an anchor, mean best ratio 0.756). One list of 3 (w, h) pairs per stride 8/16/32.
    return [[20, 32, 22, 68, 15, 164], [53, 54, 140, 24, 35, 163], [128, 67, 69, 135, 149, 166]]


@dataclass
class ModelConfig:
    name: str = doc("preset name, for humans", default="custom")
    depth_multiple: float = doc("scales the number of C3 bottlenecks (YOLOv5n/s: 0.33)", default=0.33)
    width_multiple: float = doc("scales channel widths (YOLOv5n 0.25, YOLOv5s 0.50)", default=0.25)
    in_channels: int = doc("input channels: 1 for Mono8 cameras, 3 for colour", default=1)
    input_size: list[int] = doc("model input [height, width], multiples of 32", default_factory=lambda: [224, 224])
    class_names: list[str] = doc("detection classes, in output order", default_factory=lambda: list(NEU_CLASSES))
    seg_class_names: list[str] = doc(
        "segmentation classes, index 0 must be 'background'", default_factory=lambda: list(NEU_SEG_CLASSES))
    anchors: list[list[int]] = doc(
        "anchor (w, h) pairs in input pixels, one list of 6 numbers per stride 8, 16, 32",
        default_factory=_default_anchors)
    aspp: Literal["ddwaspp", "denseaspp"] = doc(
        "high-level context module: 'ddwaspp' (depthwise atrous, the paper's) or 'denseaspp' (full "
        "atrous convolutions, for the ablation)", default="ddwaspp")
    aspp_rates: list[int] = doc("dilation rates of the dense ASPP layers", default_factory=lambda: [3, 6, 12, 18, 24])
    resdwab_blocks: int = doc("resDWAB blocks on the stride-4 map; 0 = plain low-level path (ablation)", default=4)
    resdwab_dilations: list[int] = doc(
        "dilation of each resDWAB block's depthwise conv (cycled if shorter than resdwab_blocks). "
        "The paper writes '0, 1, 2', read as its smallest rates", default_factory=lambda: [1, 2, 3, 1])
    resdwab_expand: int = doc("inverted-residual expansion factor in resDWAB", default=4)
    seg_fuse: Literal["conv", "dwsep"] = doc(
        "how the segmentation decoder fuses the upsampled context with the stride-4 path: 'conv' "
        "(two full 3x3 convolutions, DeepLabv3+'s) or 'dwsep' (two depthwise-separable 3x3 "
        "convolutions: about a seventh of the multiply-adds at 56 x 56)", default="conv")
    seg_width: int = doc(
        "channels of the segmentation decoder's context and fusion layers; 0 = 256 x width_multiple",
        default=0)
    deep_supervision: bool = doc(
        "auxiliary segmentation heads on the encoder's pyramid levels during training", default=True)

    def validate(self, where: str, prefix: str = "") -> None:
        p = (prefix + ".") if prefix else ""
        if len(self.input_size) != 2 or any(s <= 0 or s % 32 for s in self.input_size):
            fail(where, p + "input_size", f"expected [height, width], both positive multiples of 32, got {self.input_size}")
        if self.in_channels not in (1, 3):
            fail(where, p + "in_channels", f"expected 1 or 3, got {self.in_channels}")
        if not self.class_names:
            fail(where, p + "class_names", "needs at least one class")
        for name in [*self.class_names, *self.seg_class_names]:
            if not CLASS_NAME.match(name):
                fail(where, p + "class_names", f"{name!r}: use letters, digits, '_', '-' or '.'")
        if not self.seg_class_names or self.seg_class_names[0] != "background":
            fail(where, p + "seg_class_names", "index 0 must be 'background'")
        if len(self.anchors) != 3 or any(len(a) != 6 for a in self.anchors):
            fail(where, p + "anchors", "expected 3 lists of 6 numbers (3 (w, h) pairs per stride 8, 16, 32)")
        if self.depth_multiple <= 0 or self.width_multiple <= 0:
            fail(where, p + "width_multiple", "multipliers must be positive")
        if self.seg_width < 0 or self.seg_width % 8:
            fail(where, p + "seg_width", f"expected 0 (derived) or a positive multiple of 8, got {self.seg_width}")
        if self.resdwab_blocks < 0 or (self.resdwab_blocks and not self.resdwab_dilations):
            fail(where, p + "resdwab_blocks", "must be >= 0, with at least one dilation")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_seg_classes(self) -> int:
        return len(self.seg_class_names)

    def to_dict(self) -> dict:
        return to_mapping(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "model config") -> ModelConfig:
        return from_mapping(cls, data, where)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> ModelConfig:
    """A preset by name (``configs/model/NAME.yaml``) or a path to a model YAML."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise InspectdError(
                f"unknown model preset {name_or_path!r} (known: {', '.join(preset_names()) or 'none'})")
    return ModelConfig.from_dict(load_yaml(path), str(path))
