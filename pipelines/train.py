#!/usr/bin/env python3
"""Train the multitask network on a NEU-style folder.

    python pipelines/train.py --config configs/train/end2end.yaml --out runs/end2end
    python pipelines/train.py --config configs/train/end2end.yaml --out runs/end2end --resume
    python pipelines/train.py --config configs/train/coco-staged.yaml --out runs/coco-staged

With --init (or init: in the config) a YOLOv5 v6 .pt starts the run from YOLOv5's weights; the
run folder then also gets init_report.md/.json (what was loaded, adapted, new).

The run folder gets config.json, metrics.csv/.json per epoch, curves.png, last.pt (resume
state), last.safetensors and best.safetensors (EMA weights, best val fitness).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspectd.errors import InspectdError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config YAML (configs/train/*.yaml)")
    p.add_argument("--out", required=True, help="run folder (created)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="multiply every stage's epochs and warm-up (for budget comparisons)")
    p.add_argument("--data", help="override data.root")
    p.add_argument("--init", help="override init: start from this checkpoint's weights (an inspectd "
                   ".safetensors or a YOLOv5 v6 .pt of the same preset; ignored with --resume)")
    p.add_argument("--threads", type=int, help="override threads")
    args = p.parse_args(argv)
    try:
        from inspectd.training.config import load_train_config
        from inspectd.training.loop import Trainer
        cfg = load_train_config(args.config)
        if args.data:
            cfg.data.root = args.data
        if args.init:
            cfg.init = args.init
        if args.threads is not None:
            cfg.threads = args.threads
        if args.epochs_scale != 1.0:
            for s in cfg.stages:
                s.epochs = max(1, round(s.epochs * args.epochs_scale))
                s.warmup_epochs = min(s.warmup_epochs * args.epochs_scale, s.epochs / 2)
        Trainer(cfg, args.out, resume=args.resume).fit()
    except InspectdError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("train: interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
