"""A minimal client for systemd's notify protocol (sd_notify), without libsystemd.

systemd passes the address of a datagram socket in ``NOTIFY_SOCKET``: a filesystem path,
or an abstract-namespace name written with a leading ``@``. Each message is one datagram of
``KEY=VALUE`` lines. Without ``NOTIFY_SOCKET`` (a terminal, a test, another supervisor) every
call is a cheap no-op. A failed send is logged once and otherwise ignored: losing a status
line must never take the inspection down (a missed watchdog ping is systemd's to judge). A send
waits at most ``SEND_TIMEOUT_S`` for a receiver that does not read.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("inspectd.notify")

# Longest wait to hand one message to the service manager. A datagram socket blocks while the
# receiver's queue is full (net.unix.max_dgram_qlen, often 10); the supervisor sends from its
# loop, and a manager that stopped reading must not stall it for good.
SEND_TIMEOUT_S = 1.0


def _address(raw: str) -> str | bytes | None:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()   # abstract namespace
    if raw.startswith("/"):
        return raw
    return None   # e.g. systemd 254's "vsock:" addresses, which this client does not speak


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


class Notifier:
    """Sends READY, STATUS, WATCHDOG and STOPPING to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None, enabled: bool = True):
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "") if enabled else ""
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            log.warning("notify_socket_unsupported", address=raw)
        self._sock: socket.socket | None = None
        self._warned = False
        self.sent: int = 0
        self.watchdog_interval_s = self._watchdog_interval(env)

    @staticmethod
    def _watchdog_interval(env: Mapping[str, str]) -> float | None:
        """Half of WATCHDOG_USEC, as sd_watchdog_enabled() advises; None if no watchdog is armed."""
        usec = env.get("WATCHDOG_USEC")
        if not usec:
            return None
        pid = env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None   # the watchdog is meant for another process (e.g. our parent shell)
        try:
            value = int(usec)
        except ValueError:
            return None
        return value / 2e6 if value > 0 else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram; keys are upper-cased (``notify(ready=1, status="x")``)."""
        if self._address is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        return self.send(text)

    def send(self, text: str) -> bool:
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendto(text.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("notify_failed", address=os.environ.get("NOTIFY_SOCKET"), error=str(exc))
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
