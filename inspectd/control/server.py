"""The control socket's thread: one ZeroMQ REP socket, owned by this thread alone.

Each request is one JSON object; each gets exactly one JSON reply (REP must answer before it
can receive again), also when the request is malformed: ``{"ok": false, "error": "..."}``.
What a request does is the handler's business (``runtime.coils.CoilDesk``); a handler error
that is not a ``InspectdError`` is answered as an internal error and logged, never fatal.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveServer
from inspectd.bus.sockets import load_curve_server, open_server_socket
from inspectd.control.config import ControlConfig
from inspectd.errors import InspectdError

log = structlog.get_logger("inspectd.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]

MAX_REQUEST_BYTES = 65536
_POLL_MS = 100


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class ControlServer:
    """Binds ``cfg.address`` on ``start()`` (raising ``InspectdError`` if it cannot) and
    answers requests with ``handler`` until ``close()``."""

    def __init__(self, cfg: ControlConfig, handler: Handler, name: str = "control"):
        if cfg.address is None:
            raise ValueError("no control address configured")
        self.cfg = cfg
        self._handler = handler
        self._name = name
        self._address = parse_address(cfg.address, "bind", "control.address")
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self.endpoint: str | None = None
        self.requests = 0
        self.errors = 0

    def start(self) -> ControlServer:
        curve = load_curve_server(
            self.cfg.curve, "control.curve", "control_curve_no_clients",
            "nobody can start or end coils until a client key is added and the daemon restarted")
        self._thread = threading.Thread(target=self._main, args=(curve,), name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join(5.0)
            raise self._start_error
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _main(self, curve: CurveServer | None) -> None:
        try:
            server = open_server_socket(self._address, zmq.REP,
                                        {zmq.LINGER: 0, zmq.MAXMSGSIZE: MAX_REQUEST_BYTES},
                                        curve, "control.address")
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._start_error = exc
            self._ready.set()
            return
        sock = server.sock
        self.endpoint = server.endpoint
        self._ready.set()
        log.info("control_listening", address=self.endpoint, curve=curve is not None)
        try:
            while not self._stop.is_set():
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                parts = sock.recv_multipart()
                reply = self._answer(parts)
                sock.send(encode(reply))
        except zmq.ZMQError as exc:
            log.error("control_socket_failed", error=exc.strerror,
                      note="coil starts and ends are no longer taken; the inspection goes on")
        finally:
            server.close()

    def _answer(self, parts: list[bytes]) -> dict[str, Any]:
        self.requests += 1
        try:
            if len(parts) != 1:
                raise InspectdError(f"expected one message part, got {len(parts)}")
            try:
                request = json.loads(parts[0].decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise InspectdError("the request is not JSON") from None
            if not isinstance(request, dict):
                raise InspectdError("the request is not a JSON object")
            return self._handler(request)
        except InspectdError as exc:
            self.errors += 1
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bad request must not stop the control thread
            self.errors += 1
            log.error("control_request_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
