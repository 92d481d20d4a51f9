"""Turn a training run's best checkpoint into the shipped model file (float16, a few MB).

    python pipelines/ship_model.py runs/continue/best.safetensors inspectd/models/inspectd-n-neu.safetensors \
        --history "continued from the previous shipped model (configs/train/continue.yaml)"

The weights are stored as float16 (loading casts them back; the accuracy cost is below what val
can measure, see models/README.md); the run's epoch, metrics and training config go along in
the metadata, so `inspectd model-info --model FILE` can say where the model came from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("best", help="a run's best.safetensors (EMA weights)")
    p.add_argument("out", help="the file to write (e.g. inspectd/models/inspectd-n-neu.safetensors)")
    p.add_argument("--history", default="", help="how the run started (written into the metadata)")
    args = p.parse_args(argv)

    from safetensors import safe_open

    from inspectd.errors import InspectdError
    from inspectd.model.checkpoint import load_checkpoint, save_checkpoint

    best = Path(args.best)
    try:
        model, _ = load_checkpoint(best)
        with safe_open(str(best), "np") as f:
            run_info = json.loads((f.metadata() or {}).get("info", "{}"))
    except InspectdError as exc:
        print(f"ship_model: {exc}", file=sys.stderr)
        return 2
    info = {"source": f"{best} (EMA weights)", **{k: run_info[k] for k in ("epoch", "total_epochs", "metrics",
                                                                         "train_config") if k in run_info}}
    if args.history:
        info["history"] = args.history
    out = save_checkpoint(model, args.out, info=info, half=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), epoch {info.get('epoch', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
