"""The sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""
from __future__ import annotations

import os
import uuid

import pytest

from inspectd.runtime.notify import Notifier
from notify_listener import NotifyListener


@pytest.fixture
def listener(tmp_path):
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_messages_arrive_in_order(listener):
    n = Notifier(listener.env())
    assert n.enabled
    assert n.ready(status="inspecting")
    assert n.status("inspected 3\nrejects 1")
    assert n.watchdog()
    assert n.stopping()
    assert listener.wait_for(lambda m: len(m) == 4, timeout=10)
    assert listener.messages == [
        {"READY": "1", "STATUS": "inspecting"},
        {"STATUS": "inspected 3 rejects 1"},   # one line: STATUS must not break the datagram
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
    ]
    n.close()


def test_abstract_namespace_address():
    lst = NotifyListener(abstract=f"inspectd-test-{uuid.uuid4().hex}")
    try:
        n = Notifier(lst.env())
        assert n.ready()
        assert lst.wait_for(lambda m: m == [{"READY": "1"}], timeout=10)
    finally:
        lst.close()


def test_no_socket_is_a_noop():
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    n = Notifier(env)
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.sent == 0


def test_disabled_by_config_ignores_socket(listener):
    n = Notifier(listener.env(), enabled=False)
    assert not n.enabled and n.ready() is False


def test_dead_socket_does_not_raise(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    assert n.status("x") is False   # logged once, never raised


def test_watchdog_interval_is_half_of_watchdog_usec(listener):
    assert Notifier(listener.env(watchdog_usec=10_000_000)).watchdog_interval_s == pytest.approx(5.0)
    assert Notifier(listener.env()).watchdog_interval_s is None
    # A watchdog meant for another process is not ours to feed.
    env = dict(listener.env(watchdog_usec=2_000_000), WATCHDOG_PID=str(os.getpid() + 1))
    assert Notifier(env).watchdog_interval_s is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(env).watchdog_interval_s == pytest.approx(1.0)
