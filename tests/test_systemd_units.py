"""The systemd units: the directives the service relies on, and systemd's own checks."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ["inspectd.service", "inspectd@.service"]


def _directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    section = ""
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


@pytest.mark.parametrize("name", UNITS)
def test_unit_has_what_the_service_relies_on(name):
    d = _directives(name)
    one = {k: v[-1] for k, v in d.items()}
    assert one["Service.Type"] == "notify" and one["Service.NotifyAccess"] == "main"
    assert one["Service.WatchdogSec"] == "10" and one["Service.Restart"] == "on-failure"
    assert one["Service.KillSignal"] == "SIGTERM"
    # A wrong config (78) or command line (2) must stop the restart loop; a failure at run
    # time (1) must not (inspectd.errors has the rule).
    from inspectd.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE, ConfigError, RunError, UsageError
    prevent = set(one["Service.RestartPreventExitStatus"].split())
    assert prevent == {str(EXIT_CONFIG), str(EXIT_USAGE)} == {str(ConfigError.exit_code), str(UsageError.exit_code)}
    assert str(EXIT_FAILURE) == str(RunError.exit_code) not in prevent
    assert one["Service.DynamicUser"] == "yes" and one["Service.NoNewPrivileges"] == "yes"
    assert one["Service.CapabilityBoundingSet"] == ""
    assert one["Service.ProtectSystem"] == "strict"
    assert set(one["Service.RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert "@system-service" in d["Service.SystemCallFilter"]
    assert " run --config " in one["Service.ExecStart"]
    # Room to drain and flush before systemd's SIGKILL (service.shutdown_grace_s + flush_timeout_s).
    from inspectd.config import default_config
    svc = default_config().service
    assert int(one["Service.TimeoutStopSec"]) > svc.shutdown_grace_s + svc.flush_timeout_s + 5
    if "@" in name:
        assert "/etc/inspectd/%i.yaml" in one["Service.ExecStart"] and "--camera %i" in one["Service.ExecStart"]


def _installed_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this environment's inspectd (verify checks it exists)."""
    exe = Path(sys.executable).with_name("inspectd")
    if not exe.exists():
        pytest.skip("the inspectd console script is not installed in this environment")
    text = (ROOT / "systemd" / name).read_text().replace("/opt/inspectd/bin/inspectd", str(exe))
    target = tmp_path / (name.replace("@.", "@top.") if "@." in name else name)
    target.write_text(text)
    return target


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_and_security(tmp_path, name):
    unit = _installed_copy(tmp_path, name)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    if m is None:
        pytest.skip("this systemd-analyze cannot rate unit files offline")
    assert float(m.group(1)) <= 2.0, r.stdout     # docs/systemd.md records 1.3
