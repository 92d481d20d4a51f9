"""``inspectd proxy --in ADDRESS --out ADDRESS``: one address for every camera of a line."""
from __future__ import annotations

import argparse
import sys

NAME = "proxy"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="forward several publishers to one address (XSUB to XPUB)",
        description=(
            "Forward the events of several inspectd publishers to subscribers on one address. "
            "--in addresses are connected to (each camera's bus.publish address); prefix one with @ "
            "to bind it instead, for publishers that connect (bus.publish: \">tcp://proxy:5550\"). "
            "--out is bound. Messages pass unchanged, so sequence numbers and gap detection work "
            "as with a direct connection. Runs until SIGINT or SIGTERM."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--in", dest="inputs", action="append", required=True, metavar="ADDRESS",
                   help="publisher address (repeatable)")
    p.add_argument("--out", dest="output", required=True, metavar="ADDRESS",
                   help="address subscribers connect to, e.g. tcp://*:5560")
    p.add_argument("--hwm", type=int, default=1000, help="high-water mark of each side, in messages")
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="the proxy's secret key file (NAME.key_secret): subscribers must use CurveZMQ")
    p.add_argument("--curve-allowed-dir", default=None, metavar="DIR",
                   help="folder of the public keys (*.key) of the subscribers allowed on --out")
    p.add_argument("--curve-in-server-key", default=None, metavar="FILE",
                   help="the publishers' public key file, when they use CurveZMQ")
    p.add_argument("--curve-in-client-key", default=None, metavar="FILE",
                   help="the proxy's secret key file as a client of CurveZMQ publishers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.bus.curve import CurveClient, CurveServer
    from inspectd.bus.proxy import EventProxy
    from inspectd.errors import InspectdError
    from inspectd.stop_signals import StopSignals

    if args.hwm < 1:
        raise InspectdError(f"--hwm {args.hwm}: must be at least 1")
    if (args.curve_server_key is None) != (args.curve_allowed_dir is None):
        raise InspectdError("CurveZMQ on --out needs both --curve-server-key and --curve-allowed-dir")
    if (args.curve_in_server_key is None) != (args.curve_in_client_key is None):
        raise InspectdError("CurveZMQ on --in needs both --curve-in-server-key and --curve-in-client-key")
    curve_out = (CurveServer.load(args.curve_server_key, args.curve_allowed_dir, "--curve")
                 if args.curve_server_key else None)
    curve_in = (CurveClient.load(args.curve_in_server_key, args.curve_in_client_key, "--curve-in")
                if args.curve_in_server_key else None)
    proxy = EventProxy(args.inputs, args.output, hwm=args.hwm, curve_in=curve_in, curve_out=curve_out).start()
    try:
        with StopSignals() as stop:          # caught before the line that says we are listening
            print(f"inspectd proxy: {', '.join(proxy.in_endpoints)} -> {proxy.out_endpoint}",
                  file=sys.stderr, flush=True)
            while not stop.wait(0.5):
                if proxy.wait(0):
                    raise InspectdError("proxy stopped unexpectedly", exit_code=1)
    finally:
        proxy.close()
    return 0
