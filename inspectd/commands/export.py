"""`inspectd export`: the inference graph of a checkpoint as ONNX."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint's inference graph to ONNX",
                       description="Writes uint8 tiles [N, C, H, W] -> det [N, A, 5+nc] (x1, y1, x2, y2, "
                                   "objectness, class probabilities; before NMS) and seg [N, S, H, W] "
                                   "(class probabilities). Opset 17, dynamic batch.")
    p.add_argument("--model", help="checkpoint (default: the shipped model)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--batch", type=int, help="fix the batch size instead of a dynamic one")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def run(args) -> int:
    from inspectd.model import default_model_path
    from inspectd.model.checkpoint import load_checkpoint
    from inspectd.model.export import export_onnx

    model, _ = load_checkpoint(args.model or default_model_path())
    path = export_onnx(model, args.out, batch=args.batch, opset=args.opset)
    print(f"wrote {path}")
    return 0
