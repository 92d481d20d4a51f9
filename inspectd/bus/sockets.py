"""Opening a server socket: the one way the event publisher and the control socket both do it.

A server socket is a ZeroMQ socket with its own context, bound (or connected) to a user's
address, optionally a CURVE server guarded by a ZAP handler on that context. It is opened on
the thread that will own it; whatever goes wrong while opening becomes one ``InspectdError``
line naming the address (``bus.publish 'tcp://...': cannot bind: Address already in use``),
with nothing left open behind it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from inspectd.bus.address import Address
from inspectd.bus.config import CurveConfig
from inspectd.bus.curve import CurveServer
from inspectd.errors import InspectdError

log = structlog.get_logger("inspectd.bus")


def load_curve_server(cfg: CurveConfig, what: str, no_clients_event: str, note: str) -> CurveServer | None:
    """The CURVE keys of a server socket (``what`` names the section in errors), or None when
    ``cfg`` is off. With no client key allowed yet, logs ``no_clients_event`` with ``note``:
    the socket still opens, but nobody gets through until a key is added and the daemon restarted."""
    if not cfg.enabled:
        return None
    curve = CurveServer.load(cfg.server_secret_key, cfg.allowed_clients_dir, what)
    if not curve.allowed:
        log.warning(no_clients_event, folder=str(curve.allowed_dir), note=note)
    return curve


@dataclass
class ServerSocket:
    """An open socket, its context and its ZAP handler (under CURVE); owned by one thread."""
    ctx: zmq.Context
    sock: zmq.Socket
    auth: ThreadAuthenticator | None
    endpoint: str          # the address actually used (wildcard port resolved)

    def close(self, linger_ms: int = 0) -> None:
        self.sock.close(linger=linger_ms)
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()


def open_server_socket(address: Address, kind: int, options: Mapping[int, int],
                       curve: CurveServer | None, what: str) -> ServerSocket:
    """A new context and a ``kind`` socket with ``options`` set, made a CURVE server when
    ``curve`` is given, attached to ``address``; ``what`` names the address in errors."""
    ctx = zmq.Context()
    sock: zmq.Socket | None = None
    auth: ThreadAuthenticator | None = None
    try:
        if curve is not None:
            auth = curve.start_authenticator(ctx)
        sock = ctx.socket(kind)
        for option, value in options.items():
            sock.setsockopt(option, value)
        if curve is not None:
            curve.apply(sock)
        endpoint = address.attach(sock, what)
    except BaseException as exc:  # noqa: BLE001 - reported to the opener as one line
        if sock is not None:
            sock.close(linger=0)
        if auth is not None:
            auth.stop()
        ctx.term()
        if isinstance(exc, InspectdError):
            raise
        raise InspectdError(f"{what} {address.text!r}: cannot open the socket: {exc}") from exc
    return ServerSocket(ctx, sock, auth, endpoint)
