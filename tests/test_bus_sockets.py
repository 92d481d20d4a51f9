"""The server sockets the daemon opens (the event publisher's PUB, the control socket's REP) open
the same way (``bus/sockets.py``): one clear line naming the address when they cannot, a
warning when CURVE admits nobody yet. Real sockets on loopback, real key files."""
from __future__ import annotations

import pytest
import zmq
from structlog.testing import capture_logs

from inspectd.bus.config import BusConfig, CurveConfig
from inspectd.bus.curve import make_key_pair
from inspectd.bus.messages import EventEncoder
from inspectd.bus.publisher import EventPublisher
from inspectd.control.config import ControlConfig
from inspectd.control.server import ControlServer
from inspectd.errors import InspectdError
from inspectd.line import LineConfig


def _answer(request: dict) -> dict:
    return {"ok": True}


def _publisher(address: str, curve: CurveConfig | None = None) -> EventPublisher:
    return EventPublisher(BusConfig(publish=address, curve=curve or CurveConfig()), EventEncoder("cam0", LineConfig()))


def test_control_address_in_use_is_one_clear_error():
    busy = ControlServer(ControlConfig(address="tcp://127.0.0.1:*"), _answer).start()
    try:
        other = ControlServer(ControlConfig(address=busy.endpoint), _answer)
        with pytest.raises(InspectdError, match=r"^control.address 'tcp://127.0.0.1:\d+': cannot bind: "
                                                r"Address already in use"):
            other.start()
        assert other._thread is not None and not other._thread.is_alive()
    finally:
        busy.close()
    # The failed attempt left nothing bound: once the first server is gone the port is free.
    again = ControlServer(ControlConfig(address=busy.endpoint), _answer).start()
    try:
        assert again.endpoint == busy.endpoint
    finally:
        again.close()


def test_control_socket_answers_on_the_bound_endpoint():
    server = ControlServer(ControlConfig(address="tcp://127.0.0.1:*"), _answer).start()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(server.endpoint)
        req.send(b'{"op": "status"}')
        assert req.poll(5000), "no answer"
        assert req.recv() == b'{"ok":true}'
        req.send(b"not json")
        assert req.poll(5000), "no answer"
        assert req.recv() == b'{"ok":false,"error":"the request is not JSON"}'
    finally:
        req.close()
        ctx.term()
        server.close()


@pytest.mark.parametrize("which", ["bus", "control"])
def test_curve_without_allowed_clients_warns_and_still_opens(tmp_path, which):
    make_key_pair(tmp_path / "keys", "daemon")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    curve = CurveConfig(tmp_path / "keys" / "daemon.key_secret", allowed)
    with capture_logs() as logs:
        if which == "bus":
            server = _publisher("tcp://127.0.0.1:*", curve).start()
        else:
            server = ControlServer(ControlConfig(address="tcp://127.0.0.1:*", curve=curve), _answer).start()
    try:
        assert server.endpoint is not None and server.endpoint.startswith("tcp://127.0.0.1:")
    finally:
        server.close()
    warnings = [e for e in logs if e["event"] == f"{which}_curve_no_clients"]
    assert len(warnings) == 1 and warnings[0]["folder"] == str(allowed) and warnings[0]["log_level"] == "warning"


@pytest.mark.parametrize("which", ["bus", "control"])
def test_a_public_key_given_as_the_secret_key_is_one_clear_error(tmp_path, which):
    make_key_pair(tmp_path, "daemon")
    curve = CurveConfig(tmp_path / "daemon.key", tmp_path)
    server = (_publisher("tcp://127.0.0.1:*", curve) if which == "bus"
              else ControlServer(ControlConfig(address="tcp://127.0.0.1:*", curve=curve), _answer))
    with pytest.raises(InspectdError, match=rf"^{which}.curve.server_secret_key '.*daemon.key': holds no secret key"):
        server.start()
