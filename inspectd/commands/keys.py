"""``inspectd keys DIR``: make CurveZMQ key pairs for the publisher and its subscribers."""
from __future__ import annotations

import argparse

NAME = "keys"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="make CurveZMQ key pairs",
        description=(
            "Write a CurveZMQ key pair per NAME into DIR: NAME.key (public) and NAME.key_secret "
            "(secret, mode 0600). Give the publisher its .key_secret (bus.curve.server_secret_key) "
            "and each subscriber the publisher's .key; copy each subscriber's .key into the "
            "publisher's bus.curve.allowed_clients_dir."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder for the key files (created if missing)")
    p.add_argument("names", nargs="*", metavar="NAME", default=["server", "client"],
                   help="one key pair per name")
    p.add_argument("--force", action="store_true", help="replace key files that exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.bus.curve import make_key_pair
    from inspectd.errors import InspectdError

    names = list(dict.fromkeys(args.names))
    if len(names) != len(args.names):
        raise InspectdError("keys: each NAME only once")
    if not args.force:
        from pathlib import Path

        for name in names:
            for suffix in (".key", ".key_secret"):
                if (Path(args.dir) / f"{name}{suffix}").exists():
                    raise InspectdError(
                        f"key file {str(Path(args.dir) / (name + suffix))!r}: exists already (use --force to replace it)")
    for name in names:
        public, secret = make_key_pair(args.dir, name, force=args.force)
        print(f"{name}: public {public}  secret {secret}")
    return 0
