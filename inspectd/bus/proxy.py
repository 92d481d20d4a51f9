"""XSUB -> XPUB forwarder: one address that serves the events of every camera of a line.

The proxy connects its XSUB side to each camera's publisher (or binds it, ``@ADDRESS``, for
publishers that connect with ``bus.publish: ">tcp://proxy:5550"``) and binds its XPUB side
for subscribers. Subscriptions travel upstream, so publishers only send what someone wants.
Messages pass unchanged: ``publisher`` ids and sequence numbers stay per camera, and a
subscriber's gap detection works as if it were connected directly. A slow subscriber of the
proxy loses its own messages at the XPUB high-water mark, like one of a publisher.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import zmq

from inspectd.bus.address import parse_address
from inspectd.bus.curve import CurveClient, CurveServer
from inspectd.errors import InspectdError

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator


class EventProxy:
    """Forwards on its own thread, which owns both sockets.

    The loop is ours rather than ``zmq.proxy_steerable``: libzmq 4.3's steerable proxy can
    miss its TERMINATE command when a subscriber has just left, and a loop of our own also
    counts what it forwards.
    """

    def __init__(self, inputs: Sequence[str], output: str, *, hwm: int = 1000,
                 curve_in: CurveClient | None = None, curve_out: CurveServer | None = None):
        if not inputs:
            raise InspectdError("proxy: give at least one --in address")
        self._inputs = [parse_address(a, "connect", "--in address") for a in inputs]
        self._output = parse_address(output, "bind", "--out address")
        self._hwm = hwm
        self._curve_in = curve_in
        self._curve_out = curve_out
        self._ctx = zmq.Context()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.in_endpoints: list[str] = []
        self.out_endpoint: str | None = None
        self.forwarded = 0          # messages passed to subscribers
        self.subscriptions = 0      # (un)subscriptions passed to publishers
        self._auth: ThreadAuthenticator | None = None

    def start(self) -> EventProxy:
        self._thread = threading.Thread(target=self._main, name="event-proxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join(5.0)
            self._ctx.term()
            raise self._error
        return self

    def _main(self) -> None:
        xsub = xpub = None
        try:
            if self._curve_out is not None:
                self._auth = self._curve_out.start_authenticator(self._ctx)
            xsub = self._ctx.socket(zmq.XSUB)
            xsub.setsockopt(zmq.RCVHWM, self._hwm)
            xsub.setsockopt(zmq.LINGER, 0)
            if self._curve_in is not None:
                self._curve_in.apply(xsub)
            xpub = self._ctx.socket(zmq.XPUB)
            xpub.setsockopt(zmq.SNDHWM, self._hwm)
            xpub.setsockopt(zmq.LINGER, 0)
            if self._curve_out is not None:
                self._curve_out.apply(xpub)
            self.in_endpoints = [a.attach(xsub, "--in address") for a in self._inputs]
            self.out_endpoint = self._output.attach(xpub, "--out address")
        except BaseException as exc:  # noqa: BLE001 - handed to start()'s caller
            self._error = exc if isinstance(exc, InspectdError) else InspectdError(f"proxy: {exc}")
            for s in (xsub, xpub):
                if s is not None:
                    s.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._forward(xsub, xpub)
        finally:
            xsub.close(linger=0)
            xpub.close(linger=0)

    def _forward(self, xsub: zmq.Socket, xpub: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while not self._stop.is_set():
            for sock, _ in poller.poll(100):
                src, dst = (xsub, xpub) if sock is xsub else (xpub, xsub)
                for _ in range(1000):           # a batch, then look at the other side and stop again
                    try:
                        parts = src.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        # XPUB drops a slow subscriber's messages at its HWM, never blocks.
                        dst.send_multipart(parts, zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                    if src is xsub:
                        self.forwarded += 1
                    else:
                        self.subscriptions += 1

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the proxy stops (True) or ``timeout_s`` passes (False)."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def __enter__(self) -> EventProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
