"""Bilinear x4 upsampling as a fixed convolution and a pixel shuffle.

``F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)`` on the segmentation
logits runs on OpenVINO as an Interpolate on a 4-channel map at 224 x 224 (5-11 % of the graph's
layer time in its performance counters), a layout its kernels vectorise poorly. The same values
come from a depthwise 3x3 convolution that computes the 16 sub-pixel phases of each stride-4
cell at 56 x 56 (fixed bilinear weights), then a depth-to-space that lays them out. Exact up to
float rounding; the border is padded by replication, which is what bilinear's edge clamping
computes. Measured interleaved on 2 cores: 2-4 % more frames/s for the whole graph
(BENCHMARKS.md), since the depth-to-space still writes the full-resolution map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALE = 4


def _phase_weights(scale: int) -> torch.Tensor:
    """[scale, 3]: for output offset i in a cell, the weights on the rows h-1, h, h+1."""
    w = torch.zeros(scale, 3, dtype=torch.float64)
    for i in range(scale):
        src = (i + 0.5) / scale - 0.5        # position relative to the cell's own low-res pixel
        if src < 0:
            w[i, 0], w[i, 1] = -src, 1 + src
        else:
            w[i, 1], w[i, 2] = 1 - src, src
    return w


class BilinearUpsample(nn.Module):
    """Exact bilinear upsampling by an integer ``scale`` (align_corners=False) of ``channels`` maps."""

    def __init__(self, channels: int, scale: int = SCALE):
        super().__init__()
        p = _phase_weights(scale)
        k = torch.einsum("ia,jb->ijab", p, p).reshape(scale * scale, 1, 3, 3)   # phase (i, j) -> 3x3
        self.register_buffer("weight", k.repeat(channels, 1, 1, 1).float(), persistent=False)
        self.channels = channels
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        y = F.conv2d(x, self.weight.to(x.dtype), groups=self.channels)   # [N, C * s * s, H, W]
        return F.pixel_shuffle(y, self.scale)
