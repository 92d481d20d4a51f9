"""One request to a daemon's control socket, as ``inspectd coil`` sends it.

A REQ socket that sent a request and got no answer cannot send again, and by default
closing it waits for the unsent request forever; so every request gets a fresh socket with
a receive timeout and LINGER 0, and the socket is closed whatever happens.
"""
from __future__ import annotations

import json
from typing import Any

import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveClient
from inspectd.control.server import encode
from inspectd.errors import InspectdError


class NoAnswer(InspectdError):
    """The daemon did not answer in time (not running, wrong address, keys refused)."""

    exit_code = 1


def request(address: str, msg: dict[str, Any], timeout_s: float = 3.0,
            curve: CurveClient | None = None, ctx: zmq.Context | None = None) -> dict[str, Any]:
    """Send ``msg`` to the control socket at ``address``; return its JSON reply."""
    addr = parse_address(address, "connect", "--address")
    own = ctx is None
    ctx = ctx or zmq.Context()
    sock = ctx.socket(zmq.REQ)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, max(1, round(timeout_s * 1000)))
        sock.setsockopt(zmq.SNDTIMEO, max(1, round(timeout_s * 1000)))
        if curve is not None:
            curve.apply(sock)
        addr.attach(sock, "--address")
        try:
            sock.send(encode(msg))
            raw = sock.recv()
        except zmq.Again:
            hint = " or the daemon refused the CurveZMQ keys" if curve is not None else \
                " (with CurveZMQ on the daemon, give --curve-server-key and --curve-client-key)"
            raise NoAnswer(f"{address}: no answer within {timeout_s:g} s: is the daemon running with "
                           f"control.address set to this address{hint}?") from None
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InspectdError(f"{address}: the answer is not JSON: is this an inspectd control socket?",
                                exit_code=1) from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise InspectdError(f"{address}: unexpected answer {str(reply)[:80]!r}", exit_code=1)
        return reply
    finally:
        sock.close(linger=0)
        if own:
            ctx.term()
