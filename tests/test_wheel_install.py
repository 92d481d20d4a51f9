"""A non-editable install, as docs/systemd.md makes one, carries the shipped model: the wheel is
built from the source tree, installed into a fresh venv (its dependencies are this test venv's,
so it stays fast and offline) and replays the sample recording from another directory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from inspectd.model import default_model_path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "neu_strip.mkv"

pytestmark = pytest.mark.slow


def _run(*cmd, cwd=None, env=None, timeout=600):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def test_wheel_carries_the_model_and_replays_the_sample(tmp_path):
    # Build from a copy of what the package is made of: no build/ or egg-info in the shared tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "inspectd", src / "inspectd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", dist, src)
    (wheel,) = dist.glob("inspectd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "inspectd/models/inspectd-n-neu.safetensors" in names
    assert f"inspectd/models/{default_model_path().name}" in names      # the default the replay below loads
    assert "inspectd/schemas/events.schema.json" in names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies: this venv's site-packages, after the new venv's own (a .pth line adds the
    # folder only: its own .pth files, among them the editable install of the source tree, stay off).
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NOTIFY_SOCKET", "WATCHDOG_USEC", "INSPECTD_DEBUG", "VIRTUAL_ENV")}
    where = _run(py, "-c", "import inspectd, inspectd.model as m; print(inspectd.__file__); print(m.default_model_path())",
                 cwd=elsewhere, env=env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where      # the installed copy, not the source tree
    assert Path(where[1]).is_file()

    out = elsewhere / "verdicts.jsonl"
    r = _run(venv / "bin" / "inspectd", "replay", SAMPLE, "--out", out, "--quiet", cwd=elsewhere, env=env)
    truth = json.loads((ROOT / "samples" / "neu_strip.mkv.json").read_text())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["frame"] for v in rows] == list(range(len(rows))) and len(rows) == truth["frames"], r.stderr
    assert any(v["status"] == "reject" for v in rows)                     # the model finds defects
