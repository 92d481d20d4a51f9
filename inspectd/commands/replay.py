"""``inspectd replay``: a recording (video file or image folder) through the service's pipeline."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NAME = "replay"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="run a recording through the inspection pipeline",
        description=(
            "Run a recording through the same pipeline as the service (ring buffer, inference, "
            "merge, event bus), as fast as it goes unless --realtime. Unlike `run`, the ring "
            "buffer's policy is `block` by default, so that every frame of the recording is "
            "inspected (give --policy to replay with the config's overflow behaviour). Prints a "
            "progress line while it runs (in a terminal) and a summary at the end. SIGINT or "
            "SIGTERM stops it cleanly: frames already read are inspected and written."
        ),
    )
    p.add_argument("file", metavar="FILE", help="a video file, or a folder of images (replayed in file-name order)")
    p.add_argument("--config", metavar="FILE",
                   help="daemon config (YAML) for everything else (default: the built-in defaults, docs/config.md)")
    p.add_argument("--model", metavar="CKPT", help="model checkpoint (default: inference.model, else the shipped model)")
    p.add_argument("--out", metavar="JSONL",
                   help="write every verdict, exactly as published, as one JSON object per line ('-': stdout)")
    p.add_argument("--publish", metavar="ADDRESS", help="also publish on the event bus at ADDRESS, e.g. tcp://*:5555")
    p.add_argument("--annotate", metavar="OUT.mp4",
                   help="write a video with boxes, masks and verdicts drawn on the frames (.mp4 or .avi)")
    p.add_argument("--realtime", action="store_true", help="pace the frames at the recording's frame rate")
    p.add_argument("--loop", action="store_true", help="start again at the end, until interrupted")
    p.add_argument("--policy", choices=["config", "block", "drop_oldest", "drop_newest"], default="block",
                   help="ring-buffer overflow policy: 'block' (default: nothing is skipped), "
                        "'config' (the config's ring.policy, as the service would), or a policy name")
    p.add_argument("--camera", metavar="ID", help="camera id to put in the events (default: the config's)")
    p.add_argument("--coil", metavar="ID",
                   help="the recording is one coil: its events carry this coil id and positions from its "
                        "head; coil_start and coil_end events frame it")
    p.add_argument("--control", metavar="ADDRESS",
                   help="take `inspectd coil start|end` on this control socket while replaying, e.g. "
                        "tcp://127.0.0.1:5571 (the config's control.address is left to the daemon it "
                        "belongs to)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                   help="log level (default: warning, so that the progress line and summary stay readable)")
    p.add_argument("--log-format", choices=["auto", "json", "console"], help="override log.format")
    p.add_argument("--show", choices=["none", "rejects", "all"],
                   help="print these verdicts on stderr, one line each (default: the config's log.verdicts, "
                        "i.e. rejects unless the config says otherwise)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line, no verdict lines, no summary")
    p.set_defaults(func=run)


class JsonLinesTap:
    """The publisher's tap: every verdict message, as sent, one JSON object per line.

    A write that fails (disk full, a closed pipe) is kept in ``error`` and ``on_error`` is
    called once with it, so that the replay stops (as for any fatal error) instead of
    inspecting frames nobody records; it is not raised to the publisher, which would log it
    a second time.
    """

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lines = 0
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, topic: str | bytes, payload: dict[str, Any]) -> None:
        if not _is_verdict(topic, payload) or self.error is not None:
            return
        line = json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()     # a reader (a pipe, `tail -f`) sees each verdict at once
            except (OSError, ValueError) as exc:
                self.error = exc
                if self.on_error is not None:
                    self.on_error(exc)
                return
            self.lines += 1


class OutFile:
    """``--out PATH``: verdicts go to ``PATH.partial`` beside it, renamed to PATH when the
    replay ends, so that PATH is never a half-written file; after a failed write the partial
    file is removed. A PATH that is not a regular file (a pipe, /dev/stdout) is written as is."""

    def __init__(self, path: Path, option: str):
        from inspectd.errors import InspectdError

        self.path = path
        self.direct = path.exists() and not path.is_file()
        self.partial = path if self.direct else path.with_name(path.name + ".partial")
        try:
            self.stream: IO[str] = open(self.partial, "w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise InspectdError(f"{option}: cannot write: {exc.strerror}") from None

    def finish(self, keep: bool) -> None:
        """Close; ``keep``: give the file its name, else remove it."""
        try:
            self.stream.close()
        except OSError:
            keep = False          # the last lines did not reach the disk
        if self.direct:
            return
        if keep:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def _is_verdict(topic: str | bytes, payload: dict[str, Any]) -> bool:
    return payload.get("kind") == "verdict"


class Console:
    """stderr shared by the progress line (main thread) and verdict lines (publisher thread)."""

    def __init__(self, interactive: bool, show: str):
        self.interactive = interactive
        self.show = show
        self._lock = threading.Lock()
        self._progress_shown = False

    def progress(self, pipeline) -> None:
        c = pipeline.counters()
        with self._lock:
            sys.stderr.write(
                f"\r\033[Kframes {c['inspected']}  {c['fps']:.1f} fps  rejects {c['rejects']}  "
                f"uninspected {c['uninspected']}  queued {c['queued']}")
            sys.stderr.flush()
            self._progress_shown = True

    def clear(self) -> None:
        with self._lock:
            if self._progress_shown:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
                self._progress_shown = False

    def tap(self, topic: str | bytes, payload: dict[str, Any]) -> None:
        """One readable line per shown verdict (as published: frame index, defects, boxes),
        and one per alarm."""
        if payload.get("kind") == "alarm" and self.show != "none":
            self._line(_alarm_line(payload))
            return
        if not _is_verdict(topic, payload):
            return
        status = payload.get("status")
        if self.show == "none" or (self.show == "rejects" and status != "reject"):
            return
        found = payload.get("defects", [])
        defects = "; ".join(
            f"{d['class']} {d['score']:.2f} at [{', '.join(f'{v:.0f}' for v in d['box'])}]" for d in found[:5])
        if len(found) > 5:
            defects += f"; {len(found) - 5} more"
        line = f"frame {payload.get('frame')}: {str(status).upper()}" + (f"  {defects}" if defects else "")
        self._line(line)

    def _line(self, line: str) -> None:
        with self._lock:
            prefix = "\r\033[K" if self._progress_shown else ""
            sys.stderr.write(prefix + line + "\n")
            sys.stderr.flush()
            self._progress_shown = False


def _alarm_line(a: dict[str, Any]) -> str:
    where = "" if a["latest"]["coil_position_m"] is None else f" (coil {a['coil']} at {a['latest']['coil_position_m']:.2f} m)"
    return (f"ALARM {a['alarm']} {a['state']}: {a['class']} every {a['pitch_m']:.3f} m at {a['cross_mm']:.0f} mm "
            f"across, {a['repeats']} marks, latest at {a['latest']['strip_position_m']:.2f} m{where}")


def _taps(*taps):
    taps = [t for t in taps if t is not None]
    if not taps:
        return None
    if len(taps) == 1:
        return taps[0]

    def both(topic, payload):
        for t in taps:
            t(topic, payload)
    return both


def _summary(file: str, c: dict[str, Any], result, out: str | None, annotated: Path | None,
             paced: bool = False) -> str:
    lines = [
        f"replay {file}: {c['inspected']} frames inspected in {c['elapsed_s']:.1f} s ({c['fps']:.1f} fps), "
        f"{c['rejects']} rejected, {c['uninspected']} uninspected"
        + {"end-of-stream": "", "signal": " (stopped by a signal)",
           "error": " (stopped by an error, see above)"}.get(result.reason, f" ({result.reason})"),
    ]
    if c["rejects_by_class"]:
        lines.append("  rejects by class: " + ", ".join(f"{k} {v}" for k, v in sorted(c["rejects_by_class"].items())))
    if c["uninspected_by_reason"]:
        lines.append("  uninspected: " + ", ".join(f"{k} {v}" for k, v in sorted(c["uninspected_by_reason"].items())))
    if paced and c.get("late"):
        # Only a paced replay stands for a line: unpaced, frames wait in the ring by design.
        lines.append(f"  late: {c['late']} verdicts ({c['late_rejects']} rejects) published after their strip "
                     f"reached the gate; worst {c['late_worst_ms']:.0f} ms, last {c['late_last_ms']:.0f} ms late")
    if out and out != "-":
        lines.append(f"  verdicts: {out}")
    if annotated is not None:
        lines.append(f"  annotated video: {annotated}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from inspectd.commands.options import apply_common_overrides, given_options
    from inspectd.config import default_config, load_config
    from inspectd.errors import InspectdError
    from inspectd.logging_setup import configure_logging

    if args.coil is not None:
        from inspectd.runtime.coils import check_coil_id
        check_coil_id(args.coil, "--coil")
    if args.control is not None:
        from inspectd.bus.address import parse_address
        parse_address(args.control, "bind", "--control")
    src = Path(args.file).expanduser()
    if not src.exists():
        raise InspectdError(f"recording {args.file}: not found")
    # FILE replaces the config's source (a camera config can replay a recording of that camera).
    source = {"kind": "folder" if src.is_dir() else "video", "path": str(src.resolve()), "loop": bool(args.loop)}
    if args.config:
        cfg = load_config(args.config, {f"source.{k}": v for k, v in source.items()})
    else:
        cfg = default_config()
        for k, v in source.items():
            setattr(cfg.source, k, v)
    if args.policy != "config":
        from inspectd.runtime.ringbuffer import OverflowPolicy
        cfg.ring.policy = OverflowPolicy(args.policy)
    apply_common_overrides(cfg, args)
    cfg.control.address = args.control
    cfg.log.level = args.log_level
    if args.log_format:
        cfg.log.format = args.log_format
    configure_logging(cfg.log, fields={"camera": cfg.camera})
    from inspectd.runtime.preflight import preflight

    # The checks of `run` and check-config: FILE is the command line's (2), the rest config (78).
    checked = preflight(cfg, args.config or "the built-in defaults", given_options(args),
                        usage={"source.path": "replay FILE"}, paced=args.realtime)

    out_stream: IO[str] | None = None
    out_file: OutFile | None = None
    tap = None
    if args.out:
        if args.out == "-":
            out_stream = sys.stdout
        else:
            out_path = Path(args.out).expanduser()
            if not out_path.parent.is_dir():
                raise InspectdError(f"--out {args.out}: folder {out_path.parent} does not exist")
            out_file = OutFile(out_path, f"--out {args.out}")
            out_stream = out_file.stream
        tap = JsonLinesTap(out_stream)

    from inspectd.runtime.pipeline import Pipeline

    interactive = not args.quiet and sys.stderr.isatty()
    console = Console(interactive, "none" if args.quiet else (args.show or cfg.log.verdicts))
    result = None
    try:
        pipeline = Pipeline(
            cfg, realtime=args.realtime, tap=_taps(tap, console.tap if console.show != "none" else None),
            annotate_path=args.annotate, on_tick=console.progress if interactive else None,
            source=checked.source, backend=checked.backend, self_test=not checked.self_tested, coil=args.coil,
            capacity=checked.capacity,
        )
        if tap is not None:
            def out_failed(exc: BaseException) -> None:
                if isinstance(exc, BrokenPipeError) and out_stream is sys.stdout:
                    pipeline.request_stop(hurry=True)   # `--out - | head`: the reader has all it wanted
                    return
                reason = getattr(exc, "strerror", None) or str(exc)
                removed = "; the incomplete file was removed" if out_file is not None and not out_file.direct else ""
                pipeline.fail("out", InspectdError(f"--out {args.out}: cannot write: {reason}{removed}",
                                                   exit_code=1))
            tap.on_error = out_failed
        result = pipeline.run()
    finally:
        if out_file is not None:
            # Verdicts are whole lines up to the stop; only a failed write leaves a broken file.
            out_file.finish(keep=tap is not None and tap.error is None and result is not None)
    console.clear()

    if tap is not None and isinstance(tap.error, BrokenPipeError) and out_stream is not None \
            and out_stream is sys.stdout:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out_stream.fileno())
        return 0
    c = result.counters
    if not args.quiet:
        annotated = pipeline.annotator.path if pipeline.annotator is not None else None
        if annotated is not None and not annotated.exists():
            annotated = None       # not written, or removed as incomplete (the error says which)
        print(_summary(args.file, c, result, args.out, annotated, paced=bool(pipeline.realtime)), file=sys.stderr)
    # A fatal error during the replay was logged once by the pipeline; the summary says how far it got.
    if tap is not None and tap.lines != c["inspected"] and result.exit_code == 0:
        raise InspectdError(
            f"--out {args.out}: {tap.lines} verdicts written for {c['inspected']} inspected frames "
            f"({c['not_published']} could not be handed to the publisher in time)", exit_code=1)
    return result.exit_code
