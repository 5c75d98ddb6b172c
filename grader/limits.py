"""Time limits fair to the grading machine.

A rubric's ``cell_timeout_s`` and ``notebook_timeout_s`` are nominal: what a notebook may take
on the reference machine (a 2-core x86-64 machine running torch with its default threads, as
Colab's CPU runtime does). A slower grading machine, or a kernel held to fewer threads, must
not cost the student: before grading, the grader times a small, fixed torch workload
(``CALIBRATION_CODE``: GRU and convolution training steps and a Python loop, the kinds of work
the notebooks do) in a real sandboxed kernel with the rubric's threads, and scales the limits
by how much slower it ran than on the reference machine:

    scale = min(limit_max_scale, max(1, measured / REFERENCE_S) * limit_slack)

The floor of 1 means a fast grading machine never shortens a limit; ``limit_slack`` allows for
students' own machines being faster than the reference. The measurement is kept in the run's
cache folder (one per machine, threads and torch version), so a batch, a re-run and
``grader validate`` use the same limits; every record says which limits applied and why.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

CALIBRATION_MARK = "__GRADER_CALIBRATION__"
REPEATS = 3
# Median seconds of one repetition of CALIBRATION_CODE on the reference machine: this project's
# 2-core x86-64 machines, unloaded, plain Python with torch's default 2 threads, torch 2.13.0 CPU
# (`bench/calibrate_limits.py` measures it: 0.38-0.43 s over five runs on 2026-12-01).
REFERENCE_S = 0.40
REFERENCE_MACHINE = "a 2-core x86-64 machine with torch's default threads (like Colab's CPU runtime)"

CALIBRATION_CODE = r'''
def _grader_calibrate(repeats):
    import json, random, time, torch
    torch.manual_seed(0)
    rng = random.Random(0)
    gru, dec = torch.nn.GRU(27, 64, batch_first=True), torch.nn.Linear(64, 27)
    opt = torch.optim.Adam(list(gru.parameters()) + list(dec.parameters()), lr=1e-3)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 2))
    copt = torch.optim.SGD(conv.parameters(), lr=0.01)
    x = torch.nn.functional.one_hot(torch.randint(0, 27, (64, 15)), 27).float()
    y = torch.randint(0, 27, (64, 15))
    images, labels = torch.randn(16, 3, 64, 64), torch.randint(0, 2, (16,))

    def once():
        t0 = time.perf_counter()
        for _ in range(60):
            out = dec(gru(x)[0])
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, 27), y.reshape(-1))
            opt.zero_grad(); loss.backward(); opt.step()
        for _ in range(16):
            loss = torch.nn.functional.cross_entropy(conv(images), labels)
            copt.zero_grad(); loss.backward(); copt.step()
        sum(rng.choice(range(1, 27)) for _ in range(80000))
        return time.perf_counter() - t0

    once()
    print("%(mark)s" + json.dumps([once() for _ in range(repeats)]))
_grader_calibrate(%(repeats)d)
del _grader_calibrate
'''


def calibration_code(repeats: int = REPEATS) -> str:
    return CALIBRATION_CODE % {"mark": CALIBRATION_MARK, "repeats": repeats}


@dataclass(frozen=True)
class Limits:
    """The limits a notebook runs under, and how they came about (for records and staff)."""
    cell_s: float
    notebook_s: float
    scale: float
    why: str


def scale_from(measured_s: float | None, slack: float, max_scale: float) -> float:
    ratio = 1.0 if measured_s is None else measured_s / REFERENCE_S
    return round(min(max_scale, max(1.0, ratio) * slack), 2)


def limits_for(nominal_cell_s: float, nominal_notebook_s: float, mode: str, slack: float,
               max_scale: float, measured_s: float | None) -> Limits:
    if mode == "fixed":
        return Limits(nominal_cell_s, nominal_notebook_s, 1.0, "fixed limits (execution.limits = \"fixed\")")
    scale = scale_from(measured_s, slack, max_scale)
    if measured_s is None:
        how = "no calibration was measured"
    else:
        how = (f"the calibration ran {measured_s:.2f} s here against {REFERENCE_S:.2f} s on the "
               f"reference machine, {REFERENCE_MACHINE}")
    why = (f"nominal {nominal_cell_s:g} s per cell and {nominal_notebook_s:g} s per notebook x {scale:g} "
           f"({how}; floor 1, slack {slack:g}, at most {max_scale:g})")
    return Limits(round(nominal_cell_s * scale), round(nominal_notebook_s * scale), scale, why)


def machine_key(threads: int) -> str:
    """Which machine a measurement belongs to: host, processor, cores, threads, torch and this code."""
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = "none"
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [platform.node(), cpu, str(os.cpu_count()), str(threads), torch_version,
             hashlib.sha256(CALIBRATION_CODE.encode()).hexdigest()[:16], str(REFERENCE_S)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def measure(threads: int, memory_mb: int = 4096) -> float:
    """Median seconds of one calibration repetition in a real sandboxed kernel; raises
    SandboxError when the sandbox does not work, RuntimeError when the workload fails."""
    from grader.execute import ExecSettings, execute_notebook

    settings = ExecSettings(cell_timeout_s=300, notebook_timeout_s=400, memory_mb=memory_mb, threads=threads)
    with tempfile.TemporaryDirectory(prefix="grader-calibrate-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(calibration_code())]
        path = Path(tmp) / "calibrate.ipynb"
        nbformat.write(nb, str(path))
        t = str(threads)
        run = execute_notebook(path, work, settings, env={"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t})
        if run.status != "completed" or run.executed_path is None:
            raise RuntimeError(f"the calibration workload did not run: {run.message}")
        out = nbformat.read(str(run.executed_path), as_version=4)
    text = "".join(o.get("text", "") for o in out.cells[0].outputs if o.get("output_type") == "stream")
    for line in text.splitlines():
        if line.startswith(CALIBRATION_MARK):
            return round(statistics.median(json.loads(line[len(CALIBRATION_MARK):])), 4)
    raise RuntimeError("the calibration workload printed no timing")


def measured_speed(cache_dir: Path, threads: int, memory_mb: int = 4096) -> float:
    """The calibration for this machine, measured once and kept in ``cache_dir``."""
    key = machine_key(threads)
    path = Path(cache_dir) / "machine" / f"{key}.json"
    try:
        return float(json.loads(path.read_text())["measured_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    seconds = measure(threads, memory_mb)
    from grader.record import write_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"measured_s": seconds, "threads": threads, "host": platform.node(),
                                   "reference_s": REFERENCE_S}))
    return seconds
