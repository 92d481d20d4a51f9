"""Model size and cost: parameters per path and GFLOPs of the inference graph."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from inspectd.model.network import MultiTaskNet


def count(modules) -> int:
    seen, n = set(), 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


@dataclass
class ModelInfo:
    preset: str
    input_size: tuple[int, int]
    in_channels: int
    params_total: int          # everything in the checkpoint, deep-supervision heads included
    params_inference: int      # what the inference graph runs (no auxiliary heads)
    params_encoder: int
    params_detection: int      # encoder + PAN + head: the YOLOv5 detector
    params_segmentation: int   # encoder + segmentation decoder
    params_aux: int            # deep-supervision heads (training only)
    gflops: float              # inference graph, batch 1 (2 FLOPs per multiply-add)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_info(model: MultiTaskNet) -> ModelInfo:
    cfg = model.cfg
    h, w = cfg.input_size
    enc = count([model.encoder])
    model.eval()
    x = torch.zeros(1, cfg.in_channels, h, w)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return ModelInfo(
        preset=cfg.name, input_size=(h, w), in_channels=cfg.in_channels,
        params_total=count([model]),
        params_inference=count([model.encoder, model.pan, model.det_head, model.seg_head]),
        params_encoder=enc,
        params_detection=count([model.encoder, model.pan, model.det_head]),
        params_segmentation=count([model.encoder, model.seg_head]),
        params_aux=count([model.aux_heads]),
        gflops=fc.get_total_flops() / 1e9,
    )
