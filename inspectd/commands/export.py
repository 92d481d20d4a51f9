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
    p.add_argument("--out", help="ONNX file to write (required unless --int8)")
    p.add_argument("--batch", type=int, help="fix the batch size instead of a dynamic one")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--int8", action="store_true",
                   help="instead: quantise the checkpoint to int8 for the openvino backend (NNCF post-training "
                        "quantisation, needs inspectd[int8]), calibrated on --calib-count images of "
                        "--calib-data's train.txt, into the model cache where inference.precision: int8 finds it "
                        "(the path is printed; --out also copies the .xml and .bin there)")
    p.add_argument("--calib-data", metavar="DIR", help="--int8: data folder in the NEU layout (train.txt, images/)")
    p.add_argument("--calib-count", type=int, default=300, metavar="N",
                   help="--int8: calibration images, spread over train.txt (default: 300)")
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
    from inspectd.errors import InspectdError, UsageError
    from inspectd.model import default_model_path
    from inspectd.model.checkpoint import load_checkpoint
    from inspectd.model.export import export_onnx

    if args.int8:
        return _int8(args)
    if not args.out:
        raise UsageError("--out: required (the ONNX file to write), unless --int8")
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


def _int8(args) -> int:
    import shutil
    from pathlib import Path

    from inspectd.backends.openvino_int8 import build_int8
    from inspectd.errors import InspectdError, UsageError
    from inspectd.model import default_model_path

    if not args.calib_data:
        raise UsageError("--int8: needs --calib-data DIR (training images to calibrate on)")
    if args.calib_count < 1:
        raise UsageError(f"--calib-count {args.calib_count}: must be at least 1")
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and (out.suffix != ".xml" or not out.parent.is_dir()):
        raise InspectdError(f"--out {args.out}: with --int8, an .xml path in an existing folder")
    ckpt = Path(args.model).expanduser() if args.model else default_model_path()
    if not ckpt.is_file():
        raise InspectdError(f"--model {ckpt}: model file not found")
    calib = Path(args.calib_data).expanduser()
    if not (calib / "train.txt").is_file():      # a usage error whether or not NNCF is installed
        raise UsageError(f"--calib-data {calib}: no train.txt there (expected the layout of shared/data/neu)")
    ir = build_int8(ckpt, calib, args.calib_count)
    print(f"wrote {ir} (inference.precision: int8 with this checkpoint uses it)")
    if out is not None:
        shutil.copyfile(ir.with_suffix(".bin"), out.with_suffix(".bin"))
        shutil.copyfile(ir, out)
        print(f"wrote {out}")
    return 0
