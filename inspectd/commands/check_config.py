"""``inspectd check-config``: validate a daemon config without starting anything."""
from __future__ import annotations

import argparse
import sys

NAME = "check-config"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="validate a config file without starting anything",
        description=(
            "Validate a daemon config by making every check that `inspectd run` makes before it "
            "opens the camera and binds the socket (the same code): every key and value (types, "
            "ranges, unknown or duplicate keys), the recording (opened and its first frame "
            "decoded), the GenTL producers (.cti: present and loadable as producers), the model "
            "(loaded by the configured backend on the configured device, its weights matched "
            "against its metadata, its classes against the merge rules, its input size against "
            "inference.tile_overlap_px), ring.slots and the camera's buffers against the memory "
            "available, the CurveZMQ keys, and the machine against the line (frames/s inspected "
            "against frames/s needed: a warning, or 78 with inference.capacity_check: fail). No camera "
            "is opened, no socket bound, no thread "
            "started. Exit 0 when the config is good, 78 with one line naming the file, the key "
            "and the problem otherwise (2 for a wrong command line)."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the daemon config (YAML)")
    p.add_argument("--print", dest="print_config", action="store_true",
                   help="print the effective config (file values plus defaults, paths made absolute) as YAML")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when the config is good")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.config import load_config
    from inspectd.runtime.preflight import preflight

    cfg = load_config(args.file)
    # Logs (warnings only) go to stderr: stdout is the report.
    import dataclasses

    from inspectd.logging_setup import configure_logging
    configure_logging(dataclasses.replace(cfg.log, level="warning"), fields={"camera": cfg.camera})
    checked = preflight(cfg, args.file)      # the checks `run` makes, short of camera and socket
    checked.close()
    if args.print_config:
        import yaml

        from inspectd.configtools import to_mapping
        print(yaml.safe_dump(to_mapping(cfg), sort_keys=False), end="")
    if not args.quiet:
        out = sys.stderr if args.print_config else sys.stdout
        print(f"{args.file}: OK (camera {cfg.camera})", file=out)
        for line in checked.report:
            print(f"  {line}", file=out)
    return 0
