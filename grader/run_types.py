"""What a notebook run is given (its settings, a probe request) and what it gives back."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat


# What the kernel sends the grader: the default size of one message (frame), checked by ZMQ
# before it is read (rubric: execution.max_message_mb); the grader's own memory the messages
# of one notebook may take, watched; kept outputs.
MAX_MESSAGE_MB = 32
GRADER_MEMORY_MB = 512


@dataclass(frozen=True)
class ExecSettings:
    cell_timeout_s: float = 600
    notebook_timeout_s: float = 1800
    memory_mb: int = 4096
    pids_max: int = 256
    tmp_mb: int = 512
    fsize_mb: int = 512
    cpu_s: int = 3600
    colab: str = "neutralize"
    max_output_chars: int = 20000
    probe_timeout_s: float = 300
    disk_mb: int = 2048                  # work folder + probe output, polled; the kernel is killed beyond
    max_files: int = 20000
    interrupt_grace_s: float = 30        # a cell at its limit is interrupted; killed if it is still running after this
    max_message_mb: int = MAX_MESSAGE_MB  # a larger message from the kernel is a protocol violation
    grader_memory_mb: int = GRADER_MEMORY_MB  # the grader's memory the kernel's messages may take
    device: str = "cpu"                  # "cpu" (GPU code runs on the CPU) or "cuda:N" (grader/devices.py)
    gpu_nodes: tuple[str, ...] = ()      # /dev nodes the kernel gets with its GPU
    threads: int = 1                     # CPU cores of the kernel (cgroup cpu quota); the rubric's execution.threads
    limits_why: str = ""                 # how cell_timeout_s and notebook_timeout_s were set (grader/limits.py)


@dataclass
class CellResult:
    index: int
    status: str
    seconds: float
    error_name: str | None = None
    error_value: str | None = None
    traceback: str | None = None
    # "assert" | "gradcheck": the error was the notebook's own failed self-check, read by the
    # grader from the traceback's failing line in its copy of the cell (grader/selfcheck.py)
    self_check: str | None = None


@dataclass
class ProbeRequest:
    code: str
    in_dir: Path
    out_dir: Path


@dataclass
class ProbeResult:
    status: str
    seconds: float
    error: str | None


@dataclass
class NotebookRun:
    # completed | errors | timeout | kernel_died | protocol_violation | sandbox_failed | invalid
    status: str
    message: str
    first_error_cell: int | None
    cells: list[CellResult]
    seconds: float
    limits: dict[str, str]
    neutralized: list[dict]
    probe: ProbeResult | None
    executed_path: Path | None
    device: str = "cpu"                 # where the kernel's torch ran the notebook

    def executable(self) -> bool:
        return self.status == "completed"


@dataclass
class RunState:
    """What one run of a notebook has found so far (the driver's, the client's and the probe's)."""
    nb: nbformat.NotebookNode
    cells: list[CellResult]
    current: int | None = None
    current_started: float = 0.0
    outcome: str | None = None          # "timeout" | "kernel_died" | "sandbox_failed" | "notebook_timeout"
    detail: str = ""
    canary: str = ""
    probe: ProbeResult | None = None
    km: Any = None
    why_stopped: str = ""               # why the grader stopped a kernel it found misbehaving
    prelude: str | None = None          # grader code run hidden before the first cell
    prelude_status: str = ""
    before: dict = dataclasses.field(default_factory=dict)   # cell index -> hidden grader code run just before it
    stop: Any = None                    # asyncio.Event set by SIGINT/SIGTERM: staff stopped the grader
    external_stop: Any = None           # threading.Event: the caller stops the run from another thread
    interrupted: bool = False
    timed_out: list[tuple[int, str]] = dataclasses.field(default_factory=list)   # (cell, "cell" | "notebook") interrupted at a limit
    notebook_limit_hit: bool = False    # the notebook's own limit ended the cells
    violation: str = ""                 # how the kernel broke the limits on its messages (the kernel was stopped)
    violation_cell: int | None = None   # the cell running when it did
