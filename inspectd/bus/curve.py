"""CurveZMQ: key files, and turning a socket into an authenticating server or a client.

Key files use ZeroMQ's certificate format (the one ``zmq.auth`` and CZMQ read):
``NAME.key`` holds the public key, ``NAME.key_secret`` both keys. The publisher needs its
``.key_secret`` and a folder of its subscribers' ``.key`` files; a subscriber needs its own
``.key_secret`` and the publisher's ``.key``. A subscriber whose public key is not in the
folder fails the handshake and receives nothing (the publisher's ZAP handler refuses it).
"""
from __future__ import annotations

import datetime
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from inspectd.errors import InspectdError


def _write_key_file(path: Path, public: bytes, secret: bytes | None) -> None:
    now = datetime.datetime.now().isoformat(timespec="seconds")
    what = "Secret" if secret else "Public"
    lines = [
        f"#   ****  Generated on {now} by inspectd keys  ****",
        f"#   ZeroMQ CURVE **{what}** Certificate",
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions." if secret
        else "#   Exchange securely, or use a secure mechanism to verify the contents of this file.",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    # The secret file is created 0600 from the start, never readable by others even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def make_key_pair(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` in ``directory``; returns their paths."""
    if not zmq.has("curve"):
        raise InspectdError("this libzmq was built without CURVE support; cannot make keys")
    if not name or "/" in name or name.startswith("."):
        raise InspectdError(f"key name {name!r}: must be a plain file name")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InspectdError(f"key folder {str(directory)!r}: cannot create it: {exc.strerror}") from None
    public_path = directory / f"{name}.key"
    secret_path = directory / f"{name}.key_secret"
    for p in (public_path, secret_path):
        if p.exists():
            if not force:
                raise InspectdError(f"key file {str(p)!r}: exists already (use --force to replace it)")
            p.unlink()
    public, secret = zmq.curve_keypair()
    try:
        _write_key_file(public_path, public, None)
        _write_key_file(secret_path, public, secret)
    except OSError as exc:
        raise InspectdError(f"key folder {str(directory)!r}: cannot write keys: {exc.strerror}") from None
    return public_path, secret_path


def _read_keys(path: str | Path, what: str) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise InspectdError(f"{what} {str(path)!r}: no such key file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise InspectdError(f"{what} {str(path)!r}: not a ZeroMQ key file ({exc})") from None
    for key in (public, secret):
        if key is not None and len(key) != 40:
            raise InspectdError(f"{what} {str(path)!r}: key is not 40 Z85 characters")
    return public, secret


def load_public_key(path: str | Path, what: str) -> bytes:
    return _read_keys(path, what)[0]


def load_secret_key(path: str | Path, what: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file."""
    public, secret = _read_keys(path, what)
    if secret is None:
        raise InspectdError(f"{what} {str(path)!r}: holds no secret key (give the .key_secret file)")
    return public, secret


def allowed_client_keys(directory: str | Path, what: str) -> list[bytes]:
    """The public keys in ``directory/*.key``; each file must be valid."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InspectdError(f"{what} {str(directory)!r}: no such folder")
    return [load_public_key(p, what) for p in sorted(glob.glob(str(directory / "*.key")))]


@dataclass(frozen=True)
class CurveServer:
    public: bytes
    secret: bytes
    allowed_dir: Path
    allowed: tuple[bytes, ...]

    @classmethod
    def load(cls, secret_key_file: str | Path | None, allowed_dir: str | Path | None,
             what: str = "bus.curve") -> CurveServer:
        # The config's validation requires both keys when curve is enabled; None here is a bug.
        if secret_key_file is None or allowed_dir is None:
            raise InspectdError(f"{what}: server_secret_key and allowed_clients_dir are both required")
        public, secret = load_secret_key(secret_key_file, f"{what}.server_secret_key")
        allowed = allowed_client_keys(allowed_dir, f"{what}.allowed_clients_dir")
        return cls(public, secret, Path(allowed_dir), tuple(allowed))

    def start_authenticator(self, ctx: zmq.Context) -> ThreadAuthenticator:
        """A ZAP handler on ``ctx`` that admits exactly the allowed client keys."""
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.allowed_dir))
        return auth

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server (before bind/connect)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True


@dataclass(frozen=True)
class CurveClient:
    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_public_key_file: str | Path, client_secret_key_file: str | Path,
             what: str = "curve") -> CurveClient:
        server_public = load_public_key(server_public_key_file, f"{what} server key")
        public, secret = load_secret_key(client_secret_key_file, f"{what} client key")
        return cls(server_public, public, secret)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the server (before connect)."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
