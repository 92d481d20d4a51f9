"""Measure a checkpoint on a data folder (NEU or YOLO layout): detection AP, segmentation IoU, model speed.

The model runs exactly as the backends run it (the inference graph: uint8 in, decoded
detections and segmentation probabilities out), then the same NMS as the daemon. Detection
is scored on the boxes after NMS at a low confidence threshold (AP needs the whole
precision/recall curve); precision and recall are reported at the operating threshold.
Segmentation is the argmax over the segmentation classes, compared with the target on the
original image region only (not the padding up to the model's input size), with pixels of
unknown truth ignored (see ``inspectd.data.samples``). The data's classes are matched to the
model's by name; a class the model does not detect is an error.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspectd.errors import InspectdError
from inspectd.metrics.detection import DetectionEvaluator, DetectionMetrics
from inspectd.metrics.report import render_markdown
from inspectd.metrics.segmentation import ConfusionMatrix

if TYPE_CHECKING:  # torch is imported inside the functions: the CLI stays light until used
    import torch


@dataclass
class EvalResult:
    detection: DetectionMetrics
    segmentation: ConfusionMatrix
    speed: dict[str, float] = field(metadata={"doc": "label -> frames (images) per second"})
    info: dict[str, Any] = field(metadata={"doc": "what was measured and how (model, data, thresholds, device)"})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``map50``, ``map50_95``, ``ap50``, ``miou``, ``iou`` and the rest at the top."""
        out: dict[str, Any] = {}
        out.update(self.detection.to_dict(curves=True))
        out.update(self.segmentation.to_dict())
        out["speed_fps"] = {k: float(v) for k, v in self.speed.items()}
        out["info"] = self.info
        return out

    def markdown(self) -> str:
        title = f"{self.info['model']} on {self.info['data']} ({self.info['images']} images)"
        return render_markdown(self.detection, self.segmentation, self.speed, title=title)


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InspectdError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InspectdError(f"device {name!r}: CUDA is not available (no GPU, or a CPU-only torch build)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InspectdError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise InspectdError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def measure_fps(graph: Callable, batch: int, channels: int, size: Sequence[int], device: torch.device,
                seconds: float, warmup: int = 3) -> float:
    """Images per second of ``graph`` alone on a uint8 batch already on ``device``.

    Warm-up first (allocator, cuDNN autotuning, lazy init), then as many calls as fit in
    ``seconds`` (at least three); CUDA is synchronised after each call so that the time is
    the model's, not the launch queue's.
    """
    import torch

    x = torch.randint(0, 256, (batch, channels, *size), dtype=torch.uint8, device=device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            graph(x)
        sync()
        calls, start = 0, time.perf_counter()
        while True:
            graph(x)
            sync()
            calls += 1
            elapsed = time.perf_counter() - start
            if calls >= 3 and elapsed >= seconds:
                break
    return calls * batch / elapsed


def score_batch(det_eval: DetectionEvaluator, cm: ConfusionMatrix, dets: Sequence[torch.Tensor],
                seg: torch.Tensor, batch: dict[str, Any]) -> None:
    """Add one batch: ``dets`` from ``postprocess``, ``seg`` [N, S, H, W] scores, ``batch`` from
    ``inspectd.data.samples.collate`` (images placed at offset (0, 0), ``valid`` = their size)."""
    import numpy as np

    seg_pred = seg.argmax(1).cpu().numpy()
    seg_true = batch["seg"].numpy()
    for i, (h, w) in enumerate(batch["valid"]):
        d = dets[i].float().cpu().numpy()
        boxes = d[:, :4].copy()
        # The daemon clips boxes to the frame; clip to the image's real extent likewise.
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        det_eval.add(boxes, d[:, 4], d[:, 5].astype(np.int64),
                     batch["boxes"][i].numpy(), batch["classes"][i].numpy())
        cm.update(seg_pred[i, :h, :w], seg_true[i, :h, :w])  # the image only, not the padding


def collect_metrics(
    graph: Callable,
    loader: Iterable[dict[str, Any]],
    class_names: list[str],
    seg_class_names: list[str],
    device: torch.device | str = "cpu",
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_det: int = 300,
    operating_threshold: float = 0.25,
    progress: Callable[[int], Any] | None = None,
) -> tuple[DetectionMetrics, ConfusionMatrix]:
    """Run ``graph`` (an ``InferenceGraph``) over ``loader`` (batches of ``samples.collate``) and score it.

    Shared by ``evaluate`` and the trainer's validation, so both report the same numbers.
    ``progress`` is called with the number of images after each batch.
    """
    import torch

    from inspectd.model.decode import postprocess

    det_eval = DetectionEvaluator(class_names)
    cm = ConfusionMatrix(seg_class_names)
    with torch.inference_mode():
        for batch in loader:
            det, seg = graph(batch["image"].to(device, non_blocking=True))
            dets = postprocess(det, conf_thres=conf_threshold, iou_thres=iou_threshold, max_det=max_det)
            score_batch(det_eval, cm, dets, seg, batch)
            if progress is not None:
                progress(len(batch["valid"]))
    return det_eval.compute(operating_threshold), cm


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path,
    stems: Sequence[str],
    batch_size: int = 16,
    conf_threshold: float = 0.001,
    operating_threshold: float = 0.25,
    iou_threshold: float = 0.6,
    max_det: int = 300,
    device: str = "auto",
    workers: int = 0,
    speed_seconds: float = 2.0,
    threads: int | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """Run ``checkpoint`` over ``stems`` (item ids of the data folder's layout: NEU stems, YOLO
    image paths) of ``data_dir`` and score it.

    ``conf_threshold`` and ``iou_threshold`` go to NMS (keep the first low for AP);
    ``operating_threshold`` is where precision and recall are read. Speed is measured for the
    inference graph alone (no NMS, no data loading) at batch 1 and at ``batch_size``, after
    warm-up, ``speed_seconds`` each (0 skips it). ``threads``: torch CPU threads (None: torch's
    default; on a machine busy with other work, fewer threads than cores is much faster, as
    idle OpenMP threads spin). ``progress``: a tqdm bar on stderr (None: only when stderr is a
    terminal).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from inspectd.data.layout import check_model_knows, load_raws, open_layout
    from inspectd.data.samples import DefectDataset, build_sample, collate
    from inspectd.model.checkpoint import load_checkpoint
    from inspectd.model.inference_graph import InferenceGraph

    if batch_size < 1:
        raise InspectdError(f"batch size {batch_size}: must be at least 1")
    for name, value in (("confidence threshold", conf_threshold), ("operating threshold", operating_threshold),
                        ("NMS IoU threshold", iou_threshold)):
        if not 0.0 <= value <= 1.0:
            raise InspectdError(f"{name} {value}: must be between 0 and 1")
    data_dir = Path(data_dir)
    layout = open_layout(data_dir)
    if not stems:
        raise InspectdError(f"no stems to evaluate in {data_dir}")

    if threads is not None:
        if threads < 1:
            raise InspectdError(f"threads {threads}: must be at least 1")
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    model, cfg = load_checkpoint(checkpoint)
    graph = InferenceGraph(model.to(dev)).eval()
    size = tuple(cfg.input_size)
    check_model_knows(layout, cfg.class_names, str(checkpoint))
    raws = load_raws(layout, list(stems), cfg.class_names, cfg.in_channels)
    dataset = DefectDataset([build_sample(r, cfg.class_names, cfg.seg_class_names) for r in raws], size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate, pin_memory=dev.type == "cuda")

    bar = tqdm(total=len(dataset), desc="evaluate", unit="img", disable=None if progress is None else not progress)
    detection, segmentation = collect_metrics(
        graph, loader, cfg.class_names, cfg.seg_class_names, dev, conf_threshold=conf_threshold,
        iou_threshold=iou_threshold, max_det=max_det, operating_threshold=operating_threshold, progress=bar.update)
    bar.close()

    speed: dict[str, float] = {}
    if speed_seconds > 0:
        for n in sorted({1, batch_size}):
            fps = measure_fps(graph, n, cfg.in_channels, size, dev, speed_seconds)
            speed[f"model forward, batch {n}, {dev.type}"] = fps

    info = {
        "model": str(checkpoint),
        "model_name": cfg.name,
        "data": str(data_dir),
        "layout": layout.kind,
        "images": len(dataset),
        "input_size": list(size),
        "in_channels": cfg.in_channels,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "conf_threshold": conf_threshold,
        "nms_iou_threshold": iou_threshold,
        "max_det": max_det,
        "operating_threshold": operating_threshold,
        "speed_measures": "inference graph only (uint8 in, decoded boxes and seg probabilities out; "
                          "no NMS, no data loading), float32, after warm-up",
    }
    return EvalResult(detection, segmentation, speed, info)


__all__ = ["EvalResult", "collect_metrics", "evaluate", "measure_fps", "resolve_device", "score_batch"]
