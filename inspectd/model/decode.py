"""From raw head logits to boxes: the grid decoding and the post-NMS detections."""
from __future__ import annotations

import torch

from inspectd.model.boxes import xywh_to_xyxy
from inspectd.model.nms import batched_nms


def decode_level(p: torch.Tensor, anchors: torch.Tensor, stride: float) -> torch.Tensor:
    """One level's raw logits [N, A, H, W, 5+nc] -> [N, A*H*W, 5+nc]: xyxy px, obj, class probs.

    YOLOv5 v6 parametrisation: xy = (2 sigmoid(t) - 0.5 + cell) * stride,
    wh = (2 sigmoid(t))^2 * anchor, so a box can grow to 4x its anchor.
    """
    n, a, h, w, no = p.shape
    y = p.sigmoid()
    gy, gx = torch.meshgrid(torch.arange(h, device=p.device, dtype=y.dtype),
                            torch.arange(w, device=p.device, dtype=y.dtype), indexing="ij")
    grid = torch.stack((gx, gy), -1).view(1, 1, h, w, 2)
    xy = (y[..., :2] * 2 - 0.5 + grid) * stride
    wh = (y[..., 2:4] * 2) ** 2 * anchors.view(1, a, 1, 1, 2).to(y.dtype)
    out = torch.cat((xywh_to_xyxy(torch.cat((xy, wh), -1)), y[..., 4:]), -1)
    return out.view(n, a * h * w, no)


def decode(raw: list[torch.Tensor], anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    return torch.cat([decode_level(p, anchors[i], float(strides[i])) for i, p in enumerate(raw)], 1)


def postprocess(det: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                max_det: int = 300, max_nms: int = 3000) -> list[torch.Tensor]:
    """Decoded [N, A, 5+nc] -> per image [K, 6] (x1, y1, x2, y2, score, class), best first.

    score = objectness x best class probability; one class per box.
    """
    out = []
    for x in det:
        cls_p, cls = x[:, 5:].max(1)
        score = x[:, 4] * cls_p
        keep = score > conf_thres
        boxes, score, cls = x[keep, :4], score[keep], cls[keep]
        if len(score) > max_nms:
            top = score.topk(max_nms).indices
            boxes, score, cls = boxes[top], score[top], cls[top]
        k = batched_nms(boxes, score, cls, iou_thres)[:max_det]
        out.append(torch.cat((boxes[k], score[k, None], cls[k, None].to(boxes.dtype)), 1))
    return out
