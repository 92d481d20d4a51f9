"""How much memory the process may still take, and the check that a configured size fits.

Buffers sized by the config (the ring's slots, the camera's buffers) are allocated once at
start. A size that cannot fit must be a one-line configuration error before anything is
allocated, not a process that grows until the OOM killer ends it (a billion ring slots
once grew to 22 GB). The limit is the memory the kernel says is available
(``MemAvailable`` in /proc/meminfo, else ``os.sysconf``), lowered to what a cgroup limit
(systemd's ``MemoryMax``, a container) still leaves, of which configured buffers may take
``SHARE``: the rest is for the model, the runtimes and the OS.
"""
from __future__ import annotations

import os
from pathlib import Path

from inspectd.errors import ConfigError

# Of the available memory, what preallocated frame buffers may take together.
SHARE = 0.8


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What this process's cgroup limit (v2, or v1 as a container sees it) still leaves, or None."""
    room: int | None = None
    try:
        rel = next(line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                   if line.startswith("0::"))
    except (OSError, StopIteration, IndexError):
        rel = ""
    group = root / rel.strip().lstrip("/")
    # The tightest limit on the way up to the root counts.
    for d in [group, *group.parents] if rel else []:
        if d == root.parent or not str(d).startswith(str(root)):
            break
        try:
            limit = (d / "memory.max").read_text().strip()
            current = int((d / "memory.current").read_text().strip())
        except (OSError, ValueError):
            continue
        if limit != "max":
            left = max(0, int(limit) - current)
            room = left if room is None else min(room, left)
    try:   # cgroup v1, as a container sees its own group
        limit_v1 = int((root / "memory" / "memory.limit_in_bytes").read_text())
        usage_v1 = int((root / "memory" / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return room
    if limit_v1 < 1 << 60:     # "no limit" is a number near 2^63
        left = max(0, limit_v1 - usage_v1)
        room = left if room is None else min(room, left)
    return room


def available_bytes() -> int | None:
    """Memory this process can still allocate without swapping, or None if unknown."""
    avail = _meminfo_available() or _sysconf_available()
    room = _cgroup_room()
    if avail is None:
        return room
    return avail if room is None else min(avail, room)


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"   # pragma: no cover


def check_fits(nbytes: int, what: str, key: str, where: str = "", available: int | None = None) -> None:
    """ConfigError (exit 78) naming ``key`` if ``nbytes`` (described by ``what``, e.g.
    "8 slots x 480000 bytes") would take more than ``SHARE`` of the available memory."""
    avail = available_bytes() if available is None else available
    if avail is None:
        return
    if nbytes > SHARE * avail:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}{key}: {what} = {human(nbytes)}, more than {SHARE:.0%} of the {human(avail)} of "
            f"memory available; lower {key}")
