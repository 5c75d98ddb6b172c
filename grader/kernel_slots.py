"""How many kernels this machine runs at once, shared by every grading process on it.

A slot is one kernel at the rubric's thread count and memory limit (``engines.default_jobs``
says how many the cores and memory hold). Slots are lock files in a folder of this machine,
held with ``flock``: whoever holds one runs one kernel, and the kernel's lock goes with the
process if it dies. A batch's workers each take a slot for their next notebook, waiting if
need be; a submission whose other notebooks could run too takes a free slot for each, never
waiting for one. So a full machine grades one notebook per slot as before, and the notebooks
of the last submissions of a batch (or of the only one: ``grader check``) share the slots the
finished workers left idle.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path


GRADER_MB = 800        # one worker process itself: torch, the replay pools, a notebook's JSON


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:       # pragma: no cover - not Linux
        return os.cpu_count() or 1


def available_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


def default_jobs(threads: int, memory_mb: int, gpu_slots: int = 0) -> tuple[int, str]:
    """(workers, why): as many kernels as the cores hold at the rubric's thread count and the
    memory holds at its per-kernel limit (plus the worker itself); on a GPU machine also no
    more than its GPU slots."""
    by_cpu = max(1, cores() // max(1, threads))
    by_mem = max(1, available_mb() // (memory_mb + GRADER_MB))
    jobs = min(by_cpu, by_mem)
    why = f"{cores()} cores / {threads} thread(s) per kernel = {by_cpu}; " \
          f"{available_mb()} MB free / ({memory_mb} + {GRADER_MB}) MB per worker = {by_mem}"
    if gpu_slots:
        jobs = min(jobs, gpu_slots)
        why += f"; {gpu_slots} GPU slot(s)"
    return jobs, why


def default_folder() -> Path:
    """Per machine and user: /tmp is never shared between the nodes of a cluster."""
    return Path(tempfile.gettempdir()) / f"grader-kernel-slots-{os.getuid()}"


class Slot:
    def __init__(self, fd: int, index: int):
        self.fd, self.index = fd, index

    def release(self) -> None:
        if self.fd >= 0:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class KernelSlots:
    def __init__(self, count: int, folder: Path | None = None):
        self.count = max(1, int(count))
        self.folder = Path(folder) if folder is not None else default_folder()
        self.folder.mkdir(parents=True, exist_ok=True)

    def try_acquire(self) -> Slot | None:
        for k in range(self.count):
            fd = os.open(self.folder / f"slot-{k}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return Slot(fd, k)
        return None

    def acquire(self, poll_s: float = 0.05) -> Slot:
        while (slot := self.try_acquire()) is None:
            time.sleep(poll_s)
        return slot
