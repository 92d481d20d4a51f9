"""`inspectd run` as systemd runs it: the simulated GenICam camera (viky.cti), NOTIFY_SOCKET, SIGTERM."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from notify_listener import NotifyListener
from stand_ins import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _viky() -> Path | None:
    try:
        import genicam
    except ImportError:
        return None
    cti = Path(genicam.__file__).parent / "viky.cti"
    return cti if cti.is_file() else None


@pytest.mark.skipif(_viky() is None, reason="the simulated GenTL producer viky.cti is not installed")
def test_run_on_simulated_camera_notify_and_sigterm(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.safetensors")
    cfg = tmp_path / "cam.yaml"
    cfg.write_text(
        "camera: sim\n"
        f"source: {{kind: genicam, genicam: {{cti: ['{_viky()}'], serial: '0', width: 200, height: 200}}}}\n"
        "ring: {policy: drop_oldest, slots: 4}\n"
        f"inference: {{model: '{model}', threads: 1}}\n"
        "log: {format: auto, level: info, verdicts: none}\n"
        "service: {status_interval_s: 0.2}\n")
    lst = NotifyListener(path=str(tmp_path / "notify.sock"))
    env = lst.env(watchdog_usec=1_000_000)
    env["JOURNAL_STREAM"] = "8:12345"          # as under systemd: JSON logs
    p = subprocess.Popen([sys.executable, "-m", "inspectd.cli", "run", "--config", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert lst.wait_for(lambda m: sum("WATCHDOG" in x for x in m) >= 2, timeout=180), p.stderr.read() \
            if p.poll() is not None else lst.messages
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
        lst.close()
    assert p.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(events) == len(err.splitlines())                 # every log line is JSON
    assert all(e["camera"] == "sim" for e in events)
    stopped = [e for e in events if e["event"] == "pipeline_stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "signal" and stopped[0]["frames_accounted"] is True
    c = stopped[0]
    assert c["inspected"] >= 2 and c["captured"] == c["inspected"] + c["uninspected"]
    kinds = [next(k for k in ("READY", "STOPPING", "WATCHDOG", "STATUS") if k in m) for m in lst.messages]
    assert kinds[0] == "READY" and kinds[-1] == "STOPPING"
    assert kinds.count("READY") == 1 and kinds.count("STOPPING") == 1
    assert "STATUS" in kinds[1:-1]
