"""Detection decoder: the bottom-up PAN and the anchor-based head on strides 8, 16, 32."""
from __future__ import annotations

import math

import torch
from torch import nn

from inspectd.model.blocks import C3, ConvBnAct
from inspectd.model.encoder import EncoderFeatures, _depth

STRIDES = (8, 16, 32)


class PAN(nn.Module):
    """YOLOv5 v6 layers 18-23: stride-2 convs down, concatenated with the FPN laterals."""

    def __init__(self, channels: list[int], depth: float):
        super().__init__()
        c3, c4, c5 = channels[2], channels[3], channels[4]
        n = _depth(3, depth)
        self.down3 = ConvBnAct(c3, c3, 3, 2)
        self.c3_n4 = C3(c3 * 2, c4, n, shortcut=False)
        self.down4 = ConvBnAct(c4, c4, 3, 2)
        self.c3_n5 = C3(c4 * 2, c5, n, shortcut=False)
        self.out_channels = (c3, c4, c5)

    def forward(self, f: EncoderFeatures) -> list[torch.Tensor]:
        n4 = self.c3_n4(torch.cat((self.down3(f.p3), f.p4), 1))
        n5 = self.c3_n5(torch.cat((self.down4(n4), f.p5), 1))
        return [f.p3, n4, n5]


class DetectHead(nn.Module):
    """1x1 convs giving, per anchor, raw logits (tx, ty, tw, th, objectness, classes).

    Returns a list of [N, A, H, W, 5 + nc] tensors (A = 3 anchors per level). Decoding to
    boxes lives in ``inspectd.model.decode``.
    """

    def __init__(self, num_classes: int, anchors: list[list[int]], in_channels: tuple[int, ...],
                 input_size: tuple[int, int] = (224, 224)):
        super().__init__()
        self.nc = num_classes
        self.no = num_classes + 5
        self.na = len(anchors[0]) // 2
        self.nl = len(anchors)
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2)
        self.register_buffer("anchors", a)  # input pixels
        self.register_buffer("strides", torch.tensor(STRIDES, dtype=torch.float32))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in in_channels)
        self._init_biases(input_size)

    def _init_biases(self, input_size: tuple[int, int]) -> None:
        # YOLOv5's prior: about 8 objects per 640x640 image, class prior 0.6 / nc.
        area = input_size[0] * input_size[1]
        for conv, s in zip(self.m, STRIDES):
            b = conv.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (area / s**2))
                b[:, 5:] += math.log(0.6 / (self.nc - 0.99)) if self.nc > 1 else 0.0

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(feats):
            y = self.m[i](x)
            n, _, h, w = y.shape
            out.append(y.view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out
