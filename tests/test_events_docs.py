"""docs/events.md against the wire: its examples are real messages of a real replay (the
sample recording, the shipped model, a real publisher and subscriber on loopback), every
field its tables name is sent and every field sent is in its examples, the uninspected
reasons are UNINSPECTED_REASONS, and everything sent validates against the JSON Schema.
pipelines/gen_events_docs.py regenerates the examples when this fails."""
from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from inspectd.bus.messages import KINDS, UNINSPECTED_REASONS
from inspectd.model import default_model_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipelines"))
import gen_events_docs as gen  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not default_model_path().is_file(), reason="the shipped model is missing")]


@pytest.fixture(scope="module")
def wire() -> list[dict]:
    return gen.capture(verdicts=6)


def test_examples_and_reasons_match_the_wire(wire):
    kinds = {m["kind"] for m in wire}
    assert {"verdict", "defect", "uninspected", "heartbeat", "status"} <= kinds, kinds
    found = gen.problems(gen.DOCS.read_text(encoding="utf-8"), wire)
    assert not found, "\n".join(found) + "\n(run python pipelines/gen_events_docs.py)"


def _keys(v, out: set[str]) -> set[str]:
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(k)
            _keys(x, out)
    elif isinstance(v, list):
        for x in v:
            _keys(x, out)
    return out


def test_every_field_a_table_names_is_sent(wire):
    text = gen.DOCS.read_text(encoding="utf-8")
    start, end = text.index(gen.REASONS_BEGIN), text.index(gen.REASONS_END)
    text = text[:start] + text[end:]                     # the reasons table lists values, not fields
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    checked = 0
    for sec in sections:
        heading, _, body = sec.partition("\n")
        kinds = [k.strip() for k in heading.split(",") if k.strip() in KINDS]
        sent = [m for m in wire if m["kind"] in kinds]
        if not kinds or not sent:
            continue                                     # a kind this run does not produce (alarm)
        keys = _keys(sent, set())
        for row in re.findall(r"^\| ([^|]+) \|", body, flags=re.M):
            for name in re.findall(r"`([a-z_]+)(?:\[\])?`", row):
                assert name in keys, f"### {heading}: the table names `{name}`, which is not sent"
                checked += 1
    assert checked >= 30


def test_documented_reasons_are_the_constant():
    text = gen.DOCS.read_text(encoding="utf-8")
    block = text[text.index(gen.REASONS_BEGIN):text.index(gen.REASONS_END)]
    assert re.findall(r"^\| `([a-z_]+)` \|", block, flags=re.M)[1:] == list(UNINSPECTED_REASONS)   # after the header
    assert "ring_overflow" not in text


def test_out_file_holds_the_verdicts_only(wire):
    from inspectd.commands.replay import JsonLinesTap

    buf = io.StringIO()
    tap = JsonLinesTap(buf)
    for m in wire:
        tap(f"{m['kind']}/{m['camera']}/".encode(), m)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines == [m for m in wire if m["kind"] == "verdict"] and lines


def test_the_check_sees_a_field_the_docs_invent_or_miss(wire):
    text = gen.DOCS.read_text(encoding="utf-8")
    invented = text.replace('"frame_length_m": 0.192, "coil"', '"frame_len_m": 0.192, "coil"', 1)
    assert invented != text
    found = gen.problems(invented, wire)
    assert "verdict.frame_len_m: in the docs, not on the wire" in found
    assert "verdict.frame_length_m: on the wire, not in the docs" in found
