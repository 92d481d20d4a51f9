"""Frame sources: a GenICam camera, a video file, a folder of images."""
from __future__ import annotations

from inspectd.errors import InspectdError
from inspectd.runtime.sources.base import FrameTimeout, PositionFn, Source
from inspectd.runtime.sources.config import GenICamConfig, SourceConfig

__all__ = ["FrameTimeout", "GenICamConfig", "PositionFn", "Source", "SourceConfig", "open_source"]


def open_source(cfg: SourceConfig, camera: str, position: PositionFn | None = None) -> Source:
    """Open (and for a camera, configure) the configured source; errors are one line.

    Call ``stop()`` on the result when done, also if no acquisition thread ever ran
    (a camera stays claimed until then).
    """
    if cfg.kind == "video":
        from inspectd.runtime.sources.video import VideoSource

        return VideoSource(_path(cfg), camera, cfg.channels, cfg.loop, cfg.fps, position)
    if cfg.kind == "folder":
        from inspectd.runtime.sources.folder import FolderSource

        return FolderSource(_path(cfg), camera, cfg.channels, cfg.loop, cfg.fps, position)
    if cfg.kind == "genicam":
        from inspectd.runtime.sources.genicam import GenICamSource

        return GenICamSource(cfg.genicam, camera, cfg.channels, position)
    raise InspectdError(f"source.kind: unknown kind {cfg.kind!r} (expected video, folder or genicam)")


def _path(cfg: SourceConfig) -> str:
    if not cfg.path:
        raise InspectdError(f"source.path: required for kind {cfg.kind!r}")
    return cfg.path
