"""``inspectd train``: train the multitask network on a data folder (NEU or YOLO layout)."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

NAME = "train"

EPILOG = """\
data layouts (docs/datasets.md; detected from the folder):
  NEU   images/*.jpg, annotations/*.xml (Pascal VOC), masks/*.png, train.txt and val.txt
        (stems), as ../shared/data/neu
  YOLO  data.yaml (names: and train:/val:), images/, labels/*.txt ('class cx cy w h',
        normalised), optional masks/*.png (0 background, k = class k-1, 255 unknown)
The model's classes are the data's; they travel in the checkpoints' metadata.

run folder: config.json, metrics.csv/.json (one row per epoch), curves.png, last.pt (resume
state), last.safetensors and best.safetensors (EMA weights; best = best val fitness), and
init_report.md/.json with --init.

examples:
  inspectd train --data ../shared/data/neu --config configs/train/end2end.yaml --out runs/e2e
  inspectd train --data my-export/ --epochs 50 --out runs/mine
  inspectd train --out runs/mine --resume

for train: a data folder, --init checkpoint or --device given on the command line and found
wrong is a usage error (2: an --init of another preset or architecture included); the same
named by the training config is a configuration error (78); 130: interrupted (continue with
--resume)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="train a model on a data folder (NEU or YOLO layout)",
        description=textwrap.fill(
            "Train the detection + segmentation network on labelled images: staged or end-to-end "
            "as the training config says (configs/train/*.yaml, keys in docs/training-config.md), "
            "SGD with warm-up and a cosine schedule, EMA weights, validation every eval_every "
            "epochs, a progress bar per epoch. On CUDA it trains under float16 autocast with a "
            "gradient scaler; on CPU under bfloat16 autocast where the CPU has native bf16 (bf16: "
            "auto). Interrupt it at any time and continue with --resume.", 79),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", metavar="DIR",
                   help="data folder in the NEU or the YOLO layout (default: the config's data.root); its "
                        "own splits are used (train.txt/val.txt, or data.yaml's train:/val:)")
    p.add_argument("--config", metavar="FILE",
                   help="training config YAML (default: the built-in defaults of docs/training-config.md; "
                        "with --resume: the run's own config.json)")
    p.add_argument("--out", metavar="RUN", required=True,
                   help="run folder (created; must not hold a run unless --resume)")
    p.add_argument("--init", metavar="PATH",
                   help="start from these weights: an inspectd .safetensors or a YOLOv5 v6 .pt of the same "
                        "preset (overrides the config's init; ignored with --resume)")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="train N epochs in all, the config's stages scaled to fit (warm-up too)")
    p.add_argument("--epochs-scale", type=float, metavar="F",
                   help="multiply every stage's epochs and warm-up by F (for budget comparisons)")
    p.add_argument("--device", metavar="D",
                   help="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N' (default: the config's device, auto)")
    p.add_argument("--model", metavar="PRESET",
                   help="model preset (configs/model/NAME.yaml: n, s) or a model YAML (default: the config's model)")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per step (default: the config's, 32)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="data-loading worker processes (default: the config's, 0)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: the config's; 0 = all cores)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, only the per-epoch validation lines")
    p.set_defaults(func=run)


def _positive(args: argparse.Namespace, name: str, minimum: int = 1) -> None:
    from inspectd.errors import InspectdError

    value = getattr(args, name.replace("-", "_"))
    if value is not None and value < minimum:
        raise InspectdError(f"--{name} {value}: must be at least {minimum}")


def load_config(args: argparse.Namespace, out: Path):
    """The training config: --config, else the run's config.json (--resume), else the defaults;
    then the command-line overrides."""
    from inspectd.configtools import from_mapping
    from inspectd.errors import InspectdError
    from inspectd.training.config import (
        TrainConfig,
        load_train_config,
        scale_epochs,
        set_total_epochs,
    )

    if args.config:
        cfg = load_train_config(args.config)
    elif args.resume:
        saved = out / "config.json"
        try:
            cfg = from_mapping(TrainConfig, json.loads(saved.read_text())["train"], str(saved))
        except (OSError, ValueError, KeyError) as exc:
            raise InspectdError(f"--resume: {saved} cannot be read ({exc}); give --config") from None
    else:
        if not args.data:
            raise InspectdError("give --data DIR (a data folder), or --config FILE naming one in data.root")
        cfg = TrainConfig()
    if args.data:
        data = Path(args.data).expanduser()
        if not data.is_dir():
            raise InspectdError(f"--data {args.data}: folder not found")
        cfg.data.root = str(data)
        cfg.data.train = cfg.data.val = None      # the folder's own splits, whatever the config named
    if args.init:
        cfg.init = args.init
    for key in ("device", "model", "batch_size", "workers", "threads"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.epochs_scale is not None:
        if args.epochs_scale <= 0:
            raise InspectdError(f"--epochs-scale {args.epochs_scale}: must be positive")
        scale_epochs(cfg, args.epochs_scale)
    if args.epochs is not None:
        if args.epochs < len(cfg.stages):
            raise InspectdError(f"--epochs {args.epochs}: the config has {len(cfg.stages)} stages, "
                                "each needs at least one epoch")
        set_total_epochs(cfg, args.epochs)
    return cfg


def run(args: argparse.Namespace) -> int:
    from inspectd.errors import InspectdError

    for name in ("epochs", "batch-size"):
        _positive(args, name)
    for name in ("workers", "threads"):
        _positive(args, name, 0)
    out = Path(args.out).expanduser()
    if args.resume and not (out / "last.pt").is_file():
        raise InspectdError(f"--resume: {out / 'last.pt'} not found (no run to continue in {out})")
    if not args.resume and (out / "last.pt").exists():
        raise InspectdError(f"--out {out}: already holds a run (last.pt); continue it with --resume, "
                            "or choose another folder")
    if args.init:
        init = Path(args.init).expanduser()
        if not init.is_file():
            raise InspectdError(f"--init {args.init}: file not found")
    if args.config and not Path(args.config).expanduser().is_file():
        raise InspectdError(f"--config {args.config}: file not found")
    if not out.parent.is_dir():
        raise InspectdError(f"--out {args.out}: folder {out.parent} does not exist")

    cfg = load_config(args, out)

    from inspectd.configtools import ConfigError
    from inspectd.training.loop import InputError, Trainer

    if args.device is not None:
        from inspectd.evaluation import resolve_device
        resolve_device(args.device)           # a bad --device is a usage error, a bad device: a config one
    progress = not args.no_progress
    try:
        trainer = Trainer(cfg, out, resume=args.resume, show_progress=progress)
    except InputError as exc:
        option = "--data" if exc.key == "data.root" else "--init"
        if getattr(args, option[2:]):             # the command line named it: a usage error
            raise InspectdError(f"{option}: {exc}") from None
        raise ConfigError(f"{args.config or out / 'config.json'}: {exc.key}: {exc}") from None
    mc, info = trainer.model_cfg, trainer.data_info()
    seg = ", ".join(mc.seg_class_names[1:]) or "none (no masks)"
    print(f"train: {mc.name} {mc.input_size[0]}x{mc.input_size[1]} on {info['root']} ({info['layout']} layout, "
          f"{info['train_images']} train / {info['val_images']} val images); classes: "
          f"{', '.join(mc.class_names)}; segmented: {seg}; {trainer.device}, {trainer.precision()}; "
          f"{info['anchors']}; epoch {trainer.epoch + 1} of {trainer.total_epochs} -> {out}", file=sys.stderr)
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        print(f"train: interrupted; continue with: inspectd train --out {out} --resume", file=sys.stderr)
        return 130
    best = max((r for r in history if "val_fitness" in r), key=lambda r: r["val_fitness"], default=None)
    if best is not None:
        print(f"train: done; best val fitness {best['val_fitness']:.3f} (mAP@0.5 {best['val_map50']:.3f}, "
              f"mIoU {best['val_miou']:.3f}) at epoch {best['epoch']}: {out / 'best.safetensors'}", file=sys.stderr)
    else:
        print(f"train: done: {out / 'last.safetensors'}", file=sys.stderr)
    return 0
