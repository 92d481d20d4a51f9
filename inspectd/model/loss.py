"""Training losses: YOLOv5 detection loss, segmentation loss with an ignore label, their mix.

Every gain is set here, in ``LossGains``, with the reason beside it; training configs may
override them (``loss:`` section).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from inspectd.configtools import doc
from inspectd.model.boxes import ciou
from inspectd.model.network import MultiTaskNet, NetworkOutput

IGNORE_INDEX = 255


@dataclass
class LossGains:
    det_weight: float = doc(
        "w in total = w * detection + (1 - w) * segmentation; the paper's best is 0.6 (Table 2)", default=0.6)
    box: float = doc("CIoU box-loss gain (YOLOv5 hyp.scratch-low: 0.05)", default=0.05)
    obj: float = doc(
        "objectness gain before scaling by (input/640)^2: YOLOv5 scales it with image area because "
        "the number of grid cells grows with it (hyp 1.0)", default=1.0)
    cls: float = doc(
        "class gain before scaling by nc/80: YOLOv5 keeps the per-class BCE sum comparable across "
        "class counts (hyp 0.5)", default=0.5)
    obj_balance: list[float] = doc(
        "objectness weight per stride 8/16/32: small-stride levels have more cells and would "
        "otherwise be under-weighted per cell (YOLOv5: 4.0, 1.0, 0.4)", default_factory=lambda: [4.0, 1.0, 0.4])
    anchor_t: float = doc(
        "a target is matched to an anchor when their width and height ratios are both below this "
        "(YOLOv5: 4.0, the largest growth the wh parametrisation allows)", default=4.0)
    label_smoothing: float = doc("class label smoothing epsilon", default=0.0)
    aux: float = doc(
        "weight of the deep-supervision segmentation losses (mean over the auxiliary heads) "
        "relative to the main segmentation loss", default=0.4)
    seg_class_weights: list[float] | None = doc(
        "per segmentation-class CE weights (background first); null = equal", default=None)


@dataclass
class LossParts:
    total: torch.Tensor
    items: dict[str, float] = field(default_factory=dict)


class DetectionLoss:
    """YOLOv5 v6 loss: target assignment with the anchor-ratio rule and two neighbouring cells,
    CIoU box loss, BCE objectness with the (detached, clamped) IoU as target, BCE classes.
    Targets are [nt, 6] rows (image, class, cx, cy, w, h) in input pixels."""

    def __init__(self, model: MultiTaskNet, gains: LossGains):
        head = model.det_head
        self.head = head
        self.nc, self.na, self.nl = head.nc, head.na, head.nl
        h, w = model.cfg.input_size
        self.box_gain = gains.box * 3 / self.nl
        self.obj_gain = gains.obj * (h * w / 640**2) * 3 / self.nl
        self.cls_gain = gains.cls * self.nc / 80 * 3 / self.nl
        self.balance = gains.obj_balance
        self.anchor_t = gains.anchor_t
        self.cp, self.cn = 1.0 - 0.5 * gains.label_smoothing, 0.5 * gains.label_smoothing

    def build_targets(self, p: list[torch.Tensor], targets: torch.Tensor):
        dev = targets.device
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        ai = torch.arange(na, device=dev).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[..., None]), 2)  # [na, nt, 7]
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=dev).float() * g
        for i in range(self.nl):
            stride = float(self.head.strides[i])
            anchors = self.head.anchors[i] / stride          # grid units
            h, w = p[i].shape[2:4]
            gain = torch.ones(7, device=dev)
            gain[2:6] = 1.0 / stride
            t = targets * gain
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                j = torch.max(r, 1 / r).max(2)[0] < self.anchor_t
                t = t[j]
                gxy = t[:, 2:4]
                gxi = torch.tensor([w, h], device=dev) - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                l, m = ((gxi % 1 < g) & (gxi > 1)).T  # noqa: E741 - YOLOv5's names for the 5 offsets
                j = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
            else:
                t = targets[0]
                offsets = torch.zeros(())
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gi = gij[:, 0].clamp(0, w - 1)
            gj = gij[:, 1].clamp(0, h - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch

    def __call__(self, p: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        dev = p[0].device
        lcls = torch.zeros((), device=dev)
        lbox = torch.zeros((), device=dev)
        lobj = torch.zeros((), device=dev)
        tcls, tbox, indices, anch = self.build_targets(p, targets)
        for i, pi in enumerate(p):
            pi = pi.float()
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], device=dev)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anch[i]
                iou = ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0)
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(n, device=dev), tcls[i]] = self.cp
                    lcls = lcls + F.binary_cross_entropy_with_logits(pcls, t)
            lobj = lobj + F.binary_cross_entropy_with_logits(pi[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        total = lbox + lobj + lcls
        return total, {"box": float(lbox.detach()), "obj": float(lobj.detach()), "cls": float(lcls.detach())}


class MultiTaskLoss(nn.Module):
    """total = batch * (w * detection + (1 - w) * (segmentation + aux * deep supervision)).

    Multiplying by the batch size follows YOLOv5, whose learning rates assume it.
    """

    def __init__(self, model: MultiTaskNet, gains: LossGains):
        super().__init__()
        self.gains = gains
        self.det = DetectionLoss(model, gains)
        w = gains.seg_class_weights
        self.register_buffer("seg_weight", torch.tensor(w, dtype=torch.float32) if w else None)

    def seg_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if bool((target != IGNORE_INDEX).any()):
            return F.cross_entropy(logits.float(), target, weight=self.seg_weight, ignore_index=IGNORE_INDEX)
        return logits.sum() * 0.0  # every pixel ignored: no signal, but keep the graph

    def forward(self, out: NetworkOutput, targets: torch.Tensor, seg_target: torch.Tensor,
                use_det: bool = True, use_seg: bool = True) -> LossParts:
        bs = seg_target.shape[0]
        w = self.gains.det_weight
        items: dict[str, float] = {}
        zero = out.seg.sum() * 0.0
        det = zero
        if use_det:
            det, parts = self.det(out.det, targets)
            items.update(parts)
        seg = zero
        if use_seg:
            seg = self.seg_loss(out.seg, seg_target)
            items["seg"] = float(seg.detach())
            if out.aux:
                aux = sum(self.seg_loss(a, seg_target) for a in out.aux) / len(out.aux)
                items["aux"] = float(aux.detach())
                seg = seg + self.gains.aux * aux
        total = bs * (w * det + (1 - w) * seg)
        items["det"] = float(det.detach())
        items["total"] = float(total.detach())
        return LossParts(total=total, items=items)
