"""A GenICam camera acquired in its own process, writing into a shared-memory ring buffer.

Why a process. genicam's SWIG modules (``_gentl.so``, ``_genapi.so``) never release the GIL,
and harvesters' ``fetch()`` loops on ``update_event_data(1 ms)``, which waits in C for the next
buffer while holding it (harvesters issue #508). A thread that fetches therefore parks the
whole interpreter: every time the inference thread's model returns from a GIL-free call it
waits up to a switch interval (5 ms) for the GIL, hundreds of times per frame. Measured with
``pipelines/genicam_gil_probe.py`` (BENCHMARKS.md, "A live camera"): a one-thread torch model
kept 3-44 % of its speed beside a fetching thread (viky at 20 or 190 frames/s, three runs on a
shared machine) while the process used 0.07-0.65 cores; longer driver waits made it worse (down
to 0.3 %), zero waits spun a core in Python and left 2-36 %, a 0.2 ms switch interval 15-39 %.
Fetching in another process left it 45-89 %, the rest being the CPU that process took (viky
renders each picture where it is fetched). In ``inspectd bench --camera-fps`` the torch pipeline
inspected 2-3x (camera at 190 frames/s) and 6-9x (20 frames/s) more frames per second with
this process than with the thread. So the camera gets
a process: tuning harvesters in-process cannot fix a wait that holds the GIL.

Design (one copy, the same ring, the same books):

- The child (``_child_main``: a fresh interpreter, ``python -m inspectd.runtime.camera_process``;
  not ``fork``, which would copy the parent's model and ZeroMQ threads half-way, nor
  multiprocessing's spawn, which re-imports the parent's main script) opens and configures the camera with
  ``GenICamSource``; an error there comes back as the same one-line ``InspectdError`` with
  its exit status. It then fetches buffers and copies each camera buffer's pixels straight
  into a buffer of the shared memory that it owns (the one copy), queues the camera buffer
  back and hands the frame over; it goes on with its next buffer at once.
- The parent's ``RingBuffer`` keeps its slots in that shared memory (plus the child's
  ``_HANDOVER_BUFFERS``) and does all the bookkeeping: ``CameraAcquisition`` (a thread, the
  child's counterpart) takes each frame in with ``ring.swap_in`` -- the overflow policy,
  exactly as ``put``: drop_oldest, drop_newest, block -- and gives the child a buffer back:
  a free or evicted slot, or the frame's own buffer if the frame was dropped. Only a child
  left without buffers waits (``block``, or a parent far behind): the camera's own buffers
  then fill and it skips frames, as before. Counters, accounting identity and ``on_drop``
  reports are the ring's own.
  Frame indices, camera frame-id gaps (``camera_lost``) are tracked in the parent, so they
  run on across restarts of the child.
- The child dies with the parent: ``PR_SET_PDEATHSIG`` (SIGTERM) where the parent's main
  thread started it, a parent-pid check after every fetch, and EOF on its pipe. It ignores
  SIGINT (a terminal's Ctrl-C is the parent's to handle) and stops cleanly on SIGTERM,
  releasing the camera (systemd signals the whole control group: the parent then stops
  anyway; a child signalled alone counts as a lost camera).
- Silence: while no frame comes (AcquisitionStop from elsewhere, a pulled cable, a stalled
  stream, a child that died), the strip that passes is reported as it passes: frames
  of ``line.frame_length`` at the configured line speed, reason ``camera_silent``, from the
  last frame on; the status says so. After ``source.genicam.reconnect_after_s`` the child is
  replaced (a fresh process, a fresh Harvester: no harvesters #202 reset trap), up to
  ``reconnect_attempts`` times in a row; then the acquisition fails (exit status 1, systemd
  restarts the service). A stream that ends with an exception is handled the same way, and
  its stretch after the last frame is reported too.

File and folder sources stay in-process (``AcquisitionThread``): decoding releases the GIL.
"""
from __future__ import annotations

import atexit
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import structlog

from inspectd.domain.frames import FrameMeta
from inspectd.errors import InspectdError
from inspectd.runtime.acquisition_counters import AcquisitionCounters
from inspectd.runtime.frame import Frame
from inspectd.runtime.ringbuffer import RingBuffer, RingConfig, check_ring_memory
from inspectd.runtime.sources.base import AcquiredSource, PositionFn, Source
from inspectd.runtime.sources.config import GenICamConfig
from inspectd.stop_signals import StopFlag, StopSignals

if TYPE_CHECKING:
    from inspectd.runtime.acquisition import AcquisitionThread

log = structlog.get_logger("inspectd.camera")

EXIT_FAILURE, EXIT_CONFIG = 1, 78      # exit statuses (inspectd.errors): run-time failure, configuration

# Longest wait for the child to open the camera (spawn, imports, producer, configuration).
_OPEN_TIMEOUT_S = 60.0
# After "stop", how long the child may take to release the camera before it is killed.
_STOP_TIMEOUT_S = 5.0
# How often the parent's thread looks at stop and silence while no message comes.
_POLL_S = 0.05
# Buffers the acquisition process owns besides the ring's slots: it fills one, hands it over and
# goes on with the next while the parent's thread (which needs the GIL) takes the frame in.
_HANDOVER_BUFFERS = 4
# Before the very first frame, silence counts only after this much more.
_FIRST_FRAME_GRACE_NS = 2_000_000_000
# A child stopped by SIGTERM: how long to wait for the parent's own stop (systemd signals both).
_SIGNAL_GRACE_S = 1.0


# -- the child ------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """SIGTERM when the thread that started us ends (Linux); best effort elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)        # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_main(fd: int) -> None:
    """``python -m inspectd.runtime.camera_process FD``: the acquisition process, talking over
    the socket ``FD``. (Not ``multiprocessing``'s spawn, which re-imports the parent's main
    script: any program embedding a Pipeline would need a ``__main__`` guard.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with StopSignals(signals=(signal.SIGTERM,)) as stop:
        _child_serve(Connection(fd), stop)


def _child_serve(conn: Connection, stop: StopFlag) -> None:
    try:
        _, cfg, camera, channels, log_format, log_level, parent_pid, pdeathsig = conn.recv()
    except (EOFError, OSError):
        return
    if pdeathsig:
        _die_with_parent()
    if os.getppid() != parent_pid:
        return
    from inspectd.logging_setup import LogConfig, configure_logging
    configure_logging(LogConfig(format=log_format, level=log_level, verdicts="none"),
                      fields={"camera": camera, "process": "acquisition"})

    from inspectd.runtime.sources.genicam import GenICamSource

    try:
        # Nothing else runs here: fetch() may wait in the driver for long (no 1 ms polling).
        src = GenICamSource(cfg, camera, channels, driver_wait_ms=max(1, min(100, int(cfg.fetch_timeout_s * 500))))
    except InspectdError as exc:
        conn.send(("error", str(exc), exc.exit_code))
        return
    except Exception as exc:   # noqa: BLE001 - one line for the user, whatever the producer raised
        conn.send(("error", f"camera {camera!r}: cannot open the camera: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())}", EXIT_FAILURE))
        return
    shm: mmap.mmap | None = None
    store: np.ndarray | None = None
    try:
        conn.send(("opened", {"frame_shape": list(src.frame_shape), "nominal_fps": src.nominal_fps,
                              "device": src.device.label(), "pixel_format": src.pixel_format,
                              "settings": {k: (v if isinstance(v, (int, float, bool)) or v is None else str(v))
                                           for k, v in src.settings().items()}}))
        while not conn.poll(0.2):
            if stop.is_set() or os.getppid() != parent_pid:
                conn.send(("stopped", "signal"))
                return
        msg = conn.recv()
        if msg[0] != "start":
            conn.send(("stopped", "stop"))
            return
        _, shm_name, shape, buffers = msg
        # The segment by its file, not SharedMemory(name=...): that would register it with a
        # resource tracker of this process, which unlinks it when this process ends.
        shm = _map_shared(shm_name, int(np.prod(shape)))
        store = np.ndarray(tuple(shape), np.uint8, buffer=shm)
        _acquire(conn, src, store, stop, parent_pid, list(buffers))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass                                        # the parent is gone: release the camera, exit
    except InspectdError as exc:
        _send(conn, ("failed", str(exc)))
    except Exception as exc:   # noqa: BLE001 - reported as one line, never a traceback on stderr
        _send(conn, ("failed", f"camera {camera!r}: acquisition failed: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())}"))
    finally:
        try:
            src.stop()
        except Exception as exc:   # noqa: BLE001
            log.warning("camera_release_failed", error=" ".join(str(exc).split()))
        store = None
        if shm is not None:
            try:
                shm.close()
            except BufferError:
                pass


def _map_shared(name: str, size: int) -> mmap.mmap:
    fd = os.open(f"/dev/shm/{name.lstrip('/')}", os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _send(conn: Connection, msg: tuple) -> None:
    try:
        conn.send(msg)
    except (OSError, ValueError):
        pass


def _command(conn: Connection, src: Any, msg: tuple) -> bool:
    """A command from the parent; False if it says stop."""
    if msg[0] == "stop":
        conn.send(("stopped", "stop"))
        return False
    if msg[0] == "execute":
        try:
            src.execute(msg[1])
            log.info("camera_command", node=msg[1])
        except InspectdError as exc:
            log.warning("camera_command_failed", node=msg[1], error=str(exc))
    return True


def _acquire(conn: Connection, src: Any, store: np.ndarray, stop: StopFlag, parent_pid: int,
             free: list[int]) -> None:
    """Fetch, copy into a buffer we own, hand it over; the parent answers each with a buffer
    back (an int). Only with none left do we wait for the parent (policy ``block``, or a
    parent that is behind): the camera's own buffers then fill and it skips frames."""
    from inspectd.runtime.sources.base import FrameTimeout

    src.start()
    conn.send(("started",))
    while True:
        if stop.is_set() or os.getppid() != parent_pid:
            conn.send(("stopped", "signal"))
            return
        while conn.poll(0 if free else 0.2):
            msg = conn.recv()
            if isinstance(msg, int):
                free.append(msg)
            elif not _command(conn, src, msg):
                return
        if not free:
            continue
        try:
            grab = src.grab()
        except FrameTimeout:
            conn.send(("timeout",))
            continue
        buffer = free.pop()
        try:
            with grab:     # the camera buffer goes back to the producer on leaving, whatever happens
                grab.copy_into(store[buffer])
        except BaseException:
            free.append(buffer)
            raise
        conn.send(("frame", buffer, grab.index, grab.camera_frame_id, grab.camera_timestamp_ns,
                   grab.capture_ns, grab.capture_wall_ns, grab.corrupt_before))


def _child_env() -> dict[str, str]:
    """This environment, with the folder this inspectd is imported from first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


# -- the parent: the camera handle ----------------------------------------------------------
@dataclass
class _Child:
    proc: subprocess.Popen
    conn: Connection


_CHILDREN: set[subprocess.Popen] = set()


@atexit.register
def _end_children() -> None:
    """No acquisition process outlives an interpreter that exits normally."""
    for proc in list(_CHILDREN):
        if proc.poll() is None:
            proc.terminate()
    for proc in list(_CHILDREN):
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()


class CameraProcess:
    """A GenICam camera opened in a child process (the ``Source`` attributes, no ``read``).

    Construct to spawn the child and open the camera: a configuration error is raised here,
    one line, before any thread starts. ``ring()`` then makes the shared-memory ring buffer
    and ``acquisition()`` the thread that feeds it. ``stop()`` ends the child and frees the
    shared memory; idempotent.
    """

    live = True

    def __init__(self, cfg: GenICamConfig, camera: str, channels: int = 1,
                 position: PositionFn | None = None, log_format: str = "auto", log_level: str = "info") -> None:
        from inspectd.logging_setup import resolve_format
        from inspectd.runtime.sources.genicam import resolve_cti

        self.cfg = cfg
        self.camera = camera
        self.channels = channels
        self.position = position
        self.where = f"camera {camera!r} (source.genicam)"
        resolve_cti(cfg.cti)       # the producers are checked here, with the in-process messages
        self._log = (resolve_format(log_format), log_level)   # type: ignore[arg-type]
        self._shm: SharedMemory | None = None
        self._unlinked = False
        self.producer_buffers: set[int] = set()
        self._commands: list[str] = []
        self._lock = threading.Lock()
        self.child: _Child | None = None
        self.spawns = 0
        info = self.spawn()
        self.frame_shape: tuple[int, ...] = tuple(info["frame_shape"])
        self.nominal_fps: float | None = info["nominal_fps"]
        self.device: str = info["device"]
        self.pixel_format: str = info["pixel_format"]
        self.settings: dict[str, Any] = info["settings"]

    # -- the child's life -----------------------------------------------------------
    def spawn(self) -> dict[str, Any]:
        """Start a child and let it open the camera; its description, or InspectdError."""
        self.kill()
        a, b = socket.socketpair()
        # PR_SET_PDEATHSIG fires when the *thread* that started the child ends: only the main one.
        pdeathsig = threading.current_thread() is threading.main_thread()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "inspectd.runtime.camera_process", str(b.fileno())],
                                    pass_fds=(b.fileno(),), stdin=subprocess.DEVNULL, env=_child_env(),
                                    stdout=subprocess.DEVNULL)   # stdout may be `--out -`: logs go to stderr
        except OSError as exc:
            a.close()
            raise InspectdError(f"{self.where}: cannot start the acquisition process: {exc}", EXIT_FAILURE) from None
        finally:
            b.close()
        _CHILDREN.add(proc)
        ours = Connection(a.detach())
        self.spawns += 1
        child = _Child(proc, ours)
        deadline = time.monotonic() + _OPEN_TIMEOUT_S
        try:
            ours.send(("open", self.cfg, self.camera, self.channels, *self._log, os.getpid(), pdeathsig))
            while not ours.poll(0.1):
                if proc.poll() is not None:
                    raise InspectdError(f"{self.where}: the acquisition process ended while opening the camera "
                                        f"(exit status {proc.returncode})", EXIT_FAILURE)
                if time.monotonic() > deadline:
                    raise InspectdError(f"{self.where}: the camera did not open within {_OPEN_TIMEOUT_S:g} s",
                                        EXIT_FAILURE)
            msg = ours.recv()
        except (EOFError, OSError):
            self._end(child, 0.0)
            raise InspectdError(f"{self.where}: the acquisition process ended while opening the camera "
                                f"(exit status {proc.returncode})", EXIT_FAILURE) from None
        except BaseException:
            self._end(child, 0.0)
            raise
        if msg[0] == "error":
            self._end(child, _STOP_TIMEOUT_S)
            raise InspectdError(msg[1], msg[2])
        with self._lock:
            self.child = child
        return msg[1]

    def execute(self, node: str) -> None:
        """Have the child execute a command node on the camera (``AcquisitionStop``: what
        another program holding the camera can do); sent between frames by the acquisition thread."""
        with self._lock:
            self._commands.append(node)

    def take_commands(self) -> list[str]:
        with self._lock:
            out, self._commands = self._commands, []
        return out

    def send_start(self) -> None:
        """Start the child's acquisition with the buffers the producer side owns now."""
        assert self.child is not None and self._shm is not None
        self.child.conn.send(("start", self._shm.name, list(self._store_shape), sorted(self.producer_buffers)))

    def kill(self, timeout_s: float = _STOP_TIMEOUT_S) -> int | None:
        """Ask the child to stop (it releases the camera), wait, kill it if it does not; its exit status."""
        with self._lock:
            child, self.child = self.child, None
        return None if child is None else self._end(child, timeout_s)

    @staticmethod
    def _end(child: _Child, timeout_s: float) -> int | None:
        try:
            child.conn.send(("stop",))
        except (OSError, ValueError):
            pass
        proc = child.proc
        for end in (None, proc.terminate, proc.kill):   # SIGTERM: it releases the camera if it can
            if end is not None:
                end()
            try:
                proc.wait(timeout_s if end is None else 1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        child.conn.close()
        _CHILDREN.discard(proc)
        return proc.returncode

    @property
    def pid(self) -> int | None:
        child = self.child
        return None if child is None else child.proc.pid

    # -- the ring and the thread --------------------------------------------------------
    def ring(self, cfg: RingConfig, on_drop: Callable[[FrameMeta], None] | None = None) -> RingBuffer:
        """The ring buffer whose slots are shared with the child."""
        # The ring's slots, and the buffers the child fills before handing them over.
        shape = (cfg.slots + _HANDOVER_BUFFERS, *self.frame_shape)
        size = int(np.prod(shape))
        if self._shm is not None:
            raise RuntimeError("ring() called twice")
        # Shared memory is RAM: the same check as an in-process ring (exit 78, naming ring.slots).
        check_ring_memory(shape[0], self.frame_shape, where=self.where)
        try:
            st = os.statvfs("/dev/shm")
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        if free is not None and size > free:
            # Checked before the pages are touched: a full /dev/shm kills with SIGBUS, not an error.
            raise InspectdError(
                f"ring.slots: {cfg.slots} slots of {' x '.join(map(str, self.frame_shape))} bytes need "
                f"{size / 2**20:.0f} MiB of shared memory, /dev/shm has {free / 2**20:.0f} MiB free", EXIT_CONFIG)
        self._shm = SharedMemory(create=True, size=size)
        self._store_shape = shape
        self.producer_buffers = set(range(cfg.slots, shape[0]))
        store = np.ndarray(shape, np.uint8, buffer=self._shm.buf)
        store.fill(0)      # touch every page now
        return RingBuffer.from_config(cfg, on_drop, store=store)

    def start(self) -> None:
        """Nothing: the acquisition thread starts the child's acquisition (``Source`` protocol)."""

    def stop(self) -> None:
        """End the child (releasing the camera) and free the shared memory's name; idempotent.
        The mapping itself stays until the process ends: frames in the ring may still be views of it."""
        self.kill()
        self.unlink()

    def unlink(self) -> None:
        shm = self._shm
        if shm is not None and not self._unlinked:
            self._unlinked = True
            try:
                shm.unlink()
            except FileNotFoundError:
                pass

    def stats(self) -> dict[str, Any]:
        return {"kind": "genicam", "device": self.device, "process": self.pid, "spawns": self.spawns}


# -- the parent: the thread that feeds the ring ---------------------------------------------
class CameraAcquisition(threading.Thread):
    """The child's counterpart, in the role of ``AcquisitionThread``: frames into ``ring``.

    ``on_lost`` gets the frames the camera skipped (frame-id gaps), ``on_corrupt`` those it
    delivered as incomplete buffers (the producer's own status), ``on_silent`` the strip
    that passed while the camera delivered nothing, as frames of ``frame_period_s`` (one
    frame length at the line speed; see the module text). ``error`` holds the one-line
    ``InspectdError`` that ended acquisition, if any.
    """

    def __init__(self, source: CameraProcess, ring: RingBuffer, stop_event: threading.Event,
                 frame_period_s: float, on_lost: Callable[[FrameMeta], None] | None = None,
                 on_silent: Callable[[FrameMeta], None] | None = None, name: str | None = None,
                 on_frame: Callable[[Frame], None] | None = None,
                 on_corrupt: Callable[[FrameMeta], None] | None = None) -> None:
        super().__init__(name=name or f"acquisition-{source.camera}", daemon=True)
        self.source = source
        self.ring = ring
        self.stop_event = stop_event
        self.on_lost = on_lost
        self.on_silent = on_silent
        self.on_frame = on_frame
        self.on_corrupt = on_corrupt
        self.error: InspectdError | None = None
        self.started_event = threading.Event()
        self.ended = False           # a camera never ends by itself
        cfg = source.cfg
        fps = source.nominal_fps
        if cfg.silent_after_s is not None:
            self.silent_after_ns: int | None = int(cfg.silent_after_s * 1e9)
        elif fps:
            self.silent_after_ns = int(max(0.5, 10.0 / fps) * 1e9)
        else:
            self.silent_after_ns = None       # triggered: silent whenever the line stands
        self.period_ns = max(1, int(frame_period_s * 1e9))
        self._counts = AcquisitionCounters()
        self._lock = threading.Lock()          # the silence and reconnection state below (taken before _counts')
        self._silent_frames = self._reconnects = self._failures = 0
        self._last_seen_ns = 0                # last frame, or (re)start of acquisition
        self._covered_ns = 0                  # capture time of the last frame or silent frame
        self._last_index = -1                 # the last index handed out (frame, lost or silent)
        self._base = 0                        # child index -> our index
        self._last_fid: int | None = None
        self._silent_since_ns: int | None = None
        self._attempts = 0
        self._attempt_ns = 0
        self._child_down: str | None = None   # why the child is gone, while it is

    # -- the thread -------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except InspectdError as exc:
            self.error = exc
        except Exception as exc:   # noqa: BLE001 - reported, not swallowed
            log.error("acquisition_failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            self.error = InspectdError(f"camera {self.source.camera!r}: acquisition failed: "
                                       f"{type(exc).__name__}: {exc}", EXIT_FAILURE)
        finally:
            try:
                if self._silent_since_ns is None and (self.error is not None or self._child_down is not None):
                    self._silent_since_ns = self._last_seen_ns      # the stretch after the last frame
                self._cover_silence(time.monotonic_ns(), final=True)
            except Exception:   # noqa: BLE001 - the reports must not hide the error
                pass
            self.source.kill()
            self.source.unlink()      # the parent's mapping stays until the process ends
            self.ring.close()
            self.started_event.set()

    def _run(self) -> None:
        src = self.source
        if src.child is None:
            src.spawn()
        src.send_start()
        now = time.monotonic_ns()
        self._last_seen_ns = self._covered_ns = self._attempt_ns = now
        self.started_event.set()
        while not self.stop_event.is_set():
            child = src.child
            if child is not None:
                try:
                    for node in src.take_commands():
                        child.conn.send(("execute", node))
                    if child.conn.poll(_POLL_S):
                        self._handle(child, child.conn.recv())
                except (EOFError, OSError):
                    self._down(child, f"the acquisition process ended (exit status {self._exit_status(child)})")
            else:
                self.stop_event.wait(_POLL_S)
            self._watch(time.monotonic_ns())

    @staticmethod
    def _exit_status(child: _Child) -> Any:
        try:
            return child.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return None

    def _handle(self, child: _Child, msg: tuple) -> None:
        kind = msg[0]
        if kind == "frame":
            self._frame(child, *msg[1:])
        elif kind == "timeout":
            self._counts.timeout()
        elif kind == "failed":
            # One structured line (harvesters' own traceback is kept off stderr, see genicam.py).
            log.error("camera_failed", error=msg[1], device=self.source.device)
            self._down(child, msg[1])
        elif kind == "stopped":
            if msg[1] == "signal" and self.stop_event.wait(_SIGNAL_GRACE_S):
                return      # systemd stops the whole service: so do we
            self._down(child, "the acquisition process was stopped by a signal" if msg[1] == "signal"
                       else "the acquisition process stopped")
        elif kind == "started":
            # The camera streams from now: silence counts from here (starting takes its time).
            now = time.monotonic_ns()
            self._last_seen_ns = max(self._last_seen_ns, now)
            if self._silent_since_ns is None:
                self._covered_ns = max(self._covered_ns, now)

    def _frame(self, child: _Child, buffer: int, cindex: int, fid: int | None, ts: int | None,
               capture_ns: int, wall_ns: int, corrupt: int = 0) -> None:
        index = cindex + self._base
        if index <= self._last_index:
            # A restarted child counts from 0, and silent frames may already cover this one.
            self._base += self._last_index + 1 - index
            index = self._last_index + 1
        elif index > self._last_index + 1 and (self._last_index >= 0 or corrupt):
            self._report_lost(index, capture_ns, wall_ns, fid, corrupt)
        self._last_index = index
        src = self.source
        frame = Frame(index=index, image=_placeholder(src.frame_shape), camera=src.camera,
                      capture_ns=capture_ns, capture_wall_ns=wall_ns, camera_frame_id=fid,
                      camera_timestamp_ns=ts,
                      strip_position_m=src.position(index) if src.position else None)
        if self.on_frame is not None:
            self.on_frame(frame)
        back = self.ring.swap_in(frame, buffer, cancel=self.stop_event)
        src.producer_buffers.discard(buffer)
        src.producer_buffers.add(back)
        try:
            child.conn.send(back)
        except OSError:
            self._down(child, "the acquisition process ended (it took no buffer back)")
        now = time.monotonic_ns()
        with self._lock:              # a status report sees the frame and the end of a silence together
            self._counts.frame(capture_ns, back != buffer)
            self._last_seen_ns = now
            self._covered_ns = max(self._covered_ns, capture_ns)
            self._last_fid = fid
            if self._silent_since_ns is not None:
                log.warning("camera_back", silent_s=round((now - self._silent_since_ns) / 1e9, 3),
                            silent_frames=self._silent_frames, reconnects=self._reconnects)
                self._silent_since_ns = None
            self._attempts = 0

    def _report_lost(self, index: int, capture_ns: int, wall_ns: int, fid: int | None, corrupt: int = 0) -> None:
        """The frames between the last one and ``index``: lost by the camera, except the last
        ``corrupt`` of them, which came as incomplete buffers (reason ``corrupt``)."""
        prev = self._last_index
        missing = index - prev - 1
        corrupt = min(corrupt, missing)
        self._counts.lost(missing - corrupt)
        self._counts.corrupt(corrupt)
        last_ns = self._counts.last_frame_ns or capture_ns
        if corrupt:
            log.warning("frames_corrupt", camera=self.source.camera, first=index - corrupt, count=corrupt,
                        detail="incomplete buffers (the producer's status)",
                        note="published as uninspected (corrupt), not inspected")
        h, w = self.source.frame_shape[:2]
        for k in range(1, missing + 1):
            report = self.on_corrupt if k > missing - corrupt else self.on_lost
            if report is None:
                continue
            frac = k / (missing + 1)
            i = prev + k
            t = last_ns + int((capture_ns - last_ns) * frac)
            report(FrameMeta(index=i, camera=self.source.camera, capture_ns=t,
                             capture_wall_ns=wall_ns - (capture_ns - t), height=h, width=w,
                             camera_frame_id=None if fid is None else fid - (missing + 1 - k),
                             strip_position_m=self.source.position(i) if self.source.position else None))

    # -- silence and reconnection --------------------------------------------------------
    def _down(self, child: _Child, why: str) -> None:
        """The child is gone (or must go): note why; the watch decides what happens next."""
        if self._child_down is None:
            log.warning("camera_down", reason=why, device=self.source.device)
        self._child_down = why
        with self._lock:
            self._failures += 1
        if self.source.child is child:
            self.source.kill(timeout_s=1.0)

    def _watch(self, now: int) -> None:
        down = self._child_down is not None
        after = self.silent_after_ns
        if after is not None and self._counts.last_frame_ns is None:
            after += _FIRST_FRAME_GRACE_NS     # a camera takes its time to send the very first frame
        if not down and (after is None or now - self._last_seen_ns < after):
            return
        with self._lock:
            if self._silent_since_ns is None:
                self._silent_since_ns = self._last_seen_ns
                log.warning("camera_silent", silent_s=round((now - self._last_seen_ns) / 1e9, 3),
                            device=self.source.device, reason=self._child_down or "no frames")
        self._cover_silence(now)
        after_s = self.source.cfg.reconnect_after_s
        if after_s is None:
            if down:
                raise InspectdError(f"camera {self.source.camera!r}: {self._child_down}; reconnecting "
                                    "is off (source.genicam.reconnect_after_s)", EXIT_FAILURE)
            return
        after_ns = int(after_s * 1e9)
        if self._attempts:
            if now - self._attempt_ns < after_ns:
                return                   # give the last attempt its time
        elif not down and now - self._last_seen_ns < after_ns:
            return                       # silent, not yet for long enough (a dead child: at once)
        if self._attempts >= self.source.cfg.reconnect_attempts:
            silent_s = (now - (self._silent_since_ns or self._last_seen_ns)) / 1e9
            tried = (f"after {self._attempts} reconnect attempt(s)" if self._attempts else
                     "(source.genicam.reconnect_attempts is 0)")
            raise InspectdError(
                f"camera {self.source.camera!r}: no frame for {silent_s:.1f} s {tried}: "
                f"{self._child_down or 'the camera is silent'}", EXIT_FAILURE)
        self._reconnect(now)

    def _reconnect(self, now: int) -> None:
        self._attempts += 1
        self._attempt_ns = now
        with self._lock:
            self._reconnects += 1
        log.warning("camera_reconnecting", attempt=self._attempts, of=self.source.cfg.reconnect_attempts,
                    reason=self._child_down or "no frames")
        try:
            self.source.spawn()          # stops the old child first (releasing the camera)
            self.source.send_start()
            self._child_down = None
            log.info("camera_reconnected", attempt=self._attempts, process=self.source.pid)
        except InspectdError as exc:
            self._child_down = str(exc)
            log.warning("camera_reconnect_failed", attempt=self._attempts, error=str(exc))
        self._attempt_ns = time.monotonic_ns()
        self._cover_silence(self._attempt_ns)

    def _cover_silence(self, now: int, final: bool = False) -> None:
        """While silent: report the strip that passed unseen since the last frame (or report).
        ``final``: acquisition ends silent; the frame length now passing counts too."""
        if self._silent_since_ns is None or self._counts.last_frame_ns is None:
            return           # not silent, or nothing seen yet: no position to start from
        h, w = self.source.frame_shape[:2]
        wall_offset = time.time_ns() - time.monotonic_ns()
        if final:
            now += self.period_ns - 1
        while self._covered_ns + self.period_ns <= now:
            self._covered_ns += self.period_ns
            self._last_index += 1
            i = self._last_index
            with self._lock:
                self._silent_frames += 1
            if self.on_silent is not None:
                self.on_silent(FrameMeta(index=i, camera=self.source.camera, capture_ns=self._covered_ns,
                                         capture_wall_ns=self._covered_ns + wall_offset, height=h, width=w,
                                         strip_position_m=self.source.position(i) if self.source.position else None))

    # -- status ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        now = time.monotonic_ns()
        with self._lock:
            counts = self._counts.snapshot()
            out = counts.status()
            silent = self._silent_since_ns is not None
            out.update({
                "camera_silent": silent,
                "silent_s": round((now - self._silent_since_ns) / 1e9, 3) if self._silent_since_ns is not None else 0.0,
                "silent_frames": self._silent_frames, "reconnects": self._reconnects,
                "reconnecting": silent and self.source.cfg.reconnect_after_s is not None,
            })
        out["source"] = {**self.source.stats(), "frames": counts.frames_read, "timeouts": counts.timeouts,
                         "frames_lost": counts.frames_lost, "failures": self._failures}
        return out


def _placeholder(shape: tuple[int, ...]) -> np.ndarray:
    """An image of the right shape and dtype that owns no memory (``reserve`` looks at no pixels)."""
    return np.broadcast_to(np.uint8(0), shape)


# -- what the pipeline builds ----------------------------------------------------------------
def ring_for(source: AcquiredSource, cfg: RingConfig, on_drop: Callable[[FrameMeta], None]) -> RingBuffer:
    """The ring buffer for ``source``: slots in shared memory for a camera process, else in-process."""
    if isinstance(source, CameraProcess):
        return source.ring(cfg, on_drop)
    return RingBuffer.from_config(cfg, on_drop=on_drop, shape=tuple(source.frame_shape))


def acquisition_for(source: AcquiredSource, ring: RingBuffer, stop_event: threading.Event, *, realtime: bool,
                    frame_period_s: float, on_lost: Callable[[FrameMeta], None],
                    on_silent: Callable[[FrameMeta], None], on_frame: Callable[[Frame], None] | None = None,
                    on_corrupt: Callable[[FrameMeta], None] | None = None) -> CameraAcquisition | AcquisitionThread:
    """The thread that feeds ``ring`` from ``source``: ``CameraAcquisition`` for a camera
    process, ``AcquisitionThread`` for a source read in-process (files, folders)."""
    if isinstance(source, CameraProcess):
        return CameraAcquisition(source, ring, stop_event, frame_period_s, on_lost=on_lost,
                                 on_silent=on_silent, on_frame=on_frame, on_corrupt=on_corrupt)
    from inspectd.runtime.acquisition import AcquisitionThread

    # Not a camera process: a Source read in-process (open_source made it).
    return AcquisitionThread(cast(Source, source), ring, stop_event, realtime=realtime, on_lost=on_lost, on_corrupt=on_corrupt,
                             on_frame=on_frame)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
