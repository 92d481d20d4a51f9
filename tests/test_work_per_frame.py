"""pipelines/work_per_frame.py, the benchmark of the pipeline's work outside the model: it
records real model outputs, replays them through the stage, publisher and alarm detector,
and refuses what it cannot use with one line."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "work_per_frame.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_records_real_outputs_and_times_each_part(tmp_path):
    out = tmp_path / "outputs.npz"
    r = run("--record", str(out), "--frames", "4")
    assert r.returncode == 0, r.stderr
    data = np.load(out)
    assert data["images"].shape == (4, 200, 200) and data["det"].shape[0] == 4
    assert data["labels"].dtype == np.uint8 and data["labels"].shape == data["conf"].shape
    r = run("--replay", str(out), "--frames", "6", "--passes", "2")
    assert r.returncode == 0, r.stderr
    got = dict(re.findall(r"(stage|publish|alarms|total) ([0-9.]+)", r.stdout))
    assert set(got) == {"stage", "publish", "alarms", "total"}
    assert float(got["stage"]) > 0 and float(got["publish"]) > 0
    r = run("--replay", str(out), "--frames", "3", "--parts", "stage")
    assert r.returncode == 0 and re.search(r"publish 0\.0", r.stdout), r.stdout


def test_bad_input_is_one_line(tmp_path):
    r = run("--replay", str(tmp_path / "missing.npz"))
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("--replay", str(tmp_path / "x.npz"), "--parts", "stage,alarms")
    assert r.returncode == 2 and "alarms read what publish sends" in r.stderr
