"""Config section ``source``: where the frames come from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inspectd.configtools import doc, fail
from inspectd.runtime.sources.pixel_formats import PIXEL_FORMATS

SourceKind = Literal["video", "folder", "genicam"]



@dataclass
class GenICamConfig:
    """Sub-section ``source.genicam``: a GenICam camera through a GenTL producer (harvesters)."""

    cti: list[str] = doc(
        "GenTL producer files (.cti) to load: the camera vendor's producer. There is no "
        "sensible default for a real line; when empty, the .cti files in the folders of "
        "the GENICAM_GENTL64_PATH environment variable are used (set by most vendor SDKs).",
        default_factory=list,
    )
    serial: str | int | None = doc("Select the camera by serial number (as `inspectd cameras` shows it).", default=None)
    model: str | None = doc("Select the camera by model name (must then be the only one of that model).", default=None)
    index: int | None = doc(
        "Select the camera by its position in the producers' device list (0-based). "
        "With no serial, model or index, the only camera found is used.",
        default=None,
    )
    pixel_format: str = doc(
        "PixelFormat to set on the camera: " + ", ".join(PIXEL_FORMATS) + ". It is converted "
        "to the frames the pipeline wants (source.channels).",
        default="Mono8",
    )
    width: int | None = doc("Width to set (pixels); null keeps the camera's setting.", default=None)
    height: int | None = doc("Height to set (pixels); null keeps the camera's setting.", default=None)
    frame_rate: float | None = doc(
        "AcquisitionFrameRate to set (frames/s; AcquisitionFrameRateEnable is switched on "
        "where the camera has it); null keeps the camera's setting.",
        default=None,
    )
    exposure_us: float | None = doc("ExposureTime to set (microseconds); null keeps the camera's setting.", default=None)
    trigger_mode: bool | None = doc(
        "true: a frame per trigger (TriggerMode On for FrameStart, e.g. from the line's "
        "encoder); false: free run (TriggerMode Off); null keeps the camera's setting.",
        default=None,
    )
    trigger_source: str | None = doc("TriggerSource to set with trigger_mode true (e.g. Line1).", default=None)
    fetch_timeout_s: float = doc(
        "Longest wait for one frame. A timeout is not an error (a triggered camera is "
        "silent while the line stands); it is counted and lets the service check for stop.",
        default=1.0,
    )
    buffers: int = doc(
        "Frame buffers announced to the producer. When all are full the camera skips "
        "frames; those show up as camera frame-id gaps and uninspected stretches.",
        default=8,
    )
    silent_after_s: float | None = doc(
        "The camera counts as silent after this long without a frame: from then on the strip "
        "that passes unseen (at line.speed_m_per_s, in frame lengths, from the last frame on) is "
        "published as `uninspected` stretches with reason `camera_silent`, and the status says "
        "so. null: 10 frame periods at the camera's frame rate, at least 0.5 s; a triggered "
        "camera (trigger_mode true) is then never taken as silent, since it is whenever the "
        "line stands.",
        default=None,
    )
    reconnect_after_s: float | None = doc(
        "After this long silent (or at once, when the acquisition process died or failed), "
        "the camera is reconnected: its acquisition process is replaced by a fresh one, which "
        "opens and configures the camera anew; again every reconnect_after_s while it stays "
        "silent. null: never reconnect (a failed acquisition then stops the service with "
        "status 1, a silent camera stops the systemd watchdog pings).",
        default=5.0,
    )
    reconnect_attempts: int = doc(
        "Reconnect attempts in a row without a frame before the service stops with status 1 "
        "(for systemd to restart it). 0: stop at the first reconnect_after_s of silence.",
        default=3,
    )

    def validate(self, where: str, prefix: str = "source.genicam") -> None:
        if self.index is not None and (self.serial is not None or self.model is not None):
            fail(where, f"{prefix}.index", "give either index or serial/model, not both")
        if self.index is not None and self.index < 0:
            fail(where, f"{prefix}.index", f"must be 0 or more, got {self.index}")
        if self.pixel_format not in PIXEL_FORMATS:
            fail(where, f"{prefix}.pixel_format",
                 f"{self.pixel_format!r} is not supported; use one of {', '.join(PIXEL_FORMATS)}")
        for key in ("width", "height", "buffers"):
            value = getattr(self, key)
            if value is not None and value < 1:
                fail(where, f"{prefix}.{key}", f"must be positive, got {value}")
        if self.reconnect_attempts < 0:
            fail(where, f"{prefix}.reconnect_attempts", f"must be 0 or more, got {self.reconnect_attempts}")
        for key in ("frame_rate", "exposure_us", "fetch_timeout_s", "silent_after_s", "reconnect_after_s"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                fail(where, f"{prefix}.{key}", f"must be positive, got {value}")
        if self.trigger_source is not None and self.trigger_mode is not True:
            fail(where, f"{prefix}.trigger_source", "only meaningful with trigger_mode: true")


@dataclass
class SourceConfig:
    """Config section ``source``: the camera or recording the daemon inspects."""

    kind: SourceKind = doc(
        "'genicam' (a camera, see source.genicam), 'video' (a recording, read with "
        "OpenCV) or 'folder' (a folder of images, in file-name order).",
        default="video",
    )
    path: str | None = doc("The video file or image folder (kinds 'video' and 'folder').", default=None)
    loop: bool = doc(
        "Start the video or folder again at its end (a demo that runs forever); frame "
        "indices and strip positions keep counting up.",
        default=False,
    )
    channels: int = doc(
        "Frames handed to inference: 1 = Mono8 (grey, what the NEU-trained model sees), "
        "3 = BGR colour.",
        default=1,
    )
    fps: float | None = doc(
        "Nominal frame rate for replay pacing (--realtime): required for 'folder'; for "
        "'video' it overrides the rate stored in the file. A camera's rate comes from "
        "source.genicam.frame_rate.",
        default=None,
    )
    genicam: GenICamConfig = doc("The camera (kind 'genicam').", default_factory=GenICamConfig)

    def validate(self, where: str, prefix: str = "source") -> None:
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            fail(where, f"{prefix}.channels", f"must be 1 (Mono8) or 3 (BGR), got {self.channels!r}")
        if self.kind in ("video", "folder") and not self.path:
            fail(where, f"{prefix}.path", f"required for kind {self.kind!r}")
        if self.fps is not None and self.fps <= 0:
            fail(where, f"{prefix}.fps", f"must be positive, got {self.fps}")

    def describe(self) -> str:
        """The source for logs: "video /data/coil.mp4", "genicam serial 1234"."""
        if self.kind != "genicam":
            return f"{self.kind} {self.path}"
        g = self.genicam
        device = (f"serial {g.serial}" if g.serial is not None else f"model {g.model}" if g.model else
                  f"index {g.index}" if g.index is not None else "the only camera")
        return f"genicam {device}"
