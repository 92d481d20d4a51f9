"""`inspectd cameras` as a user runs it: a subprocess against the simulated viky.cti producer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import genicam
import pytest

VIKY = Path(genicam.__file__).with_name("viky.cti")
pytestmark = pytest.mark.skipif(not VIKY.exists(), reason="the genicam package ships no viky.cti here")


def inspectd(*args: str, env_extra: dict[str, str] | None = None, drop_env: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if drop_env:
        env.pop("GENICAM_GENTL64_PATH", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "inspectd.cli", "cameras", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_lists_the_simulated_devices():
    proc = inspectd("--cti", str(VIKY))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["#", "vendor", "model", "serial", "id", "format", "note"]
    assert len(lines) == 4
    for serial, colour in (("0", "red"), ("1", "green"), ("2", "blue")):
        row = next(line for line in lines[1:] if f"VikyTL_DEV_{colour}" in line)
        assert "Machine Vision Games Ltd." in row and " Viky " in row and f" {serial} " in row
        assert "RGBa8 400x400" in row            # the device's current format, read by opening it


def test_json_output():
    proc = inspectd("--cti", str(VIKY), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["serial"] for r in rows] == ["0", "1", "2"]
    assert {r["model"] for r in rows} == {"Viky"}
    assert all(r["pixel_format"] == "RGBa8" and r["width"] == 400 and r["height"] == 400 for r in rows)


def test_producer_from_the_environment():
    proc = inspectd("--json", env_extra={"GENICAM_GENTL64_PATH": str(VIKY.parent)})
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def test_no_producer_is_one_line_exit_2():
    proc = inspectd()
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspectd: ") and "--cti PATH" in lines[0]


def test_missing_producer_is_one_line_exit_2(tmp_path):
    proc = inspectd("--cti", str(tmp_path / "vendor.cti"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"inspectd: GenTL producer {tmp_path / 'vendor.cti'}: not found (--cti)"


def test_file_that_is_no_producer(tmp_path):
    fake = tmp_path / "fake.cti"
    fake.write_text("not a library")
    proc = inspectd("--cti", str(fake))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "fake.cti: cannot be loaded" in lines[0]


def test_producer_from_a_config_file(tmp_path):
    pytest.importorskip("inspectd.config")
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text(f"source:\n  kind: genicam\n  genicam:\n    cti: [{VIKY}]\n")
    proc = inspectd("--config", str(cfg), "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def test_several_producers_are_deduplicated_by_harvesters():
    proc = inspectd("--cti", str(VIKY), str(VIKY), "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3
