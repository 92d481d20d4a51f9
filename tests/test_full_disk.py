"""`replay --out` and `--annotate` onto a full disk: one clear error, exit 1, the stop logged as an
error (not a signal), and no half-written file under the name asked for.

Full disks are real: /dev/full, and a small tmpfs mounted for the test (skipped where this
process may not mount one).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from stand_ins import tiny_checkpoint, write_video

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    video = d / "v.avi"
    write_video(video, 150, size=(320, 240), defect_every=3)
    return tiny_checkpoint(d / "tiny.safetensors"), video


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of ``size`` bytes; yields a function that mounts it and returns its folder."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def _replay(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspectd.cli", "replay", *map(str, args),
                           "--log-format", "json", "--log-level", "info", "--show", "none"],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT)


def _check_failed(r: subprocess.CompletedProcess, needle: str) -> dict:
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["level"] == "error"]
    assert len(errors) == 1 and needle in errors[0]["error"], errors         # one clear error
    stopped = [e for e in events if e["event"] == "pipeline_stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "error"            # not "signal"
    assert "stopped by an error" in r.stderr
    return errors[0]


def test_out_onto_dev_full(setup):
    model, video = setup
    err = _check_failed(_replay(video, "--model", model, "--out", "/dev/full"),
                        "--out /dev/full: cannot write: No space left on device")
    assert err["stage"] == "out"


def test_out_onto_a_full_tmpfs_leaves_no_file(setup, small_disk):
    model, video = setup
    disk = small_disk("48k")              # 150 verdicts need about 90 kB
    out = disk / "verdicts.jsonl"
    _check_failed(_replay(video, "--model", model, "--out", out), "No space left on device")
    assert list(disk.iterdir()) == []     # neither verdicts.jsonl nor its .partial


def test_annotate_onto_a_full_tmpfs_leaves_no_file(setup, small_disk):
    model, video = setup
    disk = small_disk("256k")
    err = _check_failed(_replay(video, "--model", model, "--annotate", disk / "a.mp4"),
                        "no space left on the device")
    assert "--annotate" in err["error"] and "removed" in err["error"]
    assert list(disk.iterdir()) == []


def test_both_complete_where_there_is_room(setup, small_disk):
    import cv2
    model, video = setup
    disk = small_disk("64m")
    r = _replay(video, "--model", model, "--out", disk / "v.jsonl", "--annotate", disk / "a.mp4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in disk.iterdir()) == ["a.mp4", "v.jsonl"]    # renamed, no .partial left
    assert len((disk / "v.jsonl").read_text().splitlines()) == 150
    cap = cv2.VideoCapture(str(disk / "a.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 150
    cap.release()
