"""The capacity check at start: can this machine inspect frames as fast as the line delivers them?

A line that delivers more frames per second than the inference stage finishes makes every
verdict late, whatever else the software does (the ring fills, frames are skipped or dropped).
A plant must know that when the service starts, not from late verdicts. So, after the start-up
self-test has warmed the stage at the real frame size, a few frames of that size are put
through the stage as the pipeline does (``in_flight`` frames with the model), and the rate at
which verdicts come out is compared with the rate the line needs:

- a camera: its configured ``frame_rate`` when free-running, else (triggered, or no rate set)
  line speed / frame length;
- a recording replayed at its rate (``run``; ``replay --realtime``): the rate it is paced at
  (``source.fps``, else the file's);
- a recording replayed as fast as it goes: no line rate applies; the check is skipped.

The result is one ``capacity`` log line and the status event's ``capacity`` object; when the
measured rate is below the need, a warning (``inference.capacity_check: warn``) or a
configuration error, exit 78 (``fail``). The measurement takes a few frames, at most about
``_BUDGET_S`` after the first verdict.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from inspectd.errors import ConfigError
from inspectd.runtime.frame import Frame

if TYPE_CHECKING:
    from inspectd.config import DaemonConfig
    from inspectd.runtime.inference import InferenceStage

_BUDGET_S = 0.2         # timed verdicts after the first; a 9-tile frame is ~60 ms on 2 cores
_CAP_S = 0.4            # a machine too slow for that stops after two verdicts or this long
_MIN_FRAMES, _MAX_FRAMES = 4, 12
ADVICE = ("run the model on a GPU (inference.device: cuda), use fewer or larger tiles (a smaller "
          "frame, inference.tile_overlap_px), or run the line slower (line.speed_m_per_s, or the "
          "camera's frame rate)")


@dataclass
class Capacity:
    """What the status event's ``capacity`` object holds."""

    check: str                          # inference.capacity_check: warn | fail | off
    needed_fps: float | None            # frames/s the line delivers; None: no line rate applies
    needed_from: str | None             # camera_frame_rate | line_speed | recording_rate
    measured_fps: float | None          # frames/s the stage finished here, at start
    margin: float | None                # measured / needed: below 1, verdicts fall further behind
    tiles_per_frame: int | None
    skipped: str | None = None          # why nothing was measured
    what: str = field(default="", repr=False)     # the warning's sentence (not sent)

    @property
    def short(self) -> bool:
        return self.margin is not None and self.margin < 1.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["what"]
        return d


def needed_rate(cfg: DaemonConfig, frame_height: int | None, paced: bool, nominal_fps: float | None,
                ) -> tuple[float | None, str | None, str | None]:
    """(frames/s the line needs, where that comes from, why there is none)."""
    if cfg.source.kind == "genicam":
        g = cfg.source.genicam
        if g.frame_rate is not None and not g.trigger_mode:
            return float(g.frame_rate), "camera_frame_rate", None
        if cfg.line.frame_length_m is None and frame_height is None:
            return None, None, "the frame length is unknown until the camera opens (set line.frame_length_m)"
        length = cfg.line.frame_length(int(frame_height or 0))
        return cfg.line.speed_m_per_s / length, "line_speed", None
    if not paced:
        return None, None, "the recording is replayed as fast as it goes: no line rate applies"
    if not nominal_fps:
        return None, None, "the recording has no frame rate"
    return float(nominal_fps), "recording_rate", None


def measure_fps(stage: InferenceStage, image) -> float:
    """Frames per second the stage finishes ``image``-sized frames, as the pipeline runs it
    (``in_flight`` frames with the model): the verdicts' rate after the first one."""
    done: list[float] = []
    begun = 0
    now = time.monotonic_ns
    start = time.monotonic()
    while len(done) < _MAX_FRAMES:
        while stage.pending < stage.in_flight and begun < _MAX_FRAMES:
            stage.begin(Frame(index=begun, image=image, camera="capacity", capture_ns=now(),
                              capture_wall_ns=time.time_ns()))
            begun += 1
        stage.finish(stage.oldest)
        done.append(time.monotonic())
        if (len(done) >= _MIN_FRAMES and done[-1] - done[0] >= _BUDGET_S) or (
                len(done) >= 2 and done[-1] - start >= _CAP_S):
            break
    while stage.pending:                 # leave the stage empty for the pipeline; they count too
        stage.finish(stage.oldest)
        done.append(time.monotonic())
    return (len(done) - 1) / max(done[-1] - done[0], 1e-9)


def check_capacity(cfg: DaemonConfig, stage: InferenceStage, shape: tuple[int, ...] | None, *,
                   paced: bool, nominal_fps: float | None, log_now: bool = True) -> Capacity:
    """Measure; fail (``ConfigError`` naming the key, exit 78) when short and the check says
    ``fail``; log the ``capacity`` line (and ``capacity_short``) now, or, with ``log_now`` false,
    when the caller calls ``log_capacity`` (preflight: once every other check has passed, so that
    a config error stays one line). ``shape``: the frames' size (None: a camera's, not known yet)."""
    from inspectd.runtime.selftest import test_frame

    mode = cfg.inference.capacity_check
    needed, basis, why = needed_rate(cfg, None if shape is None else int(shape[0]), paced, nominal_fps)
    if mode == "off":
        why = "inference.capacity_check is off"
    elif shape is None and why is None:
        why = "the frame size is unknown until the camera opens"
    if why is not None:
        cap = Capacity(mode, _r(needed), basis, None, None, None, skipped=why)
    else:
        assert shape is not None and needed is not None
        measured = measure_fps(stage, test_frame(tuple(shape)))
        cap = Capacity(mode, _r(needed), basis, _r(measured), round(measured / needed, 2), stage.tiles_per_frame)
        cap.what = (f"this machine inspects {cap.measured_fps:g} frames/s of {shape[1]}x{shape[0]} "
                    f"({cap.tiles_per_frame} tiles) on {stage.backend.name}, the line needs {cap.needed_fps:g} "
                    f"({basis}): verdicts will be late and the strip behind them uninspected")
        if cap.short and mode == "fail":
            raise ConfigError(f"inference.capacity_check: fail: {cap.what}; {ADVICE}")
    if log_now:
        log_capacity(cap)
    return cap


def log_capacity(cap: Capacity) -> None:
    """The ``capacity`` line; below the need, the ``capacity_short`` warning with what to do."""
    import structlog

    log = structlog.get_logger("inspectd.capacity")
    fields = dict(needed_fps=cap.needed_fps, needed_from=cap.needed_from, measured_fps=cap.measured_fps,
                  margin=cap.margin, tiles_per_frame=cap.tiles_per_frame)
    if cap.skipped is not None:
        log.info("capacity", **fields, skipped=cap.skipped)
        return
    log.info("capacity", **fields)
    if cap.short:
        log.warning("capacity_short", **fields, note=f"{cap.what}; {ADVICE}")


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
