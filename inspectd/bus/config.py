"""The ``bus`` config section: where and how the event publisher sends."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from inspectd.bus.address import parse_address
from inspectd.configtools import doc, fail
from inspectd.errors import InspectdError


@dataclass
class CurveConfig:
    server_secret_key: Path | None = doc(
        "The publisher's CurveZMQ secret key file (`NAME.key_secret`, as `inspectd keys` writes "
        "it); its public half (`NAME.key`) is what subscribers need. null (with "
        "`allowed_clients_dir` null): no encryption, anyone who can reach the address may subscribe.",
        default=None,
    )
    allowed_clients_dir: Path | None = doc(
        "Folder of the public key files (`*.key`) of the subscribers that may connect. A "
        "subscriber whose key is not here receives nothing. Read once at start.",
        default=None,
    )

    @property
    def enabled(self) -> bool:
        return self.server_secret_key is not None

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if (self.server_secret_key is None) != (self.allowed_clients_dir is None):
            missing = "allowed_clients_dir" if self.allowed_clients_dir is None else "server_secret_key"
            fail(where, p + missing, "CurveZMQ needs both server_secret_key and allowed_clients_dir")
        for name in ("server_secret_key", "allowed_clients_dir"):
            if getattr(self, name) is not None and str(getattr(self, name)) in ("", "."):
                fail(where, p + name, "must name a file or folder")


@dataclass
class BusConfig:
    publish: str | None = doc(
        "ZeroMQ address the event publisher binds, e.g. `tcp://*:5556` or `ipc:///run/inspectd/cam0`. "
        "Prefix `>` to connect instead (to an `inspectd proxy --in @ADDRESS`), `@` to bind explicitly. "
        "null: no socket (`replay --out` still writes the verdicts). `inspectd run/replay --publish` overrides it.",
        default=None,
    )
    heartbeat_interval_s: float = doc(
        "Seconds between heartbeats. Heartbeats are sent at this interval all the time, also while "
        "verdicts flow, so a subscriber can treat a missing heartbeat as a dead publisher.",
        default=1.0,
    )
    status_interval_s: float = doc(
        "Seconds between `status` messages when the publisher collects the counters itself "
        "(the service passes it a status source).",
        default=5.0,
    )
    send_hwm: int = doc(
        "ZeroMQ send high-water mark: messages held per subscriber before that subscriber's "
        "messages are dropped (it sees the loss as a sequence gap; other subscribers are not affected).",
        default=1000,
    )
    queue_size: int = doc(
        "Verdicts and status reports that may wait between the pipeline and the publisher thread. "
        "When full, the pipeline does not wait: the item is counted as `queue_full` and its "
        "sequence numbers are skipped, so subscribers see the loss as a gap.",
        default=1000,
    )
    defects: bool = doc(
        "Also send one `defect` message per defect (verdicts always carry their defects).",
        default=True,
    )
    uninspected_max_delay_s: float = doc(
        "Longest time, in seconds, that consecutive uninspected frames are gathered into one "
        "`uninspected` message before it is sent. Keep it well below gate_distance_m / speed_m_per_s: "
        "actuators reject on these messages.",
        default=0.05,
    )
    crops: bool = doc(
        "Attach a JPEG crop of each defect to its `defect` message as a third message part.",
        default=False,
    )
    crop_margin_px: int = doc("Pixels of context around a defect's box in its crop.", default=16)
    crop_max_side_px: int = doc(
        "Longest side of a crop in pixels; larger crops are scaled down.", default=256
    )
    crop_jpeg_quality: int = doc("JPEG quality of the crops, 1 to 100.", default=85)
    curve: CurveConfig = doc(
        "CurveZMQ encryption and authentication of the publisher (off unless its keys are set).",
        default_factory=CurveConfig,
    )

    def validate(self, where: str, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        if self.publish is not None:
            try:
                parse_address(self.publish, "bind", "address")
            except InspectdError as exc:
                fail(where, p + "publish", str(exc))
        for name in ("heartbeat_interval_s", "status_interval_s", "uninspected_max_delay_s"):
            value = getattr(self, name)
            ok = math.isfinite(value) and (value >= 0 if name == "uninspected_max_delay_s" else value > 0)
            if not ok:
                fail(where, p + name, f"must be a positive number of seconds, got {value!r}")
        for name in ("send_hwm", "queue_size", "crop_max_side_px"):
            if getattr(self, name) < 1:
                fail(where, p + name, f"must be at least 1, got {getattr(self, name)!r}")
        if self.crop_margin_px < 0:
            fail(where, p + "crop_margin_px", f"must be zero or more, got {self.crop_margin_px!r}")
        if not 1 <= self.crop_jpeg_quality <= 100:
            fail(where, p + "crop_jpeg_quality", f"must be 1 to 100, got {self.crop_jpeg_quality!r}")
        if self.crops and not self.defects:
            fail(where, p + "crops", "crops travel with defect messages; set defects: true as well")
