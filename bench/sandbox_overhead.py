"""What the sandbox costs: a trivial notebook through the sandboxed kernel (start to
shutdown) against a plain ``python -c`` of the same code, measured in the same run.

    .venv/bin/python bench/sandbox_overhead.py [--repeat 5]

Prints the median of each and their ratio. A second row does the same with
``import torch`` in the code, which is what every HW2 notebook pays first.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from grader.execute import ExecSettings, execute_notebook

CASES = {"trivial": "x = 6 * 7\nprint(x)", "import torch": "import torch\nprint(torch.ones(2).sum())"}


def plain(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def sandboxed(code: str, root: Path) -> float:
    work = Path(tempfile.mkdtemp(dir=root))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    path = work / "bench.ipynb"
    nbformat.write(nb, str(path))
    t0 = time.perf_counter()
    run = execute_notebook(path, work, ExecSettings(cell_timeout_s=120, notebook_timeout_s=300))
    seconds = time.perf_counter() - t0
    if run.status != "completed":
        raise SystemExit(f"sandboxed run failed: {run.message}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':<14}{'python -c (s)':>15}{'sandbox (s)':>14}{'ratio':>8}")
        for name, code in CASES.items():
            base = statistics.median(plain(code) for _ in range(args.repeat))
            sbx = statistics.median(sandboxed(code, Path(tmp)) for _ in range(args.repeat))
            print(f"{name:<14}{base:>15.3f}{sbx:>14.3f}{sbx / base:>8.1f}x")


if __name__ == "__main__":
    main()
