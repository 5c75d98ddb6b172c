"""The kernel's files on the host disk: its total written size watched (the kernel is killed
beyond), the probe's answers copied out without following a link the kernel planted."""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from grader.run_types import ExecSettings, RunState
from grader.sandbox import Sandbox

DISK_POLL_S = 0.1
# All the probe's answers of one notebook (a training's weights before every step: up to 128 MB).
PROBE_OUT_MAX_BYTES = 256 << 20


def copy_probe_answers(src: Path, dst: Path) -> None:
    """Copy regular files the probe wrote, never following links the kernel may have planted."""
    budget = PROBE_OUT_MAX_BYTES
    dst.mkdir(parents=True, exist_ok=True)
    for root, _dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        for name in files:
            path = Path(root) / name
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                if not os.path.isfile(f"/proc/self/fd/{f.fileno()}") or os.fstat(f.fileno()).st_size > budget:
                    continue
                (dst / rel).mkdir(parents=True, exist_ok=True)
                target = dst / rel / name
                copied = 0
                with open(target, "wb") as out:
                    # In blocks, so the grader holds at most one block of a large answer.
                    for block in iter(lambda: f.read(min(1 << 20, budget - copied + 1)), b""):
                        copied += len(block)
                        if copied > budget:
                            break
                        out.write(block)
                if copied > budget:       # grew while being read: not an answer
                    target.unlink()
                    continue
                budget -= copied


def _disk_usage(roots: list[Path], max_entries: int) -> tuple[int, int]:
    """(bytes used, entries) under roots, links not followed; stops past max_entries."""
    used = entries = 0
    stack = [str(r) for r in roots]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    # Delayed allocation leaves st_blocks behind freshly written data for a
                    # while; the size is what the kernel has written, so count the larger.
                    used += max(st.st_blocks * 512, st.st_size if entry.is_file(follow_symlinks=False) else 0)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return used, entries


async def watch_disk(state: RunState, sbx: Sandbox, settings: ExecSettings, workdir: Path) -> None:
    """RLIMIT_FSIZE caps one file; this caps what the kernel writes to host disk in total
    (work folder, probe output, connection folder), polled, by killing the kernel."""
    roots = [workdir, sbx.stage_out, sbx.conn_dir]
    limit = settings.disk_mb << 20
    while True:
        await asyncio.sleep(DISK_POLL_S)
        used, entries = await asyncio.to_thread(_disk_usage, roots, settings.max_files)
        if used > limit or entries > settings.max_files:
            state.why_stopped = (f"it wrote more than the {settings.disk_mb} MiB allowed on disk" if used > limit
                          else f"it created more than the {settings.max_files} files allowed")
            await asyncio.to_thread(sbx.kill_all, 5.0)
            return


def clear_dir(path: Path) -> None:
    for entry in list(path.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass
