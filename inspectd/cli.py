"""The ``inspectd`` command line: one subcommand per module in ``inspectd.commands``.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace; returns the exit code). Modules are
imported lazily by name so that ``inspectd subscribe`` does not import torch.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from inspectd import __version__
from inspectd.errors import InspectdError

# (subcommand, module under inspectd.commands, one-line help)
COMMANDS: list[tuple[str, str, str]] = [
    ("run", "run", "run the inspection service from a config file"),
    ("replay", "replay", "run a recording through the inspection pipeline"),
    ("cameras", "cameras", "list the GenICam cameras the GenTL producers find"),
    ("check-config", "check_config", "validate a config file without starting anything"),
    ("model-info", "model_info", "parameters and GFLOPs of a model preset"),
    ("evaluate", "evaluate", "measure a model on a data folder (NEU or YOLO layout)"),
    ("train", "train", "train a model on a data folder (NEU or YOLO layout)"),
    ("export", "export", "export a checkpoint's inference graph to ONNX"),
    ("subscribe", "subscribe", "print the events of a publisher live"),
    ("keys", "keys", "make CurveZMQ key pairs"),
    ("proxy", "proxy", "forward several publishers to one address (XSUB to XPUB)"),
    ("coil", "coil", "tell a running daemon that a coil starts or ends"),
    ("bench", "bench", "measure model, inference stage and full pipeline speed"),
    ("store", "store", "keep every event of the bus in SQLite or PostgreSQL"),
    ("web", "web", "serve the plant's pages (line, coils, gallery) from the store's database"),
]


# The one rule for exit statuses (inspectd.errors, docs/cli.md), under every command's --help.
EXIT_STATUS_HELP = (
    "exit status: 0 done; 1 failure at run time (camera lost or not found, address in use, "
    "disk full: systemd restarts the service); 2 usage error (the command line, or a file a "
    "command's own argument names: replay FILE, --out); 78 configuration error (the config file, "
    "a value in it or in an option of run/replay standing in for one: --model, --camera, --publish, or a file "
    "or device they name: model, recording, GenTL producer, keys, GPU; the systemd units do not "
    "restart on it)."
)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspectd",
        description="Real-time surface-defect inspection for hot-rolled steel strip.",
        epilog=EXIT_STATUS_HELP,
    )
    parser.add_argument("--version", action="version", version=f"inspectd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module, help_text in COMMANDS:
        if wanted == name:
            try:
                mod = importlib.import_module(f"inspectd.commands.{module}")
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("inspectd"):
                    raise InspectdError(f"command {name!r} is not available in this build") from exc
                raise InspectdError(
                    f"command {name!r} needs the Python package {exc.name!r}; install it with pip"
                ) from exc
            mod.register(sub)
            cmd = sub.choices[name]
            cmd.epilog = f"{cmd.epilog}\n\n{EXIT_STATUS_HELP}" if cmd.epilog else EXIT_STATUS_HELP
        else:
            # Cheap placeholder so `inspectd --help` lists every command.
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("INSPECTD_DEBUG"))
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except InspectdError as exc:
        if debug:
            raise
        print(f"inspectd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("inspectd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if debug:
            raise
        print(
            f"inspectd: internal error: {type(exc).__name__}: {exc} "
            "(set INSPECTD_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
