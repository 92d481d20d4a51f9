"""The shared encoder: YOLOv5 v6 CSPDarknet backbone plus the top-down FPN."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inspectd.model.blocks import C3, SPPF, ConvBnAct, make_divisible


@dataclass(frozen=True)
class EncoderWidths:
    """Channel counts of the feature maps the decoders consume."""

    low: int      # stride-4 backbone map (segmentation low-level path)
    p3: int       # FPN output, stride 8
    p4: int       # FPN lateral, stride 16
    p5: int       # FPN lateral, stride 32


@dataclass
class EncoderFeatures:
    low: torch.Tensor   # stride 4
    p3: torch.Tensor    # stride 8, top-down fused (YOLOv5 layer 17)
    p4: torch.Tensor    # stride 16 lateral (layer 14), PAN concatenates it
    p5: torch.Tensor    # stride 32 lateral (layer 10), PAN concatenates it


def _scaled(c: int, width: float) -> int:
    return make_divisible(c * width, 8)


def _depth(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class Backbone(nn.Module):
    """CSPDarknet: 6x6 stride-2 stem, C3 stages, SPPF (YOLOv5 v6.0 layers 0-9)."""

    def __init__(self, in_channels: int, width: float, depth: float):
        super().__init__()
        c = [_scaled(x, width) for x in (64, 128, 256, 512, 1024)]
        self.stem = ConvBnAct(in_channels, c[0], 6, 2, 2)                               # P1/2
        self.stage2 = nn.Sequential(ConvBnAct(c[0], c[1], 3, 2), C3(c[1], c[1], _depth(3, depth)))  # P2/4
        self.stage3 = nn.Sequential(ConvBnAct(c[1], c[2], 3, 2), C3(c[2], c[2], _depth(6, depth)))  # P3/8
        self.stage4 = nn.Sequential(ConvBnAct(c[2], c[3], 3, 2), C3(c[3], c[3], _depth(9, depth)))  # P4/16
        self.stage5 = nn.Sequential(ConvBnAct(c[3], c[4], 3, 2), C3(c[4], c[4], _depth(3, depth)),
                                    SPPF(c[4], c[4], 5))                                 # P5/32
        self.channels = c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c2 = self.stage2(self.stem(x))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        return c2, c3, c4, c5


class FPN(nn.Module):
    """Top-down path of the YOLOv5 head (layers 10-17)."""

    def __init__(self, channels: list[int], width: float, depth: float):
        super().__init__()
        c3, c4, c5 = channels[2], channels[3], channels[4]
        n = _depth(3, depth)
        self.lateral5 = ConvBnAct(c5, c4, 1)           # layer 10
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c3_p4 = C3(c4 * 2, c4, n, shortcut=False)  # layer 13
        self.lateral4 = ConvBnAct(c4, c3, 1)           # layer 14
        self.c3_p3 = C3(c3 * 2, c3, n, shortcut=False)  # layer 17

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor):
        p5 = self.lateral5(c5)
        p4 = self.lateral4(self.c3_p4(torch.cat((self.up(p5), c4), 1)))
        p3 = self.c3_p3(torch.cat((self.up(p4), c3), 1))
        return p3, p4, p5


class Encoder(nn.Module):
    def __init__(self, in_channels: int, width: float, depth: float):
        super().__init__()
        self.backbone = Backbone(in_channels, width, depth)
        self.fpn = FPN(self.backbone.channels, width, depth)
        c = self.backbone.channels
        self.widths = EncoderWidths(low=c[1], p3=c[2], p4=c[2], p5=c[3])

    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        c2, c3, c4, c5 = self.backbone(x)
        p3, p4, p5 = self.fpn(c3, c4, c5)
        return EncoderFeatures(low=c2, p3=p3, p4=p4, p5=p5)
