"""``inspectd check-config``: validate a daemon config without starting anything."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "check-config"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="validate a config file without starting anything",
        description=(
            "Validate a daemon config: every key and value (types, ranges, unknown keys), and "
            "the files it names: the recording (opened and its first frame decoded), the "
            "GenTL producers (.cti), the model checkpoint (its header read and matched "
            "against the merge rules' classes) and the CurveZMQ keys. No camera is opened, no "
            "socket bound, no thread started. Exit 0 when the config is good, 2 with one line "
            "naming the file, the key and the problem otherwise."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the daemon config (YAML)")
    p.add_argument("--print", dest="print_config", action="store_true",
                   help="print the effective config (file values plus defaults, paths made absolute) as YAML")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when the config is good")
    p.set_defaults(func=run)


def _check_source(cfg, where: str) -> str:
    from inspectd.errors import InspectdError

    src = cfg.source
    if src.kind in ("video", "folder"):
        from inspectd.runtime.sources import open_source
        source = open_source(src, cfg.camera, None)   # opens the file, decodes the first frame
        try:
            h, w = source.frame_shape[:2]
            shape = f"{w}x{h} {'BGR' if len(source.frame_shape) == 3 else 'Mono8'}"
            fps = f", {source.nominal_fps:g} fps" if source.nominal_fps else ""
        finally:
            source.stop()
        return f"{src.kind} {src.path} ({shape}{fps})"
    ctis = list(src.genicam.cti)
    if not ctis:
        for folder in filter(None, os.environ.get("GENICAM_GENTL64_PATH", "").split(os.pathsep)):
            ctis += [str(p) for p in sorted(Path(folder).glob("*.cti"))]
        if not ctis:
            raise InspectdError(
                f"{where}: source.genicam.cti: empty, and no .cti file in GENICAM_GENTL64_PATH; "
                "name the camera vendor's GenTL producer")
    for cti in ctis:
        if not Path(cti).is_file():
            raise InspectdError(f"{where}: source.genicam.cti: GenTL producer {cti} not found")
    return f"genicam camera via {', '.join(ctis)} (not opened)"


def _check_model(cfg, where: str) -> str:
    from inspectd.errors import InspectdError

    inf = cfg.inference
    path = inf.model
    if path is None:
        from inspectd.model import default_model_path
        path = default_model_path()
        if not path.is_file():
            raise InspectdError(
                f"{where}: inference.model: not set, and the shipped model {path} is missing; "
                "give a checkpoint")
    if not Path(path).is_file():
        raise InspectdError(f"{where}: inference.model: model file {path} not found")
    if inf.backend == "onnxruntime":
        return f"{path} (onnxruntime)"
    from inspectd.model.checkpoint import read_metadata
    from inspectd.runtime.merge import check_rules_against_model

    model_cfg, _info = read_metadata(path)
    class_names = list(getattr(model_cfg, "class_names", []) or [])
    seg_names = list(getattr(model_cfg, "seg_class_names", []) or [])
    if class_names:
        from inspectd.runtime.pipeline import check_model_classes
        check_model_classes(class_names, seg_names or ["background"], cfg.merge, str(path))
        check_rules_against_model(cfg.merge, class_names, seg_names, where=f"{where}: merge")
    return f"{path} ({', '.join(class_names) or 'classes unknown'})"


def _check_bus(cfg, where: str) -> str:
    from inspectd.errors import InspectdError

    curve = cfg.bus.curve
    if curve is not None and getattr(curve, "enabled", curve.server_secret_key is not None):
        if not Path(curve.server_secret_key).is_file():
            raise InspectdError(f"{where}: bus.curve.server_secret_key: {curve.server_secret_key} not found")
        if not Path(curve.allowed_clients_dir).is_dir():
            raise InspectdError(f"{where}: bus.curve.allowed_clients_dir: {curve.allowed_clients_dir} is not a folder")
    return cfg.bus.publish or "no socket (bus.publish is null)"


def run(args: argparse.Namespace) -> int:
    from inspectd.config import load_config

    where = args.file
    cfg = load_config(args.file)
    lines = [
        f"source: {_check_source(cfg, where)}",
        f"model: {_check_model(cfg, where)}",
        f"publish: {_check_bus(cfg, where)}",
        f"ring: {cfg.ring.slots} slots, policy {cfg.ring.policy.value}",
    ]
    if args.print_config:
        import yaml

        from inspectd.configtools import to_mapping
        print(yaml.safe_dump(to_mapping(cfg), sort_keys=False), end="")
    if not args.quiet:
        print(f"{args.file}: OK (camera {cfg.camera})", file=sys.stderr if args.print_config else sys.stdout)
        for line in lines:
            print(f"  {line}", file=sys.stderr if args.print_config else sys.stdout)
    return 0
