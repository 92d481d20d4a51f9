"""ZeroMQ addresses as users write them: ``tcp://host:port``, ``ipc://path``, optional ``@``/``>``.

A leading ``@`` means bind and ``>`` means connect (the convention of CZMQ's zsock); without
one, each socket does what it usually does (a publisher binds, a subscriber connects). The
text is checked before it reaches libzmq, so that a typo is reported as one line naming the
address rather than as libzmq's "Invalid argument".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import zmq

from inspectd.errors import InspectdError

Mode = Literal["bind", "connect"]

_TRANSPORTS = ("tcp", "ipc", "inproc", "pgm", "epgm", "ws", "wss")
_TCP = re.compile(r"^(?:[^:;/]+;)?(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(\*|!|\d{1,5})$")


@dataclass(frozen=True)
class Address:
    mode: Mode
    endpoint: str          # what libzmq gets, without the @ / > prefix
    text: str              # as the user wrote it, for messages

    def attach(self, sock: zmq.Socket, what: str) -> str:
        """Bind or connect ``sock``; returns the endpoint actually used (wildcard port resolved)."""
        try:
            if self.mode == "bind":
                sock.bind(self.endpoint)
                last = sock.getsockopt(zmq.LAST_ENDPOINT)
                return last.decode() if isinstance(last, bytes) else str(last)
            sock.connect(self.endpoint)
            return self.endpoint
        except zmq.ZMQError as exc:
            raise InspectdError(f"{what} {self.text!r}: cannot {self.mode}: {exc.strerror}") from None


def parse_address(text: str, default_mode: Mode, what: str) -> Address:
    """Check ``text`` and split off the mode prefix; ``what`` names the address in errors."""
    if not isinstance(text, str) or not text.strip():
        raise InspectdError(f"{what} {text!r}: empty ZeroMQ address")
    mode: Mode = default_mode
    body = text.strip()
    if body[0] in "@>":
        mode = "bind" if body[0] == "@" else "connect"
        body = body[1:]
    transport, sep, rest = body.partition("://")
    if not sep:
        raise InspectdError(
            f"{what} {text!r}: not a ZeroMQ address (expected TRANSPORT://..., e.g. tcp://127.0.0.1:5556)"
        )
    if transport not in _TRANSPORTS:
        raise InspectdError(
            f"{what} {text!r}: unknown transport {transport!r} (expected one of {', '.join(_TRANSPORTS)})"
        )
    if not rest:
        raise InspectdError(f"{what} {text!r}: nothing after {transport}://")
    if transport == "tcp":
        m = _TCP.match(rest)
        if not m:
            raise InspectdError(f"{what} {text!r}: expected tcp://HOST:PORT (PORT a number, or * to bind any)")
        host, port = m.group(1), m.group(2)
        if port.isdigit() and not 0 < int(port) < 65536:
            raise InspectdError(f"{what} {text!r}: port {port} out of range 1..65535")
        if mode == "connect" and (port in ("*", "!") or host == "*"):
            raise InspectdError(f"{what} {text!r}: a connecting address needs a host and a port, not *")
    return Address(mode=mode, endpoint=body, text=text)
