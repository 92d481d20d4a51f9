#!/usr/bin/env python3
"""Train the multitask network: a thin wrapper around `inspectd train` (every option is its own;
see `inspectd train --help`). Kept so that the commands in the model card and configs/train/
keep working.

    python pipelines/train.py --config configs/train/end2end.yaml --out runs/end2end
    python pipelines/train.py --config configs/train/end2end.yaml --out runs/end2end --resume
    python pipelines/train.py --config configs/train/coco-staged.yaml --out runs/coco-staged

With --init (or init: in the config) a YOLOv5 v6 .pt starts the run from YOLOv5's weights; the
run folder then also gets init_report.md/.json (what was loaded, adapted, new).

The run folder gets config.json, metrics.csv/.json per epoch, curves.png, last.pt (resume
state), last.safetensors and best.safetensors (EMA weights, best val fitness).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inspectd.cli import main as inspectd_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return inspectd_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
