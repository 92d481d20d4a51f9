#!/usr/bin/env python3
"""The accuracy cost of the faster CPU backends: detection mAP and segmentation mIoU on a
split (NEU val) for each backend beside PyTorch fp32, scored exactly as ``inspectd evaluate``
scores (same loader, NMS and metrics: ``inspectd.evaluation``).

    python pipelines/backend_accuracy.py --model inspectd/models/inspectd-n-neu.safetensors \\
        --data ../shared/data/neu --split val.txt --json runs/backend_accuracy.json

onnxruntime-int8 is calibrated on --calib-split (train.txt) images, never on the split scored.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16")


def backend_graph(backend):
    """An ``InferenceGraph``-like callable (torch uint8 batch -> det, seg tensors) over a backend."""
    import torch

    def graph(x):
        det, seg = backend.infer(x.numpy())
        return torch.from_numpy(det), torch.from_numpy(seg)
    return graph


def summary(detection, segmentation) -> dict:
    return {"map50": float(detection.map50), "map50_95": float(detection.map50_95),
            "miou": float(segmentation.miou()),
            "ap50": {n: float(v) for n, v in zip(detection.class_names, detection.ap50)},
            "iou": {n: float(v) for n, v in zip(segmentation.class_names, segmentation.iou())}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val.txt")
    p.add_argument("--calib-split", default="train.txt")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from inspectd.bench import BackendFactory, availability
    from inspectd.data.neu import NeuDataset, collate, read_stems
    from inspectd.evaluation import collect_metrics, evaluate

    data = Path(args.data)
    stems = read_stems(data / args.split if not Path(args.split).is_file() else args.split)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    results = {}
    t = time.time()
    ref = evaluate(args.model, data, stems, batch_size=16, device="cpu", speed_seconds=0,
                   threads=args.threads or None, progress=False)
    results["torch"] = summary(ref.detection, ref.segmentation) | {"seconds": round(time.time() - t, 1)}
    log(f"torch fp32: {results['torch']['map50']:.4f} mAP50, {results['torch']['miou']:.4f} mIoU")

    factory = BackendFactory(Path(args.model), args.threads, data, [], log)
    cfg = ref.info
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        ok, why = availability(name)
        if not ok:
            results[name] = {"available": False, "reason": why}
            continue
        backend = factory.make(name)
        ds = NeuDataset(data, stems, backend.class_names, backend.seg_class_names,
                        in_channels=backend.channels, input_size=backend.input_size, augment=None)
        loader = DataLoader(ds, batch_size=16, shuffle=False, collate_fn=collate)
        t = time.time()
        det, seg = collect_metrics(backend_graph(backend), loader, backend.class_names, backend.seg_class_names,
                                   "cpu", conf_threshold=cfg["conf_threshold"], iou_threshold=cfg["nms_iou_threshold"],
                                   max_det=cfg["max_det"], operating_threshold=cfg["operating_threshold"])
        results[name] = summary(det, seg) | {"seconds": round(time.time() - t, 1),
                                             "note": factory.notes.get(name, "")}
        backend.close()
        log(f"{name}: {results[name]['map50']:.4f} mAP50, {results[name]['miou']:.4f} mIoU")

    base = results["torch"]
    print("| backend | mAP@0.5 | Δ | mAP@0.5:0.95 | Δ | mIoU | Δ |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if "map50" not in r:
            print(f"| {name} | unavailable: {r['reason']} | | | | | |")
            continue
        d = lambda k, r=r: f"{100 * (r[k] - base[k]):+.2f}"  # noqa: E731
        print(f"| {name} | {100 * r['map50']:.2f} | {d('map50')} | {100 * r['map50_95']:.2f} | {d('map50_95')} "
              f"| {100 * r['miou']:.2f} | {d('miou')} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "split": args.split, "results": results},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
