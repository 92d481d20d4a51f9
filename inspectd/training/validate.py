"""Run a model over a NEU-style dataset and collect detection and segmentation metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from inspectd.data.neu import NeuDataset, collate
from inspectd.metrics.detection import DetectionEvaluator, DetectionMetrics
from inspectd.metrics.segmentation import ConfusionMatrix
from inspectd.model.decode import postprocess
from inspectd.model.inference_graph import InferenceGraph
from inspectd.model.network import MultiTaskNet


@dataclass
class ValResult:
    det: DetectionMetrics
    seg: ConfusionMatrix

    def summary(self) -> dict[str, float]:
        iou = self.seg.iou()
        out = {"map50": self.det.map50, "map50_95": self.det.map50_95, "miou": self.seg.miou(),
               "precision": self.det.precision_all, "recall": self.det.recall_all}
        for name, v in zip(self.seg.class_names, iou):
            out[f"iou_{name}"] = float(v)
        for name, v in zip(self.det.class_names, self.det.ap50):
            out[f"ap50_{name}"] = float(v)
        return out


@torch.no_grad()
def validate(model: MultiTaskNet, dataset: NeuDataset, batch_size: int = 32, conf: float = 0.001,
             iou: float = 0.6, operating_threshold: float = 0.25, progress=None) -> ValResult:
    graph = InferenceGraph(model)
    cfg = model.cfg
    det_eval = DetectionEvaluator(cfg.class_names)
    cm = ConfusionMatrix(cfg.seg_class_names)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    for batch in loader:
        det, seg = graph(batch["image"])
        preds = postprocess(det, conf, iou, max_det=300)
        labels = seg.argmax(1).numpy()
        for k, p in enumerate(preds):
            p = p.numpy()
            det_eval.add(p[:, :4], p[:, 4], p[:, 5].astype(np.int64),
                         batch["boxes"][k].numpy(), batch["classes"][k].numpy())
            h, w = batch["valid"][k]  # score only the original image, not the padding
            cm.update(labels[k, :h, :w], batch["seg"][k, :h, :w].numpy())
        if progress is not None:
            progress(len(preds))
    return ValResult(det=det_eval.compute(operating_threshold), seg=cm)
