"""CurveZMQ authentication and the XSUB/XPUB proxy, over real sockets on loopback."""
from __future__ import annotations

import os
import shutil
import stat
import time

import pytest
import zmq

from bus_helpers import TIMEOUT_S, Collector, assert_valid, publisher, synced, verdict
from inspectd.bus.config import CurveConfig
from inspectd.bus.curve import CurveClient, CurveServer, make_key_pair
from inspectd.bus.proxy import EventProxy
from inspectd.bus.subscriber import EventSubscriber
from inspectd.errors import InspectdError

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    server = make_key_pair(d, "server")
    allowed = make_key_pair(d, "actuator")
    stranger = make_key_pair(d, "stranger")
    clients = tmp_path / "clients"
    clients.mkdir()
    shutil.copy(allowed[0], clients / "actuator.key")        # only the actuator's public key
    return {"dir": d, "server": server, "allowed": allowed, "stranger": stranger, "clients": clients}


def test_key_files_are_loadable_and_secret_ones_private(keys):
    public, secret = keys["server"]
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    pub_key, sec_key = zmq.auth.load_certificate(secret)
    assert zmq.auth.load_certificate(public) == (pub_key, None) and len(sec_key) == 40
    with pytest.raises(InspectdError, match="exists already"):
        make_key_pair(keys["dir"], "server")
    with pytest.raises(InspectdError, match="holds no secret key"):
        CurveServer.load(public, keys["clients"])
    with pytest.raises(InspectdError, match="no such folder"):
        CurveServer.load(secret, keys["dir"] / "nope")


def test_curve_subscriber_with_an_allowed_key_receives_and_one_without_receives_nothing(keys):
    cfg_curve = CurveConfig(server_secret_key=keys["server"][1], allowed_clients_dir=keys["clients"])
    pub = publisher(curve=cfg_curve)
    allowed = EventSubscriber(pub.endpoint, curve=CurveClient.load(keys["server"][0], keys["allowed"][1]))
    stranger = EventSubscriber(pub.endpoint, curve=CurveClient.load(keys["server"][0], keys["stranger"][1]))
    plain = EventSubscriber(pub.endpoint)
    try:
        synced(allowed)
        col_stranger, col_plain = Collector(stranger), Collector(plain)
        col = Collector(allowed)
        for i in range(50):
            pub.publish_verdict(verdict(i, n_defects=1))
        col.wait(lambda evs: any(e.msg["kind"] == "verdict" and e.msg["frame"] == 49 for e in evs))
        # The allowed subscriber got the verdicts and at least 10 heartbeat intervals passed:
        # the others had every chance to receive something.
        col.wait(lambda evs: sum(e.msg["kind"] == "heartbeat" for e in evs) >= 10)
        got = col.stop()
        assert col_stranger.stop() == [] and col_plain.stop() == []
    finally:
        for s in (allowed, stranger, plain):
            s.close()
        pub.close()
    assert [e.msg["frame"] for e in got if e.msg["kind"] == "verdict"] == list(range(50))
    assert allowed.tracker.gaps == 0


def test_publisher_with_a_bad_curve_config_does_not_start(keys):
    with pytest.raises(InspectdError, match=r"bus.curve.server_secret_key '.*server.key': holds no secret key"):
        publisher(curve=CurveConfig(server_secret_key=keys["server"][0], allowed_clients_dir=keys["clients"]))


def test_proxy_carries_two_publishers_to_one_subscriber():
    a = publisher(camera="cam.1")
    b = publisher(camera="cam.10")
    proxy = EventProxy([a.endpoint, b.endpoint], "tcp://127.0.0.1:*").start()
    sub = EventSubscriber(proxy.out_endpoint, ["verdict/", "heartbeat/"])
    try:
        col = Collector(sub)
        col.wait(lambda evs: {e.msg["camera"] for e in evs if e.msg["kind"] == "heartbeat"} == {"cam.1", "cam.10"})
        for i in range(100):
            a.publish_verdict(verdict(i, camera="cam.1"))
            b.publish_verdict(verdict(i, n_defects=i % 2, camera="cam.10"))
        col.wait(lambda evs: all(any(e.msg["kind"] == "verdict" and e.msg["camera"] == c and e.msg["frame"] == 99
                                     for e in evs) for c in ("cam.1", "cam.10")))
        events = col.stop()
    finally:
        sub.close()
        proxy.close()
        a.close()
        b.close()
    for cam, pub in (("cam.1", a), ("cam.10", b)):
        vs = [e.msg for e in events if e.msg["kind"] == "verdict" and e.msg["camera"] == cam]
        assert [m["frame"] for m in vs] == list(range(100))
        assert {m["publisher"] for m in vs} == {pub.encoder.publisher}
        ks = [m["kind_seq"] for m in vs]
        assert ks == list(range(ks[0], ks[0] + 100))
    assert sub.tracker.track == "kind_seq" and sub.tracker.gaps == 0
    assert proxy.forwarded >= 200 and proxy.subscriptions >= 2
    for e in events[:5]:
        assert_valid(e.msg)


def test_proxy_with_curve_on_both_sides(keys):
    cfg_curve = CurveConfig(server_secret_key=keys["server"][1], allowed_clients_dir=keys["clients"])
    pub = publisher(curve=cfg_curve)
    # The proxy is the publisher's allowed client ("actuator" key) and a CURVE server itself.
    proxy = EventProxy([pub.endpoint], "tcp://127.0.0.1:*",
                       curve_in=CurveClient.load(keys["server"][0], keys["allowed"][1]),
                       curve_out=CurveServer.load(keys["server"][1], keys["clients"])).start()
    sub = EventSubscriber(proxy.out_endpoint, curve=CurveClient.load(keys["server"][0], keys["allowed"][1]))
    stranger = EventSubscriber(proxy.out_endpoint, curve=CurveClient.load(keys["server"][0], keys["stranger"][1]))
    try:
        col_stranger = Collector(stranger)
        synced(sub)
        hb = 0
        deadline = time.monotonic() + TIMEOUT_S
        while hb < 10 and time.monotonic() < deadline:
            ev = sub.recv(0.5)
            hb += ev is not None and ev.msg["kind"] == "heartbeat"
        assert hb == 10
        assert col_stranger.stop() == []
    finally:
        sub.close()
        stranger.close()
        proxy.close()
        pub.close()


def test_proxy_bad_addresses_are_clear_errors():
    with pytest.raises(InspectdError, match=r"--in address 'tcp://x': expected tcp://HOST:PORT"):
        EventProxy(["tcp://x"], "tcp://127.0.0.1:*")
    with pytest.raises(InspectdError, match=r"--out address 'tcp://203.0.113.7:5999': cannot bind"):
        EventProxy(["tcp://127.0.0.1:5999"], "tcp://203.0.113.7:5999").start()
