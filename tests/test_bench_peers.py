"""`inspectd bench --peers`: the inspectd graph against Ultralytics YOLO11 graphs on OpenVINO,
interleaved. Without ultralytics: one line, peers skipped, exit 0. With it (an optional extra):
a tiny real run, checking the figures are consistent, never how fast."""
from __future__ import annotations

import json

import pytest
from lively_model import lively_model

pytest.importorskip("openvino")

import inspectd.bench.peers as peers  # noqa: E402
from inspectd.cli import main  # noqa: E402
from inspectd.model.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture()
def checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTD_CACHE_DIR", str(tmp_path / "cache"))
    return save_checkpoint(lively_model()[0], tmp_path / "lively.safetensors")


def test_without_ultralytics_one_line_and_skipped(checkpoint, tmp_path, monkeypatch, capsys):
    real = peers.importlib.util.find_spec
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a))
    out = tmp_path / "p.json"
    assert main(["bench", "--peers", "--model", str(checkpoint), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    said = [ln for ln in captured.err.splitlines() if "ultralytics" in ln]
    assert len(said) == 1 and "not installed" in said[0] and "skipped" in said[0]
    assert "Peers skipped: ultralytics is not installed" in captured.out
    assert "ultralytics is not installed" in json.loads(out.read_text())["skipped"]


def test_tiny_interleaved_run(checkpoint):
    pytest.importorskip("ultralytics")
    r = peers.run_peers(checkpoint, threads=1, rounds=2, calls=2, precisions=("fp32",), progress=lambda m: None)
    assert "skipped" not in r and r["rounds"] == 2
    (row,) = r["results"]
    assert row["precision"] == "fp32" and row["inspectd_fps"] > 0
    for name in peers.PEERS:
        q = row[name]
        assert q["fps"] > 0 and q["inspectd_over_peer_range"][0] <= q["inspectd_over_peer"] <= q["inspectd_over_peer_range"][1]
        assert len(r["frames_per_s_by_round"][f"{name} fp32"]) == 2
    assert "target" not in r            # the target compares against the peer's bf16, not measured here
    md = peers.markdown(r)
    assert "| fp32 |" in md and "inspectd / yolo11n-seg" in md
