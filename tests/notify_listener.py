"""A stand-in for systemd's end of NOTIFY_SOCKET: a real AF_UNIX datagram socket that collects messages."""
from __future__ import annotations

import os
import socket
import threading
import time


class NotifyListener:
    def __init__(self, path: str | None = None, abstract: str | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract is not None:
            self.sock.bind(b"\0" + abstract.encode())
            self.address = "@" + abstract
        else:
            self.sock.bind(path)
            self.address = path
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            fields["_t"] = time.monotonic()    # arrival time (not part of the protocol)
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = dict(os.environ, NOTIFY_SOCKET=self.address)
        env.pop("WATCHDOG_PID", None)
        env.pop("WATCHDOG_USEC", None)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


def strip_times(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in m.items() if k != "_t"} for m in messages]
