"""Linux bookkeeping for the sandbox: its cgroup v1 children (memory, pids, CPU quota) and the
processes of its PID namespace, read from /proc."""
from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000        # cgroup v1 cpu.cfs_period_us; the quota is threads x this


# ---------------------------------------------------------------- cgroups v1

def own_v1_group(controller: str) -> Path | None:
    """Directory of this process's cgroup v1 group for `controller`, if writable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3 or controller not in parts[1].split(","):
            continue
        base = CGROUP_ROOT / controller
        if not base.is_dir():
            return None
        path = base / parts[2].lstrip("/")
        if path.is_dir() and os.access(path, os.W_OK):
            return path
    return None


def remove_stale(parent: Path) -> None:
    """Remove empty groups left behind by a grader that was killed (its pid is gone)."""
    for group in parent.glob("grader_*_*"):
        pid = group.name.split("_")[1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and not cgroup_pids(group):
            try:
                group.rmdir()
            except OSError:
                pass


def make_child(parent: Path | None, name: str, settings: dict[str, str]) -> Path | None:
    if parent is None:
        return None
    remove_stale(parent)
    child = parent / name
    try:
        child.mkdir()
    except OSError:
        return None
    try:
        for key, value in settings.items():
            target = child / key
            if target.exists():
                target.write_text(value)
            elif not key.startswith("memory.memsw"):
                raise OSError(f"{target} missing")
        return child
    except OSError:
        remove_cgroup(child)
        return None


def cpu_quota(parent: Path | None, threads: int) -> int:
    """cpu.cfs_quota_us for ``threads`` cores per CPU_PERIOD_US, no more than the parent group
    allows (cgroup v1 refuses a child quota above its parent's)."""
    quota = threads * CPU_PERIOD_US
    try:
        p_quota = int((parent / "cpu.cfs_quota_us").read_text()) if parent else -1
        p_period = int((parent / "cpu.cfs_period_us").read_text()) if parent else 0
    except (OSError, ValueError):
        return quota
    if p_quota > 0 and p_period > 0:
        quota = min(quota, max(1000, p_quota * CPU_PERIOD_US // p_period))
    return quota


def cgroup_pids(group: Path | None) -> set[int]:
    if group is None:
        return set()
    try:
        return {int(x) for x in (group / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def remove_cgroup(group: Path | None) -> bool:
    if group is None:
        return True
    for _ in range(50):
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- processes

def proc_state(pid: int) -> str | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rsplit(")", 1)[-1].split()[0]


def children_of(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and parent_of(int(e)) == pid]


def parent_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def members_of_ns(ns: str) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_ns(int(entry)) == ns:
            found.add(int(entry))
    return found


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if proc_state(p) not in (None, "Z", "X")}
