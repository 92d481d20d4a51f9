"""Everything ``run`` checks before it opens the camera and binds the socket.

``inspectd check-config`` is this alone; ``run`` and ``replay`` call the same function and
hand what it built (the opened recording, the loaded model) to the pipeline, so a config
that passes ``check-config`` does not fail at start for a reason it could have found:

- the source: a recording is opened and its first frame decoded; a camera's GenTL producers
  (.cti) must exist and be GenTL producers (the camera itself is not opened);
- the model: the backend is built as ``run`` builds it (metadata read, weights loaded and
  matched against it, the device there: ``device: cuda`` without a GPU fails here);
- the model against the config: its classes against the merge rules, its input size against
  ``inference.tile_overlap_px``; the start-up self-test (``runtime.selftest``: a known frame
  through the whole stage, which catches NaN weights and a runtime that miscomputes);
- the machine against the line: ``runtime.capacity`` times frames of the real size through the
  warm stage against the frames/s the line needs (``inference.capacity_check``; ``fail``: 78);
- sizes against memory: ``ring.slots`` (and a camera's buffers) times the frame size;
- the bus's CurveZMQ keys.

Every error is a ``ConfigError`` (exit 78) naming the file and the key, or the command-line
option that stands in for the key (``--model``, ``--camera``, ``--publish``: configuration given
on the command line). A key that a command's own argument set (``replay FILE``) is blamed on
that argument, as a ``UsageError`` (exit 2).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inspectd.errors import ConfigError, InspectdError, UsageError

if TYPE_CHECKING:
    from inspectd.backends.base import Backend
    from inspectd.config import DaemonConfig
    from inspectd.runtime.capacity import Capacity
    from inspectd.runtime.sources import Source

# A message that starts with a config key ("inference.device: ...") names its own key.
_LEADING_KEY = re.compile(r"^([a-z_]+(?:\.[A-Za-z0-9_\-]+)*)([: ])")
_SECTIONS = ("camera", "source", "line", "ring", "inference", "merge", "bus", "control", "alarms", "log", "service")


@dataclass
class Preflight:
    """What the checks built: ``run`` hands ``source`` and ``backend`` to the pipeline;
    ``check-config`` prints ``report`` and calls ``close``."""

    backend: Backend
    source: Source | None                    # an opened recording; None for a camera (not opened)
    frame_shape: tuple[int, ...] | None        # None: a camera that keeps its own size
    report: list[str] = field(default_factory=list)
    self_tested: bool = False                  # the self-test ran at the frame size the source delivers
    capacity: Capacity | None = None           # None: measured by the pipeline (a camera's own size)

    def close(self) -> None:
        if self.source is not None:
            self.source.stop()
        self.backend.close()


class _Blame:
    """Turns an ``InspectdError`` from one check into a config or usage error."""

    def __init__(self, where: str, given: dict[str, str], usage: dict[str, str]):
        self.where = where
        self.given = given
        self.usage = usage

    @contextmanager
    def on(self, key: str, *, message_names_key: bool = True) -> Iterator[None]:
        try:
            yield
        except InspectdError as exc:
            raise self.error(str(exc), key, message_names_key) from None

    def error(self, msg: str, key: str, message_names_key: bool = True) -> InspectdError:
        m = _LEADING_KEY.match(msg)
        named, sep, body = (m.group(1), m.group(2), msg[m.end():].lstrip()) if m else ("", "", msg)
        names = named.split(".")[0] in _SECTIONS and ("." in named or sep == ":")
        if names and message_names_key:
            key = named
        option = self.given.get(key) or self.usage.get(key)
        if option is not None:
            body = body if names and sep == ":" else msg
            return (UsageError if key in self.usage else ConfigError)(f"{option}: {body}")
        return ConfigError(f"{self.where}: {msg}" if names else f"{self.where}: {key}: {msg}")


def preflight(cfg: DaemonConfig, where: str, given: dict[str, str] | None = None,
              usage: dict[str, str] | None = None, paced: bool | None = None) -> Preflight:
    """Run every check ``run`` makes short of opening the camera and binding the socket.

    ``where`` names the config (its file, or "the built-in defaults"); ``given`` maps the
    config keys that command-line options set to the option (``{"inference.model": "--model
    X"}``: still configuration, 78), ``usage`` those that a command's own argument set
    (``{"source.path": "replay FILE"}``: a usage error, 2). On success the recording (if any)
    is open and the model loaded: pass them on, or ``close()`` the result. ``paced``: whether
    a recording is replayed at its rate (None: as ``run`` does, when its rate is known), for the
    capacity check (``runtime.capacity``).
    """
    blame = _Blame(where, given or {}, usage or {})
    report: list[str] = []
    source: Source | None = None
    backend: Backend | None = None
    try:
        with blame.on("source.path" if cfg.source.kind != "genicam" else "source.genicam.cti"):
            source, shape, line = _check_source(cfg)
        report.append(f"source: {line}")
        ring_line = _check_memory(cfg, shape, blame)     # before anything big is loaded or run
        with blame.on("inference.model"):
            from inspectd.backends import create_backend
            backend = create_backend(cfg.inference)
        class_names = list(backend.class_names)
        seg_names = list(backend.seg_class_names)
        # A mismatch of model and rules is the model's fault when the command line chose it.
        with blame.on("inference.model", message_names_key="inference.model" not in blame.given):
            from inspectd.model.config import check_model_classes
            from inspectd.runtime.merge import check_rules_against_model
            check_model_classes(class_names, seg_names, str(cfg.inference.model or "(the shipped model)"))
            check_rules_against_model(cfg.merge, class_names, seg_names)
        with blame.on("inference.tile_overlap_px"):
            from inspectd.runtime.inference import check_tile_overlap
            th, tw = check_tile_overlap(cfg.inference, backend.input_size)
        with blame.on("inference.model"):
            found, tested_shape, capacity = _self_test(cfg, backend, source, shape, (th, tw), paced)
        report.append(f"model: {cfg.inference.model or '(the shipped model)'} on {backend.name}, "
                      f"{th}x{tw} tiles, classes {', '.join(class_names) or 'unknown'}; self-test passed "
                      f"({found.get('defects', 0)} defects on its test frame)")
        if capacity is not None:
            report.append("capacity: " + (f"skipped ({capacity.skipped})" if capacity.skipped else
                          f"{capacity.measured_fps:g} frames/s measured, the line needs {capacity.needed_fps:g} "
                          f"(margin {capacity.margin:g}{', SHORT: verdicts will be late' if capacity.short else ''})"))
        report.append(ring_line)
        with blame.on("bus.publish"):
            report.append(f"publish: {_check_bus(cfg)}")
        with blame.on("alarms.periodic.classes"):
            from inspectd.runtime.periodic import check_classes
            check_classes(cfg.alarms.periodic, class_names)
        with blame.on("control.curve"):
            report.append(f"control: {_check_control(cfg)}")
    except BaseException:
        for close in (source.stop if source is not None else None, backend.close if backend is not None else None):
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
        raise
    if capacity is not None:
        from inspectd.runtime.capacity import log_capacity
        log_capacity(capacity)
    return Preflight(backend=backend, source=source, frame_shape=shape, report=report,
                     self_tested=tested_shape == shape, capacity=capacity)


def _self_test(cfg: DaemonConfig, backend: Backend, source: Source | None, shape: tuple[int, ...] | None,
               tile: tuple[int, int], paced: bool | None) -> tuple[dict, tuple[int, ...], Capacity | None]:
    """The start-up self-test of ``inspectd.runtime.selftest`` (a known frame through the whole
    stage): at the source's frame size, or one tile's for a camera that keeps its own size; then,
    on the warm stage, the capacity check at the real frame size (None: left to the pipeline,
    which knows a camera's size once it is open)."""
    import structlog

    from inspectd.backends.base import backend_label
    from inspectd.runtime.capacity import check_capacity
    from inspectd.runtime.inference import InferenceStage
    from inspectd.runtime.selftest import run_self_test

    real = shape
    if shape is None:
        shape = tile if cfg.source.channels == 1 else (*tile, 3)
    stage = InferenceStage(backend, cfg.inference, cfg.merge, cfg.line)
    capacity = None
    try:
        found = run_self_test(stage, tuple(shape), f"model {cfg.inference.model or '(the shipped model)'} on "
                                                   f"{backend_label(backend)}")
        if real is not None:
            nominal = source.nominal_fps if source is not None else None
            # Its error names inference.capacity_check, which the caller's blame keeps.
            capacity = check_capacity(cfg, stage, real, paced=bool(nominal) if paced is None else paced,
                                      nominal_fps=nominal, log_now=False)   # logged when all checks passed
    finally:
        stage.close_model()                     # the model thread; the backend goes on to the pipeline
    structlog.get_logger("inspectd.preflight").info("self_test_passed", backend=backend.name, **found)
    return found, tuple(shape), capacity


def _check_source(cfg: DaemonConfig) -> tuple[Any, tuple[int, ...] | None, str]:
    src = cfg.source
    shape: tuple[int, ...] | None
    if src.kind in ("video", "folder"):
        from inspectd.runtime.sources import open_source
        source = open_source(src, cfg.camera, None)      # opens the file, decodes the first frame
        shape = tuple(int(s) for s in source.frame_shape)
        h, w = shape[:2]
        fps = f", {source.nominal_fps:g} fps" if source.nominal_fps else ""
        return source, shape, f"{src.kind} {src.path} ({w}x{h} {'BGR' if len(shape) == 3 else 'Mono8'}{fps})"
    from inspectd.runtime.sources.genicam import resolve_cti
    ctis = resolve_cti(list(src.genicam.cti))           # each must load and be a GenTL producer
    g = src.genicam
    shape = None
    if g.width is not None and g.height is not None:
        shape = (g.height, g.width) if src.channels == 1 else (g.height, g.width, 3)
    return None, shape, f"genicam camera via {', '.join(map(str, ctis))} (not opened)"


def _check_memory(cfg: DaemonConfig, shape: tuple[int, ...] | None, blame: _Blame) -> str:
    from inspectd.runtime.memory import check_fits, human
    from inspectd.runtime.ringbuffer import check_ring_memory

    with blame.on("ring.slots"):
        ring = check_ring_memory(cfg.ring.slots, shape if shape is not None else (0,))
    line = f"ring: {cfg.ring.slots} slots, policy {cfg.ring.policy.value}"
    if shape is None:
        return line + " (frame size: the camera's, checked when it opens)"
    if cfg.source.kind == "genicam":
        # The producer's buffers hold raw frames (up to 4 bytes a pixel for the colour formats).
        n = cfg.source.genicam.buffers
        raw = shape[0] * shape[1] * 4
        with blame.on("source.genicam.buffers"):
            check_fits(n * raw, f"{n} camera buffers x {raw} bytes", "source.genicam.buffers")
    return line + f", {human(ring)}"


def _check_control(cfg: DaemonConfig) -> str:
    curve = cfg.control.curve
    if cfg.control.address is not None and curve.enabled:
        from inspectd.bus.curve import CurveServer
        CurveServer.load(curve.server_secret_key, curve.allowed_clients_dir, "control.curve")
    return cfg.control.address or "no socket (control.address is null)"


def _check_bus(cfg: DaemonConfig) -> str:
    if cfg.bus.publish is not None:                    # its form; binding it is run's
        from inspectd.bus.address import parse_address
        parse_address(cfg.bus.publish, "bind", "bus.publish")
    curve = cfg.bus.curve
    if curve.enabled:
        from inspectd.bus.curve import CurveServer
        CurveServer.load(curve.server_secret_key, curve.allowed_clients_dir, "bus.curve")
    return cfg.bus.publish or "no socket (bus.publish is null)"
