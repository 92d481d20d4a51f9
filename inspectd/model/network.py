"""The multitask network: one encoder, a detection decoder and a segmentation decoder."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from inspectd.model.blocks import make_divisible
from inspectd.model.config import ModelConfig
from inspectd.model.det_head import PAN, DetectHead
from inspectd.model.encoder import Encoder
from inspectd.model.seg_head import AuxSegHead, SegHead

GROUPS = ("encoder", "detection", "segmentation")


@dataclass
class NetworkOutput:
    det: list[torch.Tensor]            # raw logits per level, [N, A, H, W, 5 + nc]
    seg: torch.Tensor                  # raw logits [N, S, H, W] at input resolution
    aux: list[torch.Tensor] = field(default_factory=list)  # deep-supervision logits (training only)


class MultiTaskNet(nn.Module):
    """Input: float [N, C, H, W] in 0..1. Heads return raw logits (no sigmoid/softmax)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, d = cfg.width_multiple, cfg.depth_multiple
        self.encoder = Encoder(cfg.in_channels, w, d)
        ch = self.encoder.backbone.channels
        self.pan = PAN(ch, d)
        self.det_head = DetectHead(cfg.num_classes, cfg.anchors, self.pan.out_channels, tuple(cfg.input_size))
        widths = self.encoder.widths
        self.seg_head = SegHead(
            widths.p3, widths.low, cfg.num_seg_classes, aspp=cfg.aspp, rates=cfg.aspp_rates,
            blocks=cfg.resdwab_blocks, dilations=cfg.resdwab_dilations, expand=cfg.resdwab_expand,
            width=cfg.seg_width or make_divisible(256 * w, 8), fuse=cfg.seg_fuse)
        # Deep supervision on the encoder's pyramid (strides 8, 16, 32); not in the inference graph.
        self.aux_heads = nn.ModuleList(
            AuxSegHead(c, cfg.num_seg_classes) for c in (widths.p3, widths.p4, widths.p5)
        ) if cfg.deep_supervision else nn.ModuleList()
        self._frozen: set[str] = set()

    # -- freezing by module group -------------------------------------------------------------
    def group_modules(self, group: str) -> list[nn.Module]:
        if group == "encoder":
            return [self.encoder, self.aux_heads]
        if group == "detection":
            return [self.pan, self.det_head]
        if group == "segmentation":
            return [self.seg_head]
        raise ValueError(f"unknown module group {group!r} (known: {', '.join(GROUPS)})")

    def set_frozen(self, groups: list[str] | tuple[str, ...]) -> None:
        """Freeze these groups (no gradients, BatchNorm in eval mode); unfreeze the others."""
        for g in groups:
            self.group_modules(g)  # validates the name
        self._frozen = set(groups)
        for g in GROUPS:
            for m in self.group_modules(g):
                for p in m.parameters():
                    p.requires_grad_(g not in self._frozen)
        self.train(self.training)

    @property
    def frozen(self) -> set[str]:
        return set(self._frozen)

    def train(self, mode: bool = True) -> MultiTaskNet:
        super().train(mode)
        for g in self._frozen:  # frozen parts keep their BatchNorm statistics
            for m in self.group_modules(g):
                m.eval()
        return self

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> NetworkOutput:
        size = (x.shape[-2], x.shape[-1])
        f = self.encoder(x)
        det = self.det_head(self.pan(f))
        seg = self.seg_head(f.p3, f.low, size)
        aux = []
        if self.training and len(self.aux_heads):
            aux = [head(t, size) for head, t in zip(self.aux_heads, (f.p3, f.p4, f.p5))]
        return NetworkOutput(det=det, seg=seg, aux=aux)


def build_model(cfg: ModelConfig) -> MultiTaskNet:
    return MultiTaskNet(cfg)


def build_random_calibrated(cfg: ModelConfig, seed: int = 0, batch: int = 2) -> MultiTaskNet:
    """Random weights with BatchNorm statistics taken from one random batch, in eval mode.

    Without them a fresh deep net's activations fade to constants; benchmarks and backend tests
    need outputs that vary like a trained model's.
    """
    torch.manual_seed(seed)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(batch, cfg.in_channels, *cfg.input_size))
    return model.eval()
