"""Logging for the daemon and the commands: structlog, JSON under systemd, readable in a terminal.

Under systemd (``JOURNAL_STREAM`` set) or whenever stderr is not a terminal, every event is
one JSON object per line, so that journald and log shippers get fields, not prose. In a
terminal the same events are printed as aligned, readable lines. Messages from libraries
that use the standard ``logging`` module (harvesters, genicam) go through the same renderer.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import IO, Any, Literal

import structlog

from inspectd.configtools import doc

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
VerdictLogging = Literal["none", "rejects", "all"]


@dataclass
class LogConfig:
    format: LogFormat = doc(
        "How log lines look: `json` (one JSON object per line, for journald and log shippers), "
        "`console` (readable lines), or `auto`: JSON when running under systemd (JOURNAL_STREAM "
        "is set) or when stderr is not a terminal, readable lines otherwise.",
        default="auto",
    )
    level: LogLevel = doc("Least severe level that is logged.", default="info")
    verdicts: VerdictLogging = doc(
        "Which verdicts are also written to the log (they always go to the event bus): "
        "`none`, `rejects` (one line per rejected frame) or `all` (one line per frame).",
        default="rejects",
    )


def resolve_format(fmt: LogFormat, stream: IO[str] | None = None, environ: dict[str, str] | None = None) -> str:
    """``auto`` -> ``json`` or ``console`` for this process's stderr and environment."""
    if fmt != "auto":
        return fmt
    env = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    if env.get("JOURNAL_STREAM"):
        return "json"
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def _static_fields(fields: dict[str, Any]):
    def add(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        for k, v in fields.items():
            event.setdefault(k, v)
        return event
    return add


def _key_order(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """timestamp, level, event first: a JSON line a person can still scan."""
    head: dict[str, Any] = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    head.update(event)
    return head


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Binding the stream object at configuration time breaks when it is later replaced and closed
    (test runners capturing output, a daemoniser): every later log call would raise, and a log
    call in a worker thread's error path would then kill that thread.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(cfg: LogConfig | None = None, stream: IO[str] | None = None,
                      fields: dict[str, Any] | None = None) -> str:
    """Set up structlog (and route stdlib logging through it); returns the format chosen.

    ``fields`` are added to every event (e.g. the camera id: threads do not inherit
    structlog's context variables, and the journal of several cameras needs it).
    """
    cfg = cfg or LogConfig()
    # Any: a text stream, or the stand-in that writes to the current sys.stderr.
    out: Any = _CurrentStderr() if stream is None else stream
    fmt = resolve_format(cfg.format, out)
    level = getattr(logging, cfg.level.upper())

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fields:
        shared.append(_static_fields(dict(fields)))
    renderer: Any
    shared_tail: list[Any]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # Exceptions become a "exception" string field instead of a multi-line dump.
        shared_tail = [structlog.processors.dict_tracebacks, _key_order]
    else:
        colors = False
        try:
            colors = out.isatty() and not os.environ.get("NO_COLOR")
        except (AttributeError, ValueError):
            pass
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        shared_tail = []

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *shared_tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

    # Third-party libraries log through the stdlib; render them the same way.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *shared_tail, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_inspectd", False):
            root.removeHandler(old)
    handler._inspectd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Libraries are chatty at info level; their warnings and errors are what matter here.
    root.setLevel(max(level, logging.WARNING))
    return fmt
