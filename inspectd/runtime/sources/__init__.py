"""Frame sources: a GenICam camera, a video file, a folder of images."""
from __future__ import annotations

from typing import Any, Literal, overload

from inspectd.errors import InspectdError
from inspectd.runtime.sources.base import AcquiredSource, CorruptFrames, FrameTimeout, PositionFn, Source
from inspectd.runtime.sources.config import GenICamConfig, SourceConfig

__all__ = ["AcquiredSource", "CorruptFrames", "FrameTimeout", "GenICamConfig", "PositionFn", "Source", "SourceConfig",
           "open_source"]


@overload
def open_source(cfg: SourceConfig, camera: str, position: PositionFn | None = None, *,
                camera_process: Literal[False] = False, log: Any = None) -> Source: ...
@overload
def open_source(cfg: SourceConfig, camera: str, position: PositionFn | None = None, *,
                camera_process: bool, log: Any = None) -> AcquiredSource: ...
def open_source(cfg: SourceConfig, camera: str, position: PositionFn | None = None, *,
                camera_process: bool = False, log: Any = None) -> AcquiredSource:
    """Open (and for a camera, configure) the configured source; errors are one line.

    Call ``stop()`` on the result when done, also if no acquisition thread ever ran
    (a camera stays claimed until then). ``camera_process``: a GenICam camera is opened in
    its own process (``runtime.camera_process.CameraProcess``, what the service runs; ``log``
    is the ``LogConfig`` it logs with); otherwise every source is a ``Source`` read in-process.
    """
    if cfg.kind == "video":
        from inspectd.runtime.sources.video import VideoSource

        return VideoSource(_path(cfg), camera, cfg.channels, cfg.loop, cfg.fps, position)
    if cfg.kind == "folder":
        from inspectd.runtime.sources.folder import FolderSource

        return FolderSource(_path(cfg), camera, cfg.channels, cfg.loop, cfg.fps, position)
    if cfg.kind == "genicam" and camera_process:
        from inspectd.runtime.camera_process import CameraProcess

        return CameraProcess(cfg.genicam, camera, cfg.channels, position,
                             **({"log_format": log.format, "log_level": log.level} if log is not None else {}))
    if cfg.kind == "genicam":
        from inspectd.runtime.sources.genicam import GenICamSource

        return GenICamSource(cfg.genicam, camera, cfg.channels, position)
    raise InspectdError(f"source.kind: unknown kind {cfg.kind!r} (expected video, folder or genicam)")


def _path(cfg: SourceConfig) -> str:
    if not cfg.path:
        raise InspectdError(f"source.path: required for kind {cfg.kind!r}")
    return cfg.path
