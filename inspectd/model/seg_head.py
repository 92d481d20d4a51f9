"""Segmentation decoder: DDWASPP on the high-level map, resDWAB on the stride-4 map, fusion.

Both modules can be swapped for their plain counterparts for the paper's ablations:
``aspp: denseaspp`` (full atrous convolutions) and ``resdwab_blocks: 0`` (no low-level blocks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inspectd.model.blocks import ConvBnAct
from inspectd.model.upsample import SCALE, BilinearUpsample


class DenseASPP(nn.Module):
    """Densely connected atrous pyramid.

    Each layer sees the concatenation of the input and every earlier layer's output, reduces it
    with a 1x1 conv, then applies a 3x3 atrous conv. With ``depthwise=True`` (DDWASPP) that atrous
    conv is depthwise and no pointwise conv follows it: the 1x1 reduction of the next layer (or
    the final projection) already mixes channels, so a pointwise conv there would be redundant.
    """

    def __init__(self, c_in: int, c_out: int, rates: list[int], c_mid: int, depthwise: bool):
        super().__init__()
        self.reduce = nn.ModuleList()
        self.atrous = nn.ModuleList()
        c = c_in
        for r in rates:
            self.reduce.append(ConvBnAct(c, c_mid, 1))
            self.atrous.append(ConvBnAct(c_mid, c_mid, 3, d=r, g=c_mid if depthwise else 1))
            c += c_mid
        self.project = ConvBnAct(c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for reduce, atrous in zip(self.reduce, self.atrous):
            feats.append(atrous(reduce(torch.cat(feats, 1))))
        return self.project(torch.cat(feats, 1))


class ResDWAB(nn.Module):
    """Residually connected depthwise separable atrous block (inverted residual).

    1x1 expand -> 3x3 depthwise atrous -> 1x1 project, concatenated with the block input and
    fused by a 1x1 conv (concatenation rather than addition, as in the paper).
    """

    def __init__(self, c: int, dilation: int, expand: int):
        super().__init__()
        ce = c * expand
        self.expand = ConvBnAct(c, ce, 1)
        self.depthwise = ConvBnAct(ce, ce, 3, d=dilation, g=ce)
        self.project = ConvBnAct(ce, c, 1, act=False)
        self.fuse = ConvBnAct(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return self.fuse(torch.cat((x, y), 1))


def fusion(c_in: int, width: int, kind: str) -> nn.Sequential:
    """Two 3x3 layers over the concatenated context and low-level maps.

    ``conv``: full convolutions (DeepLabv3+). ``dwsep``: each a depthwise 3x3 followed by a 1x1
    (MobileNet-style); at stride 4 the full pair is most of the decoder's multiply-adds.
    """
    if kind == "conv":
        return nn.Sequential(ConvBnAct(c_in, width, 3), ConvBnAct(width, width, 3))
    if kind == "dwsep":
        return nn.Sequential(ConvBnAct(c_in, c_in, 3, g=c_in), ConvBnAct(c_in, width, 1),
                             ConvBnAct(width, width, 3, g=width), ConvBnAct(width, width, 1))
    raise ValueError(f"unknown fusion {kind!r}")


class SegHead(nn.Module):
    """DeepLabv3+-style decoder returning per-pixel logits at input resolution."""

    def __init__(self, c_high: int, c_low: int, num_classes: int, *, aspp: str, rates: list[int],
                 blocks: int, dilations: list[int], expand: int, width: int, fuse: str = "conv"):
        super().__init__()
        c_mid = max(width // 2, 16)
        self.aspp = DenseASPP(c_high, width, rates, c_mid, depthwise=(aspp == "ddwaspp"))
        self.low = nn.Sequential(*(ResDWAB(c_low, dilations[i % len(dilations)], expand)
                                   for i in range(blocks)))
        self.fuse = fusion(width + c_low, width, fuse)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.upsample = BilinearUpsample(num_classes, SCALE)

    def forward(self, high: torch.Tensor, low: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        h = self.aspp(high)
        h = F.interpolate(h, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.fuse(torch.cat((h, self.low(low)), 1)))
        if (logits.shape[-2] * SCALE, logits.shape[-1] * SCALE) == tuple(out_size):
            return self.upsample(logits)      # the same values, cheaper in the exported graph
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class AuxSegHead(nn.Module):
    """Deep supervision: a 1x1 classifier on one encoder level (training only).

    Kept deliberately weak so that the encoder level itself must carry the class evidence."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Conv2d(c_in, num_classes, 1)

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.classifier(x), size=out_size, mode="bilinear", align_corners=False)
