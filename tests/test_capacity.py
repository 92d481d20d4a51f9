"""The capacity check at start (issue 10: "the default set-up must not be late"): a line that
delivers more frames per second than this machine inspects is said at start, in one ``capacity``
log line, a ``capacity_short`` warning and the status event; ``inference.capacity_check: fail``
exits 78 instead.

Real parts: the shipped model on the default backend through the real CLI, the sample recording,
a real publisher; a slow stand-in backend where the test needs a model slower than the line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stand_ins import ThresholdBackend, write_video

from inspectd.config import default_config
from inspectd.errors import ConfigError
from inspectd.model import default_model_path
from inspectd.runtime.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "neu_strip.mkv"
ENV = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG")}
needs_model = pytest.mark.skipif(not default_model_path().is_file(), reason="the shipped model is missing")


def _config(tmp_path: Path, fps: float, check: str = "warn") -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(f"source: {{path: {SAMPLE}, fps: {fps}}}\n"
                 f"line: {{speed_m_per_s: {0.192 * fps}, frame_length_m: 0.192}}\n"
                 f"inference: {{capacity_check: {check}}}\ncontrol: {{address: null}}\n")
    return f


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspectd.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=300, cwd=ROOT)


def _events(stderr: str) -> dict[str, dict]:
    out = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            msg = json.loads(line)
            out.setdefault(msg["event"], msg)
    return out


@needs_model
def test_a_line_faster_than_the_machine_is_said_at_start_and_fail_exits_78(tmp_path):
    # 1000 frames/s of 9 tiles: no CPU inspects that.
    f = _config(tmp_path, 1000)
    r = _cli("replay", str(SAMPLE), "--config", str(f), "--realtime", "--log-format", "json", "--log-level", "info",
             "--show", "none")
    assert r.returncode == 0, r.stderr
    ev = _events(r.stderr)
    cap, short = ev["capacity"], ev["capacity_short"]
    assert cap["needed_fps"] == 1000 and cap["needed_from"] == "recording_rate"
    assert 0 < cap["measured_fps"] < 1000 and cap["margin"] < 1 and cap["tiles_per_frame"] == 9
    assert short["level"] == "warning" and "verdicts will be late" in short["note"] and "GPU" in short["note"]

    # check-config makes the same check: the report says it, the warning goes to stderr.
    r = _cli("check-config", str(f))
    assert r.returncode == 0, r.stderr
    assert "SHORT: verdicts will be late" in r.stdout and "capacity_short" in r.stderr

    f = _config(tmp_path, 1000, "fail")
    for argv in (["check-config", str(f)], ["run", "--config", str(f)]):
        r = _cli(*argv)
        assert r.returncode == 78, (argv, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"inspectd: {f}: inference.capacity_check: fail: this machine inspects "), last
        assert "Traceback" not in r.stderr


@needs_model
def test_a_line_the_machine_keeps_up_with_has_a_margin_and_no_warning(tmp_path):
    r = _cli("check-config", str(_config(tmp_path, 0.5, "fail")))
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("capacity:"))
    assert "the line needs 0.5 (margin" in line and "SHORT" not in line, line
    assert "capacity_short" not in r.stderr


@needs_model
def test_an_unpaced_replay_skips_the_check_and_says_so(tmp_path):
    # replay without --realtime: no line to keep up with, so not even `fail` stops it
    r = _cli("replay", str(SAMPLE), "--config", str(_config(tmp_path, 1000, "fail")), "--log-format", "json",
             "--log-level", "info", "--show", "none", "--quiet")
    assert r.returncode == 0, r.stderr
    cap = _events(r.stderr)["capacity"]
    assert cap["measured_fps"] is None and "as fast as it goes" in cap["skipped"]


def _slow_cfg(video: Path, check: str):
    cfg = default_config()
    cfg.source.path = str(video)
    cfg.inference.capacity_check = check
    cfg.control.address = None
    cfg.bus.publish = "tcp://127.0.0.1:*"
    return cfg


def test_a_slow_backend_is_in_the_status_event_and_fail_exits_78(tmp_path):
    video = tmp_path / "v.avi"
    write_video(video, 12, fps=100.0)              # 100 frames/s against a model of at most 20
    sent: list[dict] = []
    pipe = Pipeline(_slow_cfg(video, "warn"), realtime=True, backend=ThresholdBackend(delay_s=0.05),
                    tap=lambda topic, msg: sent.append(msg), handle_signals=False)
    assert pipe.capacity is not None and pipe.capacity.short
    pipe.run()
    status = [m for m in sent if m["kind"] == "status"]
    assert status, [m["kind"] for m in sent]
    cap = status[-1]["capacity"]
    assert cap["check"] == "warn" and cap["needed_fps"] == 100 and cap["needed_from"] == "recording_rate"
    assert 0 < cap["measured_fps"] <= 21 and cap["margin"] < 0.25 and cap["skipped"] is None

    backend = ThresholdBackend(delay_s=0.05)
    with pytest.raises(ConfigError) as e:
        Pipeline(_slow_cfg(video, "fail"), realtime=True, backend=backend, handle_signals=False)
    assert e.value.exit_code == 78 and str(e.value).startswith("inference.capacity_check: fail:")

    # The same slow model on a slow enough line: a margin, no error.
    slow_line = tmp_path / "slow.avi"
    write_video(slow_line, 4, fps=2.0)
    pipe = Pipeline(_slow_cfg(slow_line, "fail"), realtime=True, backend=ThresholdBackend(delay_s=0.05),
                    handle_signals=False)
    assert pipe.capacity is not None and pipe.capacity.margin > 1
    pipe.request_stop(hurry=True)
    pipe.run()
