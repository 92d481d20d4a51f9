"""``inspectd coil start|end|status``: tell running daemons that a coil starts or ends."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "coil"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="tell a running daemon that a coil starts or ends",
        description=(
            "Send a coil start or end to the control socket of one or more running daemons "
            "(control.address in their config; one per camera of the line: give --address for "
            "each). A coil starts with the first frame a daemon reads after the start arrived: "
            "from there on its events carry the coil id and positions from the coil's head "
            "(coil_position_m). A start while a coil is open ends that coil first (its coil_end "
            "says closed_by next_start). Prints one line per daemon; exit status 1 if a daemon "
            "did not answer within --timeout or refused the request."
        ),
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    start = sub.add_parser("start", help="a coil starts: its head reaches the camera now")
    start.add_argument("coil", metavar="ID", help="coil id: 1 to 64 letters, digits or _ . : # + / -")
    start.add_argument("--width-mm", type=float, default=None, metavar="W", help="strip width in millimetres")
    start.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                       help="more about the coil, e.g. grade=S235JR (repeatable; kept in its events)")
    end = sub.add_parser("end", help="the open coil ends: its tail has passed the camera")
    end.add_argument("coil", nargs="?", metavar="ID",
                     help="end only if this is the open coil (a safeguard against ending the wrong one)")
    sub.add_parser("status", help="print the open coil")
    for q in (start, end, sub.choices["status"]):
        _common(q)
    p.set_defaults(func=run)


def _common(p: argparse.ArgumentParser) -> None:
    from inspectd.control.config import DEFAULT_CLIENT_ADDRESS

    p.add_argument("--address", "-a", action="append", default=None, metavar="ADDRESS",
                   help=f"a daemon's control socket (repeatable: every camera of the line); default: "
                        f"control.address of --config, else {DEFAULT_CLIENT_ADDRESS}")
    p.add_argument("--config", metavar="FILE", help="take the address from this daemon config's control.address")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="seconds to wait for each answer (3)")
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="the daemon's public key file (NAME.key) when its control socket uses CurveZMQ")
    p.add_argument("--curve-client-key", default=None, metavar="FILE",
                   help="this client's secret key file (NAME.key_secret) for CurveZMQ")
    p.add_argument("--json", action="store_true", help="print each daemon's answer as one JSON line")


def parse_meta(items: list[str]) -> dict[str, str]:
    from inspectd.errors import InspectdError

    meta: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InspectdError(f"--meta {item!r}: expected KEY=VALUE")
        if key in meta:
            raise InspectdError(f"--meta {key}: given twice")
        meta[key] = value
    return meta


def connect_address(bind: str) -> str:
    """The address a client uses for a daemon that binds ``bind`` (``tcp://*:5570`` -> 127.0.0.1)."""
    from inspectd.bus.address import parse_address

    addr = parse_address(bind, "bind", "control.address")
    if addr.mode == "connect":
        return addr.endpoint
    transport, _, rest = addr.endpoint.partition("://")
    if transport == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.split(";")[-1]
        if host in ("*", "0.0.0.0", "[::]", "::"):
            host = "127.0.0.1"
        return f"tcp://{host}:{port}"
    return addr.endpoint


def _addresses(args: argparse.Namespace) -> list[str]:
    from inspectd.configtools import ConfigError
    from inspectd.control.config import DEFAULT_CLIENT_ADDRESS

    if args.address:
        return list(args.address)
    if args.config:
        from inspectd.config import load_config

        cfg = load_config(args.config)
        if cfg.control.address is None:
            raise ConfigError(f"{args.config}: control.address: not set, so that daemon has no control socket")
        address = connect_address(cfg.control.address)
        if address.endswith((":*", ":!")):
            raise ConfigError(f"{args.config}: control.address {cfg.control.address!r}: binds any free port; "
                              "give the daemon a fixed port, or --address")
        return [address]
    return [DEFAULT_CLIENT_ADDRESS]


def _request(args: argparse.Namespace) -> dict[str, Any]:
    from inspectd.runtime.coils import check_coil_id, check_meta, check_width

    if args.action == "start":
        # Checked here too, so that a typo is a usage error before anything is sent.
        msg: dict[str, Any] = {"command": "coil_start", "coil": check_coil_id(args.coil)}
        if args.width_mm is not None:
            msg["width_mm"] = check_width(args.width_mm)
        meta = check_meta(parse_meta(args.meta))
        if meta:
            msg["meta"] = meta
        return msg
    if args.action == "end":
        return {"command": "coil_end", **({"coil": check_coil_id(args.coil)} if args.coil else {})}
    return {"command": "coil_status"}


def _describe(reply: dict[str, Any]) -> str:
    def ended(c: dict[str, Any]) -> str:
        length = f"{c['length_m']:.2f} m, " if c.get("length_m") is not None else ""
        return f"coil {c['coil']} ended ({c['closed_by']}; {length}{c['frames']} frames)"

    def opened(c: dict[str, Any]) -> str:
        extra = ([f"width {c['width_mm']:g} mm"] if c.get("width_mm") is not None else []) + \
            [f"{k}={v}" for k, v in (c.get("meta") or {}).items()]
        return f"coil {c['coil']}" + (f" ({', '.join(extra)})" if extra else "")

    camera = reply.get("camera", "?")
    started, closed = reply.get("coil"), reply.get("closed")
    parts = []
    if closed:
        parts.append(ended(closed))
    if started and "closed_by" not in started:
        parts.append(opened(started) + (" started" if "frames" not in started else
                                        f" open: {started['frames']} frames so far"))
    if not parts:
        parts.append("no coil open")
    if reply.get("repeated"):
        parts[-1] += " (a repeated request: nothing changed)"
    return f"{camera}: " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from inspectd.bus.curve import CurveClient
    from inspectd.control.client import request
    from inspectd.errors import InspectdError

    if not args.timeout > 0:
        raise InspectdError(f"--timeout {args.timeout}: must be a positive number of seconds")
    if (args.curve_server_key is None) != (args.curve_client_key is None):
        raise InspectdError("CurveZMQ needs both --curve-server-key and --curve-client-key")
    msg = _request(args)
    curve = CurveClient.load(args.curve_server_key, args.curve_client_key, "--curve") \
        if args.curve_server_key else None
    addresses = _addresses(args)
    failed = 0
    for address in addresses:
        try:
            reply = request(address, msg, args.timeout, curve)
        except InspectdError as exc:
            if len(addresses) == 1:
                raise
            print(f"inspectd: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps(reply, separators=(",", ":")), flush=True)
        if not reply.get("ok"):
            print(f"inspectd: {address}: {reply.get('error', 'refused')}", file=sys.stderr)
            failed += 1
        elif not args.json:
            print(_describe(reply), flush=True)
    return 1 if failed else 0
