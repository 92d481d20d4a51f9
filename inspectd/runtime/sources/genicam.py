"""A GenICam camera through a GenTL producer (.cti), with harvesters.

Opening finds the device (by serial, model or index), opens it and writes the configured
nodes, so every configuration error is reported before acquisition starts. Reading
fetches one buffer, copies its pixels into a staging array and queues the buffer back
to the producer at once: the camera never waits for inference. The staging copy is what
makes that possible when the ring buffer is told to ``block``.

Harvesters notes: keep one ``Harvester`` per process (DESIGN: one process per camera),
always ``destroy`` the acquirer and ``reset`` the harvester (``stop()`` does both).
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspectd.errors import InspectdError
from inspectd.runtime.frame import Frame
from inspectd.runtime.sources.base import FrameTimeout, PositionFn
from inspectd.runtime.sources.config import GenICamConfig
from inspectd.runtime.sources.pixel_formats import CONVERSIONS

if TYPE_CHECKING:
    from harvesters.core import Harvester, ImageAcquirer

ENV_CTI_PATH = "GENICAM_GENTL64_PATH"



# -- producers -------------------------------------------------------------------------
def discover_cti(environ: dict[str, str] | None = None) -> list[Path]:
    """The .cti files in the folders of GENICAM_GENTL64_PATH (the GenTL standard's variable)."""
    env = os.environ if environ is None else environ
    found: list[Path] = []
    for folder in filter(None, env.get(ENV_CTI_PATH, "").split(os.pathsep)):
        p = Path(folder)
        if p.is_file() and p.suffix == ".cti":
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.glob("*.cti")))
    return found


def resolve_cti(paths: list[str] | list[Path], where: str = "source.genicam.cti") -> list[Path]:
    """Check the given producers (or discover them); a one-line error for each problem."""
    files = [Path(p) for p in paths] if paths else discover_cti()
    if not files:
        raise InspectdError(
            f"{where}: no GenTL producer (.cti) given and {ENV_CTI_PATH} names none; "
            "set it to the camera vendor's .cti file"
        )
    for f in files:
        if not f.exists():
            raise InspectdError(f"GenTL producer {f}: not found ({where})")
        if not f.is_file():
            raise InspectdError(f"GenTL producer {f}: not a file ({where})")
        try:
            lib = ctypes.CDLL(str(f.resolve()))
        except OSError as exc:
            raise InspectdError(f"GenTL producer {f}: cannot be loaded: {exc}") from None
        if not hasattr(lib, "GCInitLib"):
            raise InspectdError(f"GenTL producer {f}: not a GenTL producer (no GCInitLib)")
    return files


class _OneLineRecord(logging.Filter):
    """harvesters logs GenTL errors with ``exc_info`` through its own stderr handler: a
    multi-line traceback straight into the journal. Its records go through inspectd's
    logging instead (``propagate``), as one line: the exception's name and message."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if str(exc) not in text:
                text = f"{text}: {type(exc).__name__}: {exc}"
        record.msg, record.args = " ".join(text.split()), None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def quiet_harvesters_logging() -> None:
    """Route harvesters' loggers through inspectd's logging, one line per record."""
    for name in ("harvesters", "harvesters.core"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
        if not any(isinstance(f, _OneLineRecord) for f in lg.filters):
            lg.addFilter(_OneLineRecord())


def open_harvester(cti: list[Path]) -> Harvester:
    """A Harvester with these producers loaded and its device list filled."""
    from harvesters.core import Harvester

    quiet_harvesters_logging()
    h = Harvester()
    try:
        for f in cti:
            h.add_file(str(f))
        h.update()
    except Exception:
        h.reset()
        raise
    return h


@dataclass
class DeviceRow:
    """One device as the producers describe it (no need to open it)."""

    index: int
    vendor: str
    model: str
    serial: str
    id: str
    tl_type: str

    def label(self) -> str:
        return f"{self.model} serial {self.serial} ({self.id})"


def _info(info: Any, name: str) -> str:
    try:
        value = getattr(info, name)
    except Exception:   # noqa: BLE001 - the producer may not give this field
        return ""
    return "" if value is None else str(value)


def list_devices(h: Harvester) -> list[DeviceRow]:
    return [
        DeviceRow(i, _info(d, "vendor"), _info(d, "model"), _info(d, "serial_number"),
                  _info(d, "id_"), _info(d, "tl_type"))
        for i, d in enumerate(h.device_info_list)
    ]


def select_device(rows: list[DeviceRow], cfg: GenICamConfig, camera: str, cti: list[Path]) -> DeviceRow:
    where = f"camera {camera!r} (source.genicam)"
    if not rows:
        names = ", ".join(str(f) for f in cti)
        raise InspectdError(f"{where}: no GenICam device found by {names}")
    found = "; ".join(r.label() for r in rows)
    if cfg.index is not None:
        if cfg.index >= len(rows):
            raise InspectdError(f"{where}: no device at index {cfg.index}; found {len(rows)}: {found}")
        return rows[cfg.index]
    matches = rows
    wanted = []
    if cfg.serial is not None:
        matches = [r for r in matches if r.serial == str(cfg.serial)]
        wanted.append(f"serial {cfg.serial!r}")
    if cfg.model is not None:
        matches = [r for r in matches if r.model == cfg.model]
        wanted.append(f"model {cfg.model!r}")
    if not matches:
        raise InspectdError(f"{where}: no device with {' and '.join(wanted)}; found: {found}")
    if len(matches) > 1:
        what = f"{len(matches)} devices with {' and '.join(wanted)}" if wanted else f"{len(matches)} devices"
        raise InspectdError(
            f"{where}: {what} ({'; '.join(r.label() for r in matches)}); "
            "choose one with source.genicam.serial"
        )
    return matches[0]


# -- nodes -----------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    """GenApi messages end in ': XxxException thrown in node ... (file ..., line ...)'."""
    text = re.sub(r"\s*:\s*\w+Exception thrown.*$", "", str(exc).strip(), flags=re.S)
    return " ".join(text.split()) or type(exc).__name__


def _allowed(node: Any) -> str:
    try:
        return f" (choices: {', '.join(node.symbolics)})"
    except Exception:   # noqa: BLE001 - not an enumeration
        pass
    try:
        return f" (range {node.min:g} to {node.max:g})"
    except Exception:   # noqa: BLE001 - no range
        return ""


def read_node(node_map: Any, name: str) -> Any:
    """The node's value, or None if the camera has no such (readable) node."""
    try:
        if not node_map.has_node(name):
            return None
        return node_map.get_node(name).value
    except Exception:   # noqa: BLE001 - unreadable now (access mode) counts as absent
        return None


def write_node(node_map: Any, name: str, value: Any, where: str, key: str) -> None:
    if not node_map.has_node(name):
        raise InspectdError(f"{where}: {key} is set but the camera has no {name} node; remove {key} from the config")
    node = node_map.get_node(name)
    try:
        node.value = value
    except Exception as exc:   # noqa: BLE001 - genapi raises its own exception family
        raise InspectdError(f"{where}: the camera rejects {name} = {value!r}: {_short(exc)}{_allowed(node)}") from None


def frame_id_delta(last: int, new: int) -> int | None:
    """Frames from ``last`` to ``new`` (1 = consecutive); None if the counter went back.

    GigE Vision 1.x block ids are 16 bits and skip 0 on wrapping (65535 -> 1); a jump
    from near the top to near the bottom of that range is taken as such a wrap.
    """
    if new > last:
        return new - last
    if last <= 0xFFFF and last >= 0xF000 and new < 0x1000:
        delta = (new - last) % 0x10000
        return delta - 1 if new >= 1 else delta
    return None


def frame_step(delta: int | None, incomplete: int) -> tuple[int, int, int]:
    """(step, lost, corrupt) from the last complete buffer to this one.

    ``delta`` is the frame-id difference (None: no frame id, or the counter went back) and
    ``incomplete`` the buffers the producer marked incomplete in between: harvesters' ``fetch``
    queues those back and fetches on, telling only through its ``INCOMPLETE_BUFFER`` event.
    They are frames of strip that were not delivered whole: ``corrupt``, never inspected. The
    frame ids they used (if the producer numbered them) lie in the gap; where it did not, the
    index moves past them anyway, so that strip positions stay right.
    """
    step = max(delta if delta is not None and delta >= 1 else 1, 1 + incomplete)
    return step, step - 1 - incomplete, incomplete


def _incomplete_counter() -> Any:
    """A harvesters callback that counts the incomplete buffers ``fetch`` discarded."""
    from harvesters.core import Callback

    class IncompleteCounter(Callback):
        count = 0

        def emit(self, context: object | None = None) -> None:
            self.count += 1

    return IncompleteCounter()


# -- the source ------------------------------------------------------------------------
class GenICamSource:
    """Frames of one GenICam camera. Construct to open and configure; ``stop`` releases it."""

    live = True

    def __init__(self, cfg: GenICamConfig, camera: str, channels: int = 1,
                 position: PositionFn | None = None, driver_wait_ms: int | None = None) -> None:
        self.cfg = cfg
        # harvesters' fetch() waits in C for at most this long per call, holding the GIL
        # (issue #508): 1 ms (harvesters' default) in a process with other threads; longer only
        # where nothing else runs (runtime.camera_process), which saves the polling.
        self._driver_wait_ms = driver_wait_ms
        self.camera = camera
        self.channels = channels
        self.position = position
        self.where = f"camera {camera!r} (source.genicam)"
        self.cti = resolve_cti(cfg.cti)
        self._h: Harvester | None = open_harvester(self.cti)
        self._ia: ImageAcquirer | None = None
        self._started = False
        self._stop_lock = threading.Lock()
        self._frames = self._timeouts = self._gaps = self._lost = self._resets = self._incomplete = 0
        self._incomplete_seen = 0
        self._incomplete_counter = _incomplete_counter()
        self._last_fid: int | None = None
        self._last_index = -1
        self._fid_available = self._ts_available = True
        self._device_label: str | None = None      # for stats, once the device is chosen
        try:
            self.device = select_device(list_devices(self._h), cfg, camera, self.cti)
            self._device_label = self.device.label()
            self._ia = self._open(self.device)
            self._configure()
        except BaseException:
            self.stop()
            raise

    def _open(self, row: DeviceRow) -> ImageAcquirer:
        assert self._h is not None
        from harvesters.core import ParameterKey, ParameterSet

        params: dict[Any, bool | int] = {ParameterKey.ENABLE_AUTO_CHUNK_DATA_UPDATE: False}   # no chunk data: 0.5 ms a frame
        if self._driver_wait_ms is not None:
            params[ParameterKey.TIMEOUT_PERIOD_ON_UPDATE_EVENT_DATA_CALL] = int(self._driver_wait_ms)
        try:
            ia = self._h.create(self._h.device_info_list[row.index], config=ParameterSet(params))
        except Exception as exc:   # noqa: BLE001 - GenTL exceptions
            reason = "in use by another program" if "ResourceInUse" in type(exc).__name__ else _short(exc)
            raise InspectdError(f"{self.where}: cannot open {row.label()}: {reason}") from None
        ia.num_buffers = max(self.cfg.buffers, ia.min_num_buffers)
        ia.add_callback(ia.Events.INCOMPLETE_BUFFER, self._incomplete_counter)
        return ia

    def _configure(self) -> None:
        assert self._ia is not None
        nm = self._ia.remote_device.node_map
        cfg, where = self.cfg, self.where
        # Order matters: the ranges of later nodes depend on the earlier ones
        # (size on format, frame-rate maximum on size and exposure).
        write_node(nm, "PixelFormat", cfg.pixel_format, where, "pixel_format")
        if cfg.width is not None:
            write_node(nm, "Width", cfg.width, where, "width")
        if cfg.height is not None:
            write_node(nm, "Height", cfg.height, where, "height")
        if cfg.exposure_us is not None:
            write_node(nm, "ExposureTime", float(cfg.exposure_us), where, "exposure_us")
        if cfg.frame_rate is not None:
            if nm.has_node("AcquisitionFrameRateEnable"):
                write_node(nm, "AcquisitionFrameRateEnable", True, where, "frame_rate")
            write_node(nm, "AcquisitionFrameRate", float(cfg.frame_rate), where, "frame_rate")
        if cfg.trigger_mode is not None:
            if nm.has_node("TriggerSelector"):
                write_node(nm, "TriggerSelector", "FrameStart", where, "trigger_mode")
            write_node(nm, "TriggerMode", "On" if cfg.trigger_mode else "Off", where, "trigger_mode")
            if cfg.trigger_source is not None:
                write_node(nm, "TriggerSource", cfg.trigger_source, where, "trigger_source")
        # Read back what the camera actually uses.
        self.pixel_format = str(read_node(nm, "PixelFormat"))
        if self.pixel_format not in CONVERSIONS:
            raise InspectdError(f"{where}: the camera delivers {self.pixel_format}, which inspectd cannot convert")
        width, height = read_node(nm, "Width"), read_node(nm, "Height")
        if not width or not height:
            raise InspectdError(f"{where}: the camera does not report Width and Height")
        self.frame_shape: tuple[int, ...] = (int(height), int(width)) if self.channels == 1 else (int(height), int(width), 3)
        triggered = str(read_node(nm, "TriggerMode")) == "On"
        rate = read_node(nm, "AcquisitionFrameRate")
        self.nominal_fps: float | None = None if triggered or rate is None else float(rate)
        self._bpp, to_gray, to_bgr = CONVERSIONS[self.pixel_format]
        self._conversion = to_gray if self.channels == 1 else to_bgr
        self._staging = np.empty(self.frame_shape, np.uint8)

    def settings(self) -> dict[str, Any]:
        """The camera's current values of the nodes inspectd sets (for logs and status)."""
        assert self._ia is not None
        nm = self._ia.remote_device.node_map
        names = ("PixelFormat", "Width", "Height", "AcquisitionFrameRate", "ExposureTime", "TriggerMode")
        return {n: read_node(nm, n) for n in names if nm.has_node(n)}

    def node_max(self, name: str) -> float:
        """The largest value the camera allows for numeric node ``name`` (``AcquisitionFrameRate``
        at the configured size, say: what bench's camera mode paces at)."""
        assert self._ia is not None
        nm = self._ia.remote_device.node_map
        if not nm.has_node(name):
            raise InspectdError(f"{self.where}: the camera has no {name} node")
        return float(nm.get_node(name).max)

    def execute(self, name: str) -> None:
        """Execute the command node ``name`` (``AcquisitionStop``, ``TriggerSoftware``, ...)."""
        assert self._ia is not None
        nm = self._ia.remote_device.node_map
        if not nm.has_node(name):
            raise InspectdError(f"{self.where}: the camera has no {name} node")
        try:
            nm.get_node(name).execute()
        except Exception as exc:   # noqa: BLE001 - genapi raises its own exception family
            raise InspectdError(f"{self.where}: the camera refuses {name}: {_short(exc)}") from None

    # -- acquisition ---------------------------------------------------------------
    def start(self) -> None:
        assert self._ia is not None, "start() after stop()"
        try:
            self._ia.start()
        except Exception as exc:   # noqa: BLE001
            raise InspectdError(f"{self.where}: cannot start acquisition on {self.device.label()}: {_short(exc)}") from None
        self._started = True

    def read(self) -> Frame:
        with self.grab() as g:
            g.copy_into(self._staging)
        return g.frame(self._staging)

    def grab(self) -> Grab:
        """Fetch the next buffer and hold it (``read`` without the copy): the caller copies
        the pixels where it wants them (``copy_into``, one copy into a shared-memory slot)
        and releases it soon (``with``), or the producer runs out of buffers.
        Raises ``FrameTimeout`` when no frame came within ``fetch_timeout_s``."""
        from genicam.gentl import TimeoutException

        assert self._ia is not None and self._started, "grab() before start()"
        try:
            buffer = self._ia.fetch(timeout=self.cfg.fetch_timeout_s)
        except TimeoutException:
            self._timeouts += 1
            raise FrameTimeout(f"{self.where}: no frame within {self.cfg.fetch_timeout_s:g} s") from None
        except Exception as exc:   # noqa: BLE001 - device gone, producer error: fatal
            raise InspectdError(f"{self.where}: acquisition failed on {self.device.label()}: {_short(exc)}") from None
        try:
            now_ns, wall_ns = time.monotonic_ns(), time.time_ns()
            fid = self._frame_id(buffer)
            ts = self._timestamp_ns(buffer)
            components = buffer.payload.components
            if not components:
                raise InspectdError(f"{self.where}: a buffer without image data (payload {buffer.payload_type})")
        except BaseException:
            buffer.queue()
            raise
        index, corrupt = self._advance(fid)
        self._frames += 1
        return Grab(self, buffer, components[0], index, now_ns, wall_ns, fid, ts, corrupt)

    def _copy_out(self, comp: Any, dst: np.ndarray) -> None:
        h, w = int(comp.height), int(comp.width)
        if (h, w) != self.frame_shape[:2]:
            raise InspectdError(
                f"{self.where}: the camera delivered a {h} x {w} frame, configured {self.frame_shape[0]} x {self.frame_shape[1]}"
            )
        data = comp.data
        row = data.size // h                           # bytes per row, padding included
        pixels = data[: h * row].reshape(h, row)[:, : w * self._bpp]
        if self._bpp > 1:
            pixels = pixels.reshape(h, w, self._bpp)
        if self._conversion is None:
            np.copyto(dst, pixels)
        else:
            cv2.cvtColor(pixels, self._conversion, dst=dst)

    def _frame_id(self, buffer: Any) -> int | None:
        if not self._fid_available:
            return None
        try:
            return int(buffer.module.frame_id)
        except Exception:   # noqa: BLE001 - the producer does not give one
            self._fid_available = False
            return None

    def _timestamp_ns(self, buffer: Any) -> int | None:
        if not self._ts_available:
            return None
        module = buffer.module
        try:
            return int(module.timestamp_ns)
        except Exception:   # noqa: BLE001
            pass
        try:
            ticks = int(module.timestamp)
            freq = int(module.parent.parent.timestamp_frequency)
            if ticks and freq:
                return ticks * 1_000_000_000 // freq
        except Exception:   # noqa: BLE001
            pass
        self._ts_available = False   # do not pay for the exceptions on every frame
        return None

    def _advance(self, fid: int | None) -> tuple[int, int]:
        """The frame's index (it follows the camera's frame id, so lost frames leave gaps) and
        how many frames just before it were incomplete buffers (``frame_step``)."""
        seen = self._incomplete_counter.count
        incomplete, self._incomplete_seen = seen - self._incomplete_seen, seen
        delta = None
        if fid is not None and self._last_fid is not None:
            delta = frame_id_delta(self._last_fid, fid)
            if delta is None or delta < 1:
                self._resets += 1     # the counter restarted: we cannot tell what was lost
                delta = None
        step, lost, corrupt = frame_step(delta, incomplete)
        if lost:
            self._gaps += 1
            self._lost += lost
        self._incomplete += corrupt
        if fid is not None:
            self._last_fid = fid
        self._last_index += step
        return self._last_index, corrupt

    def stop(self) -> None:
        """Stop acquisition and release the camera and the producers; idempotent.

        Call it from the thread that reads (the acquisition thread does), or when no
        thread ever started: releasing the camera under a running ``fetch`` is unsafe.
        """
        with self._stop_lock:
            ia, self._ia = self._ia, None
            h, self._h = self._h, None
        try:
            if ia is not None:
                try:
                    if self._started:
                        ia.stop()
                finally:
                    ia.destroy()
        finally:
            self._started = False
            if h is not None:
                h.reset()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "genicam", "device": self._device_label,
            "frames": self._frames, "timeouts": self._timeouts, "frame_id_gaps": self._gaps,
            "frames_lost": self._lost, "frame_id_resets": self._resets, "frames_incomplete": self._incomplete,
        }


class Grab:
    """A fetched camera buffer, held until ``release`` (or the end of a ``with`` block)."""

    def __init__(self, source: GenICamSource, buffer: Any, component: Any, index: int,
                 capture_ns: int, capture_wall_ns: int, frame_id: int | None, timestamp_ns: int | None,
                 corrupt_before: int = 0):
        self.source, self._buffer, self._component = source, buffer, component
        self.index, self.capture_ns, self.capture_wall_ns = index, capture_ns, capture_wall_ns
        self.camera_frame_id, self.camera_timestamp_ns = frame_id, timestamp_ns
        # The last frames of the gap before this one that came as incomplete buffers.
        self.corrupt_before = corrupt_before

    def copy_into(self, dst: np.ndarray) -> None:
        """The pixels, converted to the source's frame format, into ``dst`` (``frame_shape``)."""
        assert self._buffer is not None, "copy_into() after release()"
        self.source._copy_out(self._component, dst)

    def frame(self, image: np.ndarray) -> Frame:
        src = self.source
        return Frame(
            index=self.index, image=image, camera=src.camera, capture_ns=self.capture_ns,
            capture_wall_ns=self.capture_wall_ns, camera_frame_id=self.camera_frame_id,
            camera_timestamp_ns=self.camera_timestamp_ns,
            strip_position_m=src.position(self.index) if src.position else None,
        )

    def release(self) -> None:
        """Queue the buffer back to the producer; idempotent."""
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.queue()

    def __enter__(self) -> Grab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
