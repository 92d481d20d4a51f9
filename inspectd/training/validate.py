"""Run a model over a dataset and collect detection and segmentation metrics."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from inspectd.data.samples import DefectDataset, collate
from inspectd.evaluation import collect_metrics
from inspectd.metrics.detection import DetectionMetrics
from inspectd.metrics.segmentation import ConfusionMatrix
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


def validate(model: MultiTaskNet, dataset: DefectDataset, batch_size: int = 32, conf: float = 0.001,
             iou: float = 0.6, operating_threshold: float = 0.25, progress=None,
             device: torch.device | str = "cpu") -> ValResult:
    """Score the model exactly as `inspectd evaluate` does (shared ``collect_metrics``)."""
    cfg = model.cfg
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    det, cm = collect_metrics(InferenceGraph(model), loader, cfg.class_names, cfg.seg_class_names, device,
                              conf_threshold=conf, iou_threshold=iou,
                              operating_threshold=operating_threshold, progress=progress)
    return ValResult(det=det, seg=cm)
