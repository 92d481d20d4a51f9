"""`inspectd export`: the inference graph of a checkpoint as ONNX, ready for the runtime backends."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint's inference graph to ONNX",
                       description="Writes uint8 tiles [N, C, H, W] -> det [N, A, 5+nc] (x1, y1, x2, y2, "
                                   "objectness, class probabilities; before NMS), seg [N, S, H, W] "
                                   "(class probabilities), labels [N, H, W] (uint8 arg-max class) and "
                                   "conf [N, H, W] (its probability). Opset 17, dynamic batch. The model "
                                   "config and class names travel in the file's metadata, so the file can "
                                   "be given as inference.model to the onnxruntime and openvino backends.")
    p.add_argument("--model", help="checkpoint (default: the shipped model)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--batch", type=int, help="fix the batch size instead of a dynamic one")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from inspectd.backends.onnx_model import (
        _need_onnx,
        add_label_outputs,
        file_sha256,
        save_atomically,
        set_metadata,
    )
    from inspectd.errors import InspectdError
    from inspectd.model import default_model_path
    from inspectd.model.checkpoint import load_checkpoint
    from inspectd.model.export import export_onnx

    out = Path(args.out).expanduser()
    if not out.parent.is_dir():
        raise InspectdError(f"--out {args.out}: folder {out.parent} does not exist")
    if args.batch is not None and args.batch < 1:
        raise InspectdError(f"--batch {args.batch}: must be at least 1")
    onnx = _need_onnx()
    ckpt = Path(args.model).expanduser() if args.model else default_model_path()
    model, cfg = load_checkpoint(ckpt)
    with tempfile.TemporaryDirectory(prefix="inspectd-export-") as tmp:
        raw = export_onnx(model, Path(tmp) / "graph.onnx", batch=args.batch, opset=args.opset)
        proto = onnx.load(str(raw))
    add_label_outputs(proto)
    set_metadata(proto, cfg, "fp32", file_sha256(ckpt), f"exported from {ckpt.name} by inspectd export")
    onnx.checker.check_model(proto)
    save_atomically(proto, out)
    print(f"wrote {out}")
    return 0
