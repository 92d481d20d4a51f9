"""systemd/inspectd-store.service: what the store relies on, and systemd's own checks."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "inspectd-store.service"
UNITS = ["inspectd-store.service", "inspectd-web.service"]


def _directives(unit: Path = UNIT) -> dict[str, str]:
    out: dict[str, str] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out[f"{section}.{key}"] = value
    return out


def test_unit_runs_the_store_and_stops_restarting_on_a_bad_database():
    d = _directives()
    assert " store " in d["Service.ExecStart"] and " --db /var/lib/inspectd-store/" in d["Service.ExecStart"]
    assert d["Service.StateDirectory"] == "inspectd-store"
    assert d["Service.Restart"] == "on-failure" and d["Service.KillSignal"] == "SIGTERM"
    from inspectd.store.database import BAD_DB_EXIT
    assert set(d["Service.RestartPreventExitStatus"].split()) == {str(BAD_DB_EXIT), "78"}
    assert d["Service.DynamicUser"] == "yes" and d["Service.ProtectSystem"] == "strict"


def test_web_unit_reads_what_the_store_unit_writes():
    store, web = _directives(), _directives(SYSTEMD / "inspectd-web.service")
    # The same dynamic user and state directory: the web pages can read the store's file.
    assert web["Service.User"] == store["Service.User"] and web["Service.StateDirectory"] == store["Service.StateDirectory"]
    db = store["Service.ExecStart"].split(" --db ")[1].split()[0]
    assert f" --db {db} " in web["Service.ExecStart"] and db in web["Service.ExecStartPre"]
    assert " --host 127.0.0.1 " in web["Service.ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_and_security(tmp_path, name):
    exe = Path(sys.executable).with_name("inspectd")
    if not exe.exists():
        pytest.skip("the inspectd console script is not installed in this environment")
    unit = tmp_path / name
    unit.write_text((SYSTEMD / name).read_text().replace("/opt/inspectd/bin/inspectd", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    if m is None:
        pytest.skip("this systemd-analyze cannot rate unit files offline")
    assert float(m.group(1)) <= 2.0, r.stdout
