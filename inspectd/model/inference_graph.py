"""The inference graph: what backends run and what is exported to ONNX.

uint8 [N, C, H, W] in, (decoded detections before NMS, segmentation probabilities) out. The
deep-supervision heads are not part of it.
"""
from __future__ import annotations

import torch
from torch import nn

from inspectd.model.decode import decode
from inspectd.model.network import MultiTaskNet


class InferenceGraph(nn.Module):
    def __init__(self, model: MultiTaskNet):
        super().__init__()
        self.model = model.eval()

    def train(self, mode: bool = True) -> InferenceGraph:  # always an inference graph
        return super().train(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The model's own dtype, so a half-precision model takes half-precision input.
        x = x.to(self.model.det_head.anchors.dtype) / 255.0
        out = self.model(x)
        head = self.model.det_head
        det = decode(out.det, head.anchors, head.strides)
        return det, out.seg.softmax(1)
