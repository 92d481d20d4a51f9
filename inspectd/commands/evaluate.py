"""``inspectd evaluate``: measure a model on a data folder (NEU or YOLO layout)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "evaluate"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="measure a model on a data folder (NEU or YOLO layout)",
        description=(
            "Run a model checkpoint over the images of a split and score it: detection mAP@0.5 "
            "per class and mean (all-point interpolation and COCO 101-point, each labelled), "
            "mAP@0.5:0.95 (101-point), precision and recall at the operating threshold; "
            "segmentation IoU per class and mIoU from one confusion matrix over the whole set "
            "(pixels of unknown truth ignored, the padding outside the image excluded); and the "
            "model's speed in frames per second (inference graph only, batch 1 and --batch-size, "
            "after warm-up). Prints markdown tables; --json writes every number, --plots the PR "
            "curves and the confusion matrix as PNG. The data folder is in the NEU layout "
            "(images/, annotations/, masks/, stem lists, as shared/data/neu) or the YOLO layout "
            "(data.yaml, images/, labels/, masks/), detected from what is in it (docs/datasets.md); "
            "its classes are matched to the model's by name."
        ),
    )
    p.add_argument("--data", metavar="DIR", required=True,
                   help="data folder in the NEU layout (images/, annotations/, masks/, as shared/data/neu) "
                        "or the YOLO layout (data.yaml, images/, labels/, masks/)")
    p.add_argument("--split", metavar="LIST", default="val",
                   help="which images: a split name (train, val, test: NEU's NAME.txt, or data.yaml's entry), "
                        "a file listing them (NEU: stems; YOLO: image paths), or for YOLO a folder of images; "
                        "a path not found as given is looked up in DIR (default: val)")
    p.add_argument("--model", metavar="CKPT", help="model checkpoint (default: the model shipped with inspectd)")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT")
    p.add_argument("--plots", metavar="DIR",
                   help="write pr_curves.png and confusion_matrix.png into DIR (default: next to --json "
                        "OUT, named after it; no plots without either)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="images per model call, also the second batch size of the speed measurement (default: 16)")
    p.add_argument("--conf", type=float, default=0.001, metavar="T",
                   help="NMS confidence threshold; keep it low, AP needs the whole PR curve (default: 0.001)")
    p.add_argument("--operating-threshold", type=float, default=0.25, metavar="T",
                   help="score threshold where precision and recall are read (default: 0.25)")
    p.add_argument("--iou", type=float, default=0.6, metavar="T",
                   help="NMS IoU threshold (default: 0.6, as the trainer's validation and YOLOv5's val use)")
    p.add_argument("--max-det", type=int, default=300, metavar="N", help="detections kept per image (default: 300)")
    p.add_argument("--device", default="auto",
                   help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="data-loading worker processes (default: 0, load in the main process)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's choice; on a busy machine fewer is faster)")
    p.add_argument("--speed-seconds", type=float, default=2.0, metavar="S",
                   help="time spent measuring speed, per batch size (default: 2; 0 skips the measurement)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


SPLIT_NAMES = ("train", "val", "test")


def _split_path(split: str, data: Path) -> Path:
    path = Path(split).expanduser()
    if not path.exists() and not path.is_absolute() and (data / path).exists():
        return data / path
    return path


def run(args: argparse.Namespace) -> int:
    from inspectd.data.layout import open_layout
    from inspectd.errors import InspectdError

    data = Path(args.data).expanduser()
    if not data.is_dir():
        raise InspectdError(f"--data {args.data}: folder not found")
    layout = open_layout(data, "--data")
    split = _split_path(args.split, data)
    named = args.split in SPLIT_NAMES and not split.exists()
    if not named and not split.exists():
        raise InspectdError(f"--split {args.split}: not found (also looked in {data})")
    if args.model:
        model = Path(args.model).expanduser()
        if not model.is_file():
            raise InspectdError(f"--model {args.model}: model file not found")
    else:
        from inspectd.model import default_model_path

        model = default_model_path()
        if not model.is_file():
            raise InspectdError(f"no --model given and the shipped model {model} is missing")
    json_path = Path(args.json).expanduser() if args.json else None
    if json_path is not None and not json_path.parent.is_dir():
        raise InspectdError(f"--json {args.json}: folder {json_path.parent} does not exist")
    if args.max_det < 1:
        raise InspectdError(f"--max-det {args.max_det}: must be at least 1")
    if args.workers < 0:
        raise InspectdError(f"--workers {args.workers}: must be 0 or more")
    if args.speed_seconds < 0:
        raise InspectdError(f"--speed-seconds {args.speed_seconds}: must be 0 or more")

    from inspectd.evaluation import evaluate

    stems = layout.items(args.split) if named else layout.items("--split", str(split.resolve()))
    result = evaluate(
        model, data, stems,
        batch_size=args.batch_size,
        conf_threshold=args.conf,
        operating_threshold=args.operating_threshold,
        iou_threshold=args.iou,
        max_det=args.max_det,
        device=args.device,
        workers=args.workers,
        speed_seconds=args.speed_seconds,
        threads=args.threads,
        progress=False if args.no_progress else None,
    )
    result.info["split"] = args.split if named else str(split)

    pr_png: Path | None
    cm_png: Path | None
    if args.plots:
        plot_dir = Path(args.plots).expanduser()
        plot_dir.mkdir(parents=True, exist_ok=True)
        pr_png, cm_png = plot_dir / "pr_curves.png", plot_dir / "confusion_matrix.png"
    elif json_path is not None:
        pr_png = json_path.with_name(json_path.stem + "_pr_curves.png")
        cm_png = json_path.with_name(json_path.stem + "_confusion_matrix.png")
    else:
        pr_png = cm_png = None
    if pr_png is not None:
        from inspectd.metrics.plots import plot_confusion_matrix, plot_pr_curves

        plot_pr_curves(result.detection, pr_png)
        if cm_png is not None:
            plot_confusion_matrix(result.segmentation, cm_png)
        result.info["plots"] = {"pr_curves": str(pr_png), "confusion_matrix": str(cm_png)}

    sys.stdout.write(result.markdown())
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")
    return 0
