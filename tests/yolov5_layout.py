"""A small YOLOv5 v6 checkpoint made here: the same pickle structure as YOLOv5's released
``.pt`` files (a ``models.yolo.Model`` object holding ``models.common.Conv``/``C3``/``SPPF`` and
``torch.nn`` modules, saved with torch.save in half precision), random weights.

The classes below only carry YOLOv5's module and attribute names; they are registered as
``models.common`` / ``models.yolo`` just while the file is written, so the pickle names exactly
what YOLOv5's does.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
from torch import nn


def _w(c: int, width: float) -> int:
    return int(-(-c * width // 8) * 8)


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c1, c_, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)


class SPP(SPPF):  # YOLOv5 v5's module in layer 9: another architecture
    pass


class Concat(nn.Module):
    def __init__(self, d=1):
        super().__init__()
        self.d = d


class Detect(nn.Module):
    def __init__(self, nc, anchors, ch):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        self.anchor_grid = [torch.zeros(1)] * self.nl
        strides = torch.tensor([8.0, 16.0, 32.0]).view(-1, 1, 1)
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2) / strides)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.stride = strides.view(-1)


class Model(nn.Module):
    def __init__(self, layers, yaml):
        super().__init__()
        self.yaml = yaml
        self.model = nn.Sequential(*layers)
        self.names = [f"class{i}" for i in range(yaml["nc"])]
        self.stride = torch.tensor([8.0, 16.0, 32.0])


COCO_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
_COMMON = (Conv, Bottleneck, C3, SPPF, SPP, Concat)
_YOLO = (Detect, Model)


def build(width: float = 0.25, depth: float = 0.33, nc: int = 80, layer9: type = SPPF,
          seed: int = 0) -> Model:
    """YOLOv5 v6 (yolov5n for the defaults) with random weights and BatchNorm statistics."""
    c = [_w(x, width) for x in (64, 128, 256, 512, 1024)]
    n = [max(round(x * depth), 1) for x in (3, 6, 9, 3)]
    layers = [
        Conv(3, c[0], 6, 2, 2), Conv(c[0], c[1], 3, 2), C3(c[1], c[1], n[0]),
        Conv(c[1], c[2], 3, 2), C3(c[2], c[2], n[1]), Conv(c[2], c[3], 3, 2), C3(c[3], c[3], n[2]),
        Conv(c[3], c[4], 3, 2), C3(c[4], c[4], n[3]), layer9(c[4], c[4]),
        Conv(c[4], c[3], 1), nn.Upsample(None, 2, "nearest"), Concat(), C3(c[3] * 2, c[3], n[3], False),
        Conv(c[3], c[2], 1), nn.Upsample(None, 2, "nearest"), Concat(), C3(c[2] * 2, c[2], n[3], False),
        Conv(c[2], c[2], 3, 2), Concat(), C3(c[2] * 2, c[3], n[3], False),
        Conv(c[3], c[3], 3, 2), Concat(), C3(c[3] * 2, c[4], n[3], False),
        Detect(nc, COCO_ANCHORS, (c[2], c[3], c[4])),
    ]
    yaml = {"nc": nc, "depth_multiple": depth, "width_multiple": width, "anchors": COCO_ANCHORS, "ch": 3}
    model = Model(layers, yaml)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("anchors"):
                continue
            if v.is_floating_point():
                v.copy_(torch.randn(v.shape, generator=g))
                if k.endswith("running_var"):
                    v.abs_().add_(0.1)
            else:
                v.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    return model.eval()


def save(model: Model, path: str | Path, ema: Model | None = None, half: bool = True) -> Path:
    """torch.save it the way YOLOv5's training code does (half precision, a dict of entries)."""
    path = Path(path)
    saved = {}
    for name in ("models", "models.common", "models.yolo"):
        saved[name] = sys.modules.get(name)
        sys.modules[name] = types.ModuleType(name)
    try:
        for cls in _COMMON:
            cls.__module__ = "models.common"
            setattr(sys.modules["models.common"], cls.__name__, cls)
        for cls in _YOLO:
            cls.__module__ = "models.yolo"
            setattr(sys.modules["models.yolo"], cls.__name__, cls)
        if half:
            model.half()
            if ema is not None:
                ema.half()
        torch.save({"epoch": -1, "best_fitness": None, "model": model,
                    "ema": ema, "updates": None,
                    "optimizer": None, "wandb_id": None, "date": "2022-02-08T18:24:20"}, path)
    finally:
        for cls in _COMMON + _YOLO:
            cls.__module__ = __name__
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    if half:
        model.float()
        if ema is not None:
            ema.float()
    return path
