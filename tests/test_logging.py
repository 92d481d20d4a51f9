"""structlog set-up: JSON under systemd or when piped, readable lines in a terminal."""
from __future__ import annotations

import io
import json
import logging

import structlog

from inspectd.logging_setup import LogConfig, configure_logging, resolve_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_format_choice():
    assert resolve_format("auto", _Tty(), {}) == "console"
    assert resolve_format("auto", io.StringIO(), {}) == "json"                 # piped or a file
    assert resolve_format("auto", _Tty(), {"JOURNAL_STREAM": "8:1234"}) == "json"   # under systemd
    assert resolve_format("console", io.StringIO(), {"JOURNAL_STREAM": "1:2"}) == "console"


def test_json_lines_with_fields_and_level_filter():
    out = io.StringIO()
    assert configure_logging(LogConfig(format="json", level="info"), stream=out, fields={"camera": "top"}) == "json"
    log = structlog.get_logger("t")
    log.debug("hidden")
    log.info("frame_done", frame=3)
    logging.getLogger("harvesters").warning("camera %s gone", "x")    # a library's stdlib logging
    logging.getLogger("harvesters").info("chatter")                    # below WARNING for libraries
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["frame_done", "camera x gone"]
    assert lines[0]["frame"] == 3 and lines[0]["camera"] == "top" and lines[0]["level"] == "info"
    assert list(lines[0])[:3] == ["timestamp", "level", "event"]
    assert lines[1]["level"] == "warning" and lines[1]["camera"] == "top"


def test_console_is_readable_text():
    out = io.StringIO()
    configure_logging(LogConfig(format="console", level="warning"), stream=out)
    structlog.get_logger("t").warning("slow_frame", ms=12)
    text = out.getvalue()
    assert "slow_frame" in text and "ms=12" in text and not text.lstrip().startswith("{")
