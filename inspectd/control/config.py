"""The ``control`` config section: where the daemon takes coil starts and ends."""
from __future__ import annotations

from dataclasses import dataclass

from inspectd.bus.address import parse_address
from inspectd.bus.config import CurveConfig
from inspectd.configtools import doc, fail
from inspectd.errors import InspectdError

#: Where ``inspectd coil`` sends when it is given no --address (the address the sample config binds).
DEFAULT_CLIENT_ADDRESS = "tcp://127.0.0.1:5570"


@dataclass
class ControlConfig:
    address: str | None = doc(
        "ZeroMQ address of the control socket (REP) that takes `inspectd coil start|end|status`, "
        "e.g. `tcp://127.0.0.1:5570` (this machine only) or `tcp://*:5570` (with `curve` set: "
        "the line's controller on another machine). null: no control socket; coils then come "
        "only from `replay --coil`. One address per daemon: give each camera its own port.",
        default=None,
    )
    curve: CurveConfig = doc(
        "CurveZMQ for the control socket (off unless its keys are set): `server_secret_key` is the "
        "daemon's, `allowed_clients_dir` holds the public keys of those who may start and end "
        "coils. Keep them apart from the bus's subscribers: reading events is not running the line.",
        default_factory=CurveConfig,
    )

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if self.address is not None:
            try:
                parse_address(self.address, "bind", "address")
            except InspectdError as exc:
                fail(where, p + "address", str(exc))
